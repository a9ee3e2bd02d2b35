//! Table cases for the match operators: prefix, suffix, equals-ignore-case, wildcard,
//! anything-but, numeric, cidr and exists.

use crate::pattern_cases::{detail, Check, EC2_EVENT, RULER_EVENT};

/// prefix, suffix and equals-ignore-case, with and without case folding.
pub fn string_operators(check: Check<'_>) {
    let prefix = r#"{"time": [{"prefix": "2017-10-02"}]}"#;
    check(prefix, r#"{"time": "2017-10-02T18:43:48Z"}"#, true);
    check(prefix, r#"{"time": "2017-10-03T18:43:48Z"}"#, false);
    check(prefix, r#"{"time": 20171002}"#, false);
    check(prefix, r#"{"other": "2017-10-02"}"#, false);
    let region = r#"{"Region": [{"prefix": "us-"}]}"#;
    check(region, r#"{"Region": "us-east-1"}"#, true);
    check(region, r#"{"Region": "eu-west-1"}"#, false);
    check(
        r#"{"Region": [{"prefix": ""}]}"#,
        r#"{"Region": "anything"}"#,
        true,
    );
    let prefix_ignoring_case =
        r#"{"detail": {"service": [{"prefix": {"equals-ignore-case": "EventB"}}]}}"#;
    for (service, expected) in [
        ("EventBridge", true),
        ("EVENTBRIDGE", true),
        ("eventbridge", true),
        ("eventb", true),
        ("Event", false),
        ("XEventB", false),
    ] {
        check(
            prefix_ignoring_case,
            &detail("service", &format!("\"{service}\"")),
            expected,
        );
    }
    let suffix = r#"{"FileName": [{"suffix": ".png"}]}"#;
    check(suffix, r#"{"FileName": "image.png"}"#, true);
    check(suffix, r#"{"FileName": "image.jpg"}"#, false);
    check(suffix, r#"{"FileName": "image.PNG"}"#, false);
    check(r#"{"source": [{"suffix": "ec2"}]}"#, RULER_EVENT, true);
    let suffix_ignoring_case =
        r#"{"detail": {"FileName": [{"suffix": {"equals-ignore-case": ".png"}}]}}"#;
    for (name, expected) in [
        ("image.png", true),
        ("image.PNG", true),
        ("image.Png", true),
        ("image.jpg", false),
        ("png", false),
    ] {
        check(
            suffix_ignoring_case,
            &detail("FileName", &format!("\"{name}\"")),
            expected,
        );
    }
    let service_suffix = r#"{"service": [{"suffix": {"equals-ignore-case": "tbridge"}}]}"#;
    check(service_suffix, r#"{"service": "EventBridge"}"#, true);
    check(service_suffix, r#"{"service": "EVENTBRIDGE"}"#, true);
    let name = r#"{"Name": [{"equals-ignore-case": "alice"}]}"#;
    check(name, r#"{"Name": "Alice"}"#, true);
    check(name, r#"{"Name": "ALICE"}"#, true);
    check(name, r#"{"Name": "Alicia"}"#, false);
    check(name, r#"{"Name": 5}"#, false);
    check(
        r#"{"source": [{"equals-ignore-case": "EC2"}]}"#,
        r#"{"source": "ec2"}"#,
        true,
    );
    check(
        r#"{"detail-type": [{"equals-ignore-case": "ec2 instance state-change notification"}]}"#,
        EC2_EVENT,
        true,
    );
}

/// wildcard, with escapes.
pub fn wildcards(check: Check<'_>) {
    check(
        r#"{"source": [{"wildcard": "Simple*Service"}]}"#,
        r#"{"source": "SimpleQueueService"}"#,
        true,
    );
    check(
        r#"{"source": [{"wildcard": "Simple*Service"}]}"#,
        r#"{"source": "SimpleService"}"#,
        true,
    );
    check(
        r#"{"source": [{"wildcard": "Simple*Service"}]}"#,
        r#"{"source": "SimpleServices"}"#,
        false,
    );
    let bus = r#"{"EventBusArn": [{"wildcard": "arn:aws:events:us-east-1:*:event-bus/*"}]}"#;
    check(
        bus,
        r#"{"EventBusArn": "arn:aws:events:us-east-1:123456789012:event-bus/default"}"#,
        true,
    );
    check(
        bus,
        r#"{"EventBusArn": "arn:aws:events:us-west-2:123456789012:event-bus/default"}"#,
        false,
    );
    let png = r#"{"Key": [{"wildcard": "dir/*.png"}]}"#;
    check(png, r#"{"Key": "dir/image.png"}"#, true);
    check(png, r#"{"Key": "dir/sub/image.png"}"#, true);
    check(png, r#"{"Key": "dir/image.jpg"}"#, false);
    check(png, r#"{"Key": "other/image.png"}"#, false);
    check(r#"{"Key": [{"wildcard": "*"}]}"#, r#"{"Key": ""}"#, true);
    check(r#"{"Key": [{"wildcard": "*"}]}"#, r#"{"Key": 5}"#, false);
    check(
        r#"{"Key": [{"wildcard": "a\\*b"}]}"#,
        r#"{"Key": "a*b"}"#,
        true,
    );
    check(
        r#"{"Key": [{"wildcard": "a\\*b"}]}"#,
        r#"{"Key": "axb"}"#,
        false,
    );
    check(
        r#"{"Key": [{"wildcard": "a\\\\*"}]}"#,
        r#"{"Key": "a\\b"}"#,
        true,
    );
}

/// anything-but in all its forms.
pub fn anything_but(check: Check<'_>) {
    let state = r#"{"detail": {"state": [{"anything-but": "initializing"}]}}"#;
    check(state, &detail("state", "\"running\""), true);
    check(state, &detail("state", "\"initializing\""), false);
    check(state, r#"{"detail": {}}"#, false);
    check(
        state,
        &detail("state", r#"["initializing", "running"]"#),
        true,
    );
    let limit = r#"{"detail": {"x-limit": [{"anything-but": 123}]}}"#;
    check(limit, &detail("x-limit", "456"), true);
    check(limit, &detail("x-limit", "123"), false);
    let states = r#"{"detail": {"state": [{"anything-but": ["stopped", "overloaded"]}]}}"#;
    check(states, &detail("state", "\"running\""), true);
    check(states, &detail("state", "\"stopped\""), false);
    check(states, &detail("state", "\"overloaded\""), false);
    let limits = r#"{"detail": {"x-limit": [{"anything-but": [100, 200, 300]}]}}"#;
    check(limits, &detail("x-limit", "301.8"), true);
    check(limits, &detail("x-limit", "200"), false);
    let weather = r#"{"Weather": [{"anything-but": ["Raining"]}]}"#;
    check(weather, r#"{"Weather": "Sunny"}"#, true);
    check(weather, r#"{"Weather": "Raining"}"#, false);
    let not_init = r#"{"detail": {"state": [{"anything-but": {"prefix": "init"}}]}}"#;
    check(not_init, &detail("state", "\"running\""), true);
    check(not_init, &detail("state", "\"initializing\""), false);
    let not_us = r#"{"Region": [{"anything-but": {"prefix": "us-"}}]}"#;
    check(not_us, r#"{"Region": "eu-west-1"}"#, true);
    check(not_us, r#"{"Region": "us-east-1"}"#, false);
    let not_txt = r#"{"detail": {"FileName": [{"anything-but": {"suffix": ".txt"}}]}}"#;
    check(not_txt, &detail("FileName", "\"notes.txt\""), false);
    check(not_txt, &detail("FileName", "\"image.png\""), true);
    let not_png = r#"{"FileName": [{"anything-but": {"suffix": ".png"}}]}"#;
    check(not_png, r#"{"FileName": "a.png"}"#, false);
    check(not_png, r#"{"FileName": "a.jpg"}"#, true);
    let ignoring_case = r#"{"state": [{"anything-but": {"equals-ignore-case": "initializing"}}]}"#;
    check(ignoring_case, r#"{"state": "INITIALIZING"}"#, false);
    check(ignoring_case, r#"{"state": "running"}"#, true);
    let ignoring_case_list = r#"{"detail": {"state": [{"anything-but": {"equals-ignore-case": ["Stopped", "OverLoaded"]}}]}}"#;
    check(ignoring_case_list, &detail("state", "\"STOPPED\""), false);
    check(
        ignoring_case_list,
        &detail("state", "\"overloaded\""),
        false,
    );
    check(ignoring_case_list, &detail("state", "\"running\""), true);
    let not_lib = r#"{"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]}"#;
    check(not_lib, r#"{"FilePath": "/usr/lib/libc.so"}"#, false);
    check(not_lib, r#"{"FilePath": "/usr/bin/ls"}"#, true);
    let not_lib_or_bin =
        r#"{"FilePath": [{"anything-but": {"wildcard": ["*/lib/*", "*/bin/*"]}}]}"#;
    check(not_lib_or_bin, r#"{"FilePath": "/usr/bin/ls"}"#, false);
    check(not_lib_or_bin, r#"{"FilePath": "/etc/hosts"}"#, true);
    let not_prefixes = r#"{"state": [{"anything-but": {"prefix": ["init", "stop"]}}]}"#;
    check(not_prefixes, r#"{"state": "stopping"}"#, false);
    check(not_prefixes, r#"{"state": "running"}"#, true);
}

/// numeric comparisons and ranges.
pub fn numeric(check: Check<'_>) {
    let counts = r#"{"detail": {"c-count": [{"numeric": [">", 0, "<=", 5]}], "d-count": [{"numeric": ["<", 10]}], "x-limit": [{"numeric": ["=", 3.018e2]}]}}"#;
    check(counts, RULER_EVENT, true);
    check(
        counts,
        &RULER_EVENT.replace("\"c-count\": 5", "\"c-count\": 0"),
        false,
    );
    check(
        counts,
        &RULER_EVENT.replace("\"c-count\": 5", "\"c-count\": 6"),
        false,
    );
    check(
        counts,
        &RULER_EVENT.replace("\"c-count\": 5", "\"c-count\": 0.5"),
        true,
    );
    check(
        counts,
        &RULER_EVENT.replace("\"d-count\": 3", "\"d-count\": 10"),
        false,
    );
    check(
        counts,
        &RULER_EVENT.replace("\"d-count\": 3", "\"d-count\": -10"),
        true,
    );
    check(
        counts,
        &RULER_EVENT.replace("\"x-limit\": 301.8", "\"x-limit\": 301.9"),
        false,
    );
    check(
        counts,
        &RULER_EVENT.replace("\"c-count\": 5", "\"c-count\": \"5\""),
        false,
    );
    let price = r#"{"Price": [{"numeric": ["=", 100]}]}"#;
    check(price, r#"{"Price": 100}"#, true);
    check(price, r#"{"Price": 100.0}"#, true);
    check(price, r#"{"Price": 101}"#, false);
    let range = r#"{"Price": [{"numeric": [">", 10, "<=", 20]}]}"#;
    for (price, expected) in [
        ("10", false),
        ("10.5", true),
        ("15", true),
        ("20", true),
        ("20.000001", false),
        ("21", false),
    ] {
        check(range, &format!(r#"{{"Price": {price}}}"#), expected);
    }
    check(r#"{"n": [{"numeric": [">=", 0]}]}"#, r#"{"n": 0}"#, true);
    check(r#"{"n": [{"numeric": [">", 0]}]}"#, r#"{"n": 0}"#, false);
    check(
        r#"{"n": [{"numeric": ["<", 0]}]}"#,
        r#"{"n": -0.000001}"#,
        true,
    );
    check(
        r#"{"n": [{"numeric": [">=", -5e9, "<=", 5e9]}]}"#,
        r#"{"n": 5000000000}"#,
        true,
    );
    check(
        r#"{"n": [{"numeric": [">", 0]}]}"#,
        r#"{"n": 1e300}"#,
        false,
    );
    check(
        r#"{"n": [{"numeric": [">", 0]}]}"#,
        r#"{"n": [-1, 3]}"#,
        true,
    );
    check(r#"{"n": [{"numeric": [">", 0]}]}"#, r#"{"n": null}"#, false);
}

/// cidr, exists, and the complex example combining operators.
pub fn other_operators(check: Check<'_>) {
    let cidr = r#"{"detail": {"sourceIPAddress": [{"cidr": "10.0.0.0/24"}]}}"#;
    check(cidr, &detail("sourceIPAddress", "\"10.0.0.255\""), true);
    check(cidr, &detail("sourceIPAddress", "\"10.0.0.0\""), true);
    check(cidr, &detail("sourceIPAddress", "\"10.0.1.1\""), false);
    check(
        cidr,
        &detail("sourceIPAddress", "\"not an address\""),
        false,
    );
    check(
        r#"{"ip": [{"cidr": "2001:db8::/32"}]}"#,
        r#"{"ip": "2001:db8::1"}"#,
        true,
    );
    check(
        r#"{"ip": [{"cidr": "2001:db8::/32"}]}"#,
        r#"{"ip": "2001:db9::1"}"#,
        false,
    );
    let exists = r#"{"detail": {"state": [{"exists": true}]}}"#;
    check(
        exists,
        EC2_EVENT.replace("terminated", "pending").as_str(),
        true,
    );
    let no_state = r#"{"detail-type": ["EC2 Instance State-change Notification"], "detail": {"c-count": {"c1": 100}}}"#;
    check(exists, no_state, false);
    let absent = r#"{"detail": {"c-count": [{"exists": false}]}}"#;
    check(
        absent,
        r#"{"detail": {"state": ["initializing", "running"]}}"#,
        true,
    );
    // c-count is not a leaf here, so it does not "exist" for the pattern.
    check(
        absent,
        r#"{"detail": {"state": ["initializing", "running"], "c-count": {"c1": 100}}}"#,
        true,
    );
    check(absent, RULER_EVENT, false);
    check(absent, r#"{"detail": {"c-count": null}}"#, false);
    check(absent, r#"{"source": "x"}"#, true);
    check(
        r#"{"ProductName": [{"exists": true}]}"#,
        r#"{"ProductName": null}"#,
        true,
    );
    check(
        r#"{"ProductName": [{"exists": true}]}"#,
        r#"{"ProductName": ""}"#,
        true,
    );
    check(
        r#"{"ProductName": [{"exists": true}]}"#,
        r#"{"ProductName": []}"#,
        false,
    );
    check(
        r#"{"ProductName": [{"exists": false}]}"#,
        r#"{"ProductName": []}"#,
        true,
    );
    check(
        r#"{"ProductName": [{"exists": true}]}"#,
        r#"{"Other": "x"}"#,
        false,
    );
    check(
        r#"{"ProductName": [{"exists": false}, "x"]}"#,
        r#"{"ProductName": "x"}"#,
        true,
    );
    check(
        r#"{"ProductName": [{"exists": false}, "x"]}"#,
        r#"{"ProductName": "y"}"#,
        false,
    );
    let complex = r#"{"time": [{"prefix": "2017-10-02"}], "detail": {"state": [{"anything-but": "initializing"}], "c-count": [{"numeric": [">", 0, "<=", 5]}], "d-count": [{"numeric": ["<", 10]}], "x-limit": [{"anything-but": [100, 200, 300]}], "source-ip": [{"cidr": "10.0.0.0/8"}]}}"#;
    check(complex, RULER_EVENT, true);
    check(
        complex,
        &RULER_EVENT.replace("2017-10-02", "2017-10-03"),
        false,
    );
    check(
        complex,
        &RULER_EVENT.replace("\"running\"", "\"initializing\""),
        false,
    );
    check(
        complex,
        &RULER_EVENT.replace("\"10.0.0.33\"", "\"11.0.0.33\""),
        false,
    );
    check(
        complex,
        &RULER_EVENT.replace("\"x-limit\": 301.8", "\"x-limit\": 300"),
        false,
    );
}
