//! Patterns that EventBridge rejects.

/// Patterns that EventBridge rejects, each with the path the error should point at.
pub const INVALID_PATTERNS: &[(&str, &str)] = &[
    ("not json", ""),
    (r#"["source"]"#, ""),
    ("{}", ""),
    (r#"{"source": "wharf.s3"}"#, "source"),
    (r#"{"detail": {"size": 5}}"#, "detail.size"),
    (r#"{"detail": {}}"#, "detail"),
    (r#"{"source": []}"#, "source"),
    (r#"{"source": [["a"]]}"#, "source[0]"),
    (r#"{"source": [{}]}"#, "source[0]"),
    (
        r#"{"detail": {"object": {"key": [{"prefx": "data/"}]}}}"#,
        "detail.object.key[0]",
    ),
    (r#"{"key": [{"sufix": ".csv"}]}"#, "key[0]"),
    (r#"{"key": [{"regexp": "a.*"}]}"#, "key[0]"),
    (r#"{"key": [{"shellstyle": "a*"}]}"#, "key[0]"),
    (r#"{"detail": [{"state": ["running"]}]}"#, "detail[0]"),
    (r#"{"key": [{"prefix": "a", "suffix": "b"}]}"#, "key[0]"),
    (
        r#"{"detail": {"object": {"key": [{"prefix": 5}]}}}"#,
        "detail.object.key[0].prefix",
    ),
    (
        r#"{"key": [{"prefix": {"equals-ignore-cas": "a"}}]}"#,
        "key[0].prefix",
    ),
    (
        r#"{"key": [{"prefix": {"equals-ignore-case": 1}}]}"#,
        "key[0].prefix.equals-ignore-case",
    ),
    (r#"{"key": [{"suffix": ["a"]}]}"#, "key[0].suffix"),
    (
        r#"{"key": [{"equals-ignore-case": ["a"]}]}"#,
        "key[0].equals-ignore-case",
    ),
    (r#"{"key": [{"wildcard": "a**b"}]}"#, "key[0].wildcard"),
    (r#"{"key": [{"wildcard": "a\\b"}]}"#, "key[0].wildcard"),
    (r#"{"key": [{"wildcard": 5}]}"#, "key[0].wildcard"),
    (r#"{"n": [{"numeric": 5}]}"#, "n[0].numeric"),
    (r#"{"n": [{"numeric": []}]}"#, "n[0].numeric"),
    (r#"{"n": [{"numeric": [">"]}]}"#, "n[0].numeric"),
    (r#"{"n": [{"numeric": [">", "5"]}]}"#, "n[0].numeric[1]"),
    (r#"{"n": [{"numeric": ["=>", 5]}]}"#, "n[0].numeric[0]"),
    (r#"{"n": [{"numeric": ["~", 5]}]}"#, "n[0].numeric[0]"),
    (r#"{"n": [{"numeric": [5, ">"]}]}"#, "n[0].numeric[0]"),
    (r#"{"n": [{"numeric": ["<", 5, ">", 0]}]}"#, "n[0].numeric"),
    (r#"{"n": [{"numeric": [">", 0, ">", 5]}]}"#, "n[0].numeric"),
    (r#"{"n": [{"numeric": ["=", 0, "<", 5]}]}"#, "n[0].numeric"),
    (r#"{"n": [{"numeric": [">", 5, "<", 5]}]}"#, "n[0].numeric"),
    (
        r#"{"n": [{"numeric": [">", 0, "<", 5, "<", 6]}]}"#,
        "n[0].numeric",
    ),
    (r#"{"n": [{"numeric": [">", 6e9]}]}"#, "n[0].numeric[1]"),
    (
        r#"{"n": [{"numeric": [">", 0.0000001]}]}"#,
        "n[0].numeric[1]",
    ),
    (r#"{"e": [{"exists": "true"}]}"#, "e[0].exists"),
    (r#"{"e": [{"exists": 1}]}"#, "e[0].exists"),
    (r#"{"ip": [{"cidr": "10.0.0.0/33"}]}"#, "ip[0].cidr"),
    (r#"{"ip": [{"cidr": "10.0.0.1"}]}"#, "ip[0].cidr"),
    (r#"{"s": [{"anything-but": true}]}"#, "s[0].anything-but"),
    (r#"{"s": [{"anything-but": []}]}"#, "s[0].anything-but"),
    (
        r#"{"s": [{"anything-but": ["a", 1]}]}"#,
        "s[0].anything-but",
    ),
    (
        r#"{"s": [{"anything-but": [null]}]}"#,
        "s[0].anything-but[0]",
    ),
    (
        r#"{"s": [{"anything-but": {"prefix": ""}}]}"#,
        "s[0].anything-but.prefix",
    ),
    (
        r#"{"s": [{"anything-but": {"suffix": ["a", ""]}}]}"#,
        "s[0].anything-but.suffix[1]",
    ),
    (
        r#"{"s": [{"anything-but": {"numeric": [">", 1]}}]}"#,
        "s[0].anything-but",
    ),
    (
        r#"{"s": [{"anything-but": {"prefx": "a"}}]}"#,
        "s[0].anything-but",
    ),
    (
        r#"{"s": [{"anything-but": {"prefix": 1}}]}"#,
        "s[0].anything-but.prefix",
    ),
    (
        r#"{"s": [{"anything-but": {"wildcard": "a**"}}]}"#,
        "s[0].anything-but.wildcard",
    ),
    (
        r#"{"s": [{"anything-but": {"prefix": "a", "suffix": "b"}}]}"#,
        "s[0].anything-but",
    ),
    (r#"{"s": [{"anything-but": 1e10}]}"#, "s[0].anything-but"),
    (r#"{"$or": {"a": ["x"]}}"#, "$or"),
    (r#"{"$or": [{"a": ["x"]}]}"#, "$or"),
    (r#"{"$or": []}"#, "$or"),
    (r#"{"$or": [{"a": ["x"]}, "b"]}"#, "$or[1]"),
    (r#"{"$or": [{"a": ["x"]}, {}]}"#, "$or[1]"),
    (
        r#"{"$or": [{"a": ["x"]}, {"prefix": ["b"]}]}"#,
        "$or[1].prefix",
    ),
    (
        r#"{"detail": {"$or": [{"a": ["x"]}, {"b": []}]}}"#,
        "detail.$or[1].b",
    ),
    (r#"{"a": [{"$or": [{"b": ["x"]}, {"c": ["y"]}]}]}"#, "a[0]"),
    (
        r#"{"a.b": {"c d": [1, {"prefix": 2}]}}"#,
        "[\"a.b\"][\"c d\"][1].prefix",
    ),
];
