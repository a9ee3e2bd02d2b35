//! The pattern benchmark's inputs: 100 trigger patterns of the kinds apps write, grouped
//! by the operator they exercise, and a stream of Wharf `Object Created` events.

use serde_json::{json, Value};
use wharf_model::pattern::{
    object_created_pattern, OBJECT_CREATED_DETAIL_TYPE, OBJECT_EVENT_SOURCE,
};

/// The buckets the rules name; events also go to buckets no rule names.
const RULE_BUCKETS: [&str; 5] = ["incoming", "uploads", "drop", "raw", "landing"];
const EVENT_BUCKETS: [&str; 8] = [
    "incoming", "uploads", "drop", "raw", "landing", "exports", "archive", "scratch",
];

/// A group of patterns that exercise one kind of operator.
pub struct RuleFamily {
    pub name: &'static str,
    pub patterns: Vec<Value>,
}

/// `{"source": ["wharf.s3"], "detail-type": ["Object Created"], "detail": DETAIL}`.
fn created(detail: Value) -> Value {
    json!({
        "source": [OBJECT_EVENT_SOURCE],
        "detail-type": [OBJECT_CREATED_DETAIL_TYPE],
        "detail": detail,
    })
}

fn bucket(index: usize) -> &'static str {
    RULE_BUCKETS[index % RULE_BUCKETS.len()]
}

fn sugar() -> Vec<Value> {
    let shapes: [(Option<&str>, Option<&str>); 6] = [
        (None, None),
        (Some("sales/"), None),
        (None, Some(".csv")),
        (Some("sales/"), Some(".csv")),
        (Some("logs/"), Some(".log")),
        (Some("inbox/acme/"), Some(".json")),
    ];
    let mut patterns = Vec::new();
    for name in RULE_BUCKETS {
        for (prefix, suffix) in shapes {
            patterns.push(object_created_pattern(name, prefix, suffix));
        }
    }
    patterns
}

fn prefixes() -> Vec<Value> {
    [
        "sales/2026-11-",
        "logs/2026/",
        "reports/",
        "images/",
        "models/v3/",
        "inbox/globex/",
        "exports/eu/",
        "sales/2026-12-",
        "tmp/",
        "inbox/",
    ]
    .iter()
    .enumerate()
    .map(|(index, prefix)| {
        created(json!({
            "bucket": {"name": [bucket(index), bucket(index + 2)]},
            "object": {"key": [{"prefix": prefix}]},
        }))
    })
    .collect()
}

fn suffixes() -> Vec<Value> {
    [
        ".csv", ".jpg", ".parquet", ".json", ".log", ".CSV", ".part", ".txt", ".xlsx", ".gz",
    ]
    .iter()
    .enumerate()
    .map(|(index, suffix)| {
        created(json!({
            "bucket": {"name": [bucket(index)]},
            "object": {"key": [{"suffix": {"equals-ignore-case": suffix}}]},
        }))
    })
    .collect()
}

fn anything_but() -> Vec<Value> {
    let key_conditions = [
        json!({"anything-but": {"prefix": "tmp/"}}),
        json!({"anything-but": {"suffix": ".part"}}),
        json!({"anything-but": {"wildcard": "*/draft-*"}}),
        json!({"anything-but": {"equals-ignore-case": ["README.md", "index.html"]}}),
        json!({"anything-but": ["manifest.json", "_SUCCESS"]}),
    ];
    let mut patterns: Vec<Value> = key_conditions
        .iter()
        .enumerate()
        .map(|(index, condition)| {
            created(json!({
                "bucket": {"name": [bucket(index + 1)]},
                "object": {"key": [condition]},
            }))
        })
        .collect();
    for (index, excluded) in [
        json!(["archive", "scratch"]),
        json!("exports"),
        json!({"prefix": "scr"}),
        json!({"suffix": "ing"}),
        json!(["drop", "raw", "archive"]),
    ]
    .into_iter()
    .enumerate()
    {
        let prefix = ["sales/", "logs/", "reports/", "images/", "inbox/"][index];
        patterns.push(created(json!({
            "bucket": {"name": [{"anything-but": excluded}]},
            "object": {"key": [{"prefix": prefix}]},
        })));
    }
    patterns
}

fn numeric() -> Vec<Value> {
    [
        json!([">", 0, "<=", 1024]),
        json!([">=", 1024, "<", 1_048_576]),
        json!([">", 1_048_576]),
        json!(["=", 0]),
        json!([">", 100_000_000]),
        json!(["<", 512]),
        json!([">=", 4096, "<=", 65536]),
        json!([">", 10_000, "<", 20_000]),
        json!(["<=", 1_000_000_000]),
        json!([">", 50_000_000, "<=", 2_000_000_000]),
    ]
    .into_iter()
    .enumerate()
    .map(|(index, range)| {
        created(json!({
            "bucket": {"name": [bucket(index)]},
            "object": {"size": [{"numeric": range}]},
        }))
    })
    .collect()
}

fn wildcards() -> Vec<Value> {
    [
        "reports/q*/summary-*.csv",
        "sales/2026-11-*/orders-*.csv",
        "logs/*/11/*/app-*.log",
        "images/IMG_*.JPG",
        "models/v*/weights-*.parquet",
        "inbox/*/data-*.json",
        "*.part",
        "exports/*/extract-*.CSV",
        "sales/2026-12-*",
        "*/2026/*",
    ]
    .iter()
    .enumerate()
    .map(|(index, wildcard)| {
        created(json!({
            "bucket": {"name": [bucket(index)]},
            "object": {"key": [{"wildcard": wildcard}]},
        }))
    })
    .collect()
}

fn ors() -> Vec<Value> {
    (0..10)
        .map(|index| {
            let prefix = ["sales/", "reports/", "inbox/", "models/", "logs/"][index % 5];
            let first = json!({"detail": {"bucket": {"name": [bucket(index)]},
                "object": {"key": [{"prefix": prefix}]}}});
            let second = json!({"detail": {"bucket": {"name": [bucket(index + 1)]},
                "object": {"size": [{"numeric": [">", 1_000_000_000 + 100_000_000 * index]}]}}});
            let third = json!({"detail": {"reason": ["CompleteMultipartUpload"],
                "bucket": {"name": [bucket(index + 3)]}}});
            json!({
                "source": [OBJECT_EVENT_SOURCE],
                "detail-type": [OBJECT_CREATED_DETAIL_TYPE],
                "$or": if index % 2 == 0 { json!([first, second]) } else { json!([first, second, third]) },
            })
        })
        .collect()
}

fn mixed() -> Vec<Value> {
    vec![
        created(json!({"reason": ["CompleteMultipartUpload"], "bucket": {"name": ["uploads"]}})),
        created(json!({"requester": [{"prefix": "run:"}], "bucket": {"name": ["landing"]}})),
        created(
            json!({"requester": ["admin"], "object": {"key": [{"prefix": "sales/"}], "size": [{"numeric": [">", 0]}]}}),
        ),
        json!({"source": [OBJECT_EVENT_SOURCE], "detail-type": ["Object Deleted"],
               "detail": {"bucket": {"name": ["incoming"]}}}),
        json!({"source": [OBJECT_EVENT_SOURCE], "resources": [{"prefix": "arn:aws:s3:::raw"}]}),
        created(
            json!({"bucket": {"name": [{"equals-ignore-case": "DROP"}]}, "object": {"etag": [{"exists": true}]}}),
        ),
        created(
            json!({"object": {"key": [{"prefix": {"equals-ignore-case": "IMAGES/"}}]}, "reason": ["PutObject", "CopyObject"]}),
        ),
        created(
            json!({"bucket": {"name": ["raw"]}, "deletion-type": [{"exists": false}], "object": {"key": [{"suffix": ".json"}]}}),
        ),
        json!({"source": ["aws.s3"], "detail-type": [OBJECT_CREATED_DETAIL_TYPE],
               "detail": {"bucket": {"name": ["incoming"]}}}),
        created(
            json!({"bucket": {"name": ["landing", "incoming"]}, "object": {"key": [{"wildcard": "*/data-*.json"}], "size": [{"numeric": ["<", 65536]}]}}),
        ),
    ]
}

/// The 100 rules, by family.
pub fn rule_families() -> Vec<RuleFamily> {
    vec![
        RuleFamily {
            name: "object_created sugar (bucket, prefix, suffix)",
            patterns: sugar(),
        },
        RuleFamily {
            name: "prefix",
            patterns: prefixes(),
        },
        RuleFamily {
            name: "suffix (equals-ignore-case)",
            patterns: suffixes(),
        },
        RuleFamily {
            name: "anything-but",
            patterns: anything_but(),
        },
        RuleFamily {
            name: "numeric",
            patterns: numeric(),
        },
        RuleFamily {
            name: "wildcard",
            patterns: wildcards(),
        },
        RuleFamily {
            name: "$or",
            patterns: ors(),
        },
        RuleFamily {
            name: "mixed (exists, reason, requester, resources, other sources)",
            patterns: mixed(),
        },
    ]
}

/// A deterministic xorshift generator.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

fn event_key(noise: &mut Noise) -> String {
    let n = noise.below(100_000);
    let day = 1 + noise.below(30);
    match noise.below(10) {
        0 => format!("sales/2026-11-{day:02}/orders-{n:05}.csv"),
        1 => format!("sales/2026-12-{day:02}/orders-{n:05}.csv"),
        2 => format!("logs/2026/11/{day:02}/app-{n}.log"),
        3 => format!("reports/q{}/summary-{n}.csv", 1 + noise.below(4)),
        4 => format!("images/IMG_{n:05}.JPG"),
        5 => format!("tmp/upload-{n}.part"),
        6 => format!("models/v{}/weights-{n}.parquet", 1 + noise.below(5)),
        7 => format!(
            "inbox/{}/data-{n}.json",
            ["acme", "globex", "initech", "umbrella"][noise.below(4)]
        ),
        8 => format!(
            "exports/{}/extract-{n}.CSV",
            ["eu", "us", "apac"][noise.below(3)]
        ),
        _ => format!("misc/{n}/draft-{day}.txt"),
    }
}

/// `count` Object Created events as the store holds them (the body of
/// `crates/wharf-objects/src/events.rs`, without the `sequencer` that is added on read).
pub fn stored_events(count: usize) -> Vec<Value> {
    let mut noise = Noise(0x2545_F491_4F6C_DD1D);
    (0..count)
        .map(|index| {
            let bucket = EVENT_BUCKETS[noise.below(EVENT_BUCKETS.len())];
            let key = event_key(&mut noise);
            let size = match noise.below(4) {
                0 => noise.below(1024),
                1 => noise.below(1 << 20),
                2 => noise.below(100 << 20),
                _ => noise.below(4 << 30),
            };
            let reason = match noise.below(10) {
                0 => "CompleteMultipartUpload",
                1 => "CopyObject",
                _ => "PutObject",
            };
            let requester = if noise.below(3) == 0 {
                format!("run:{:026x}", noise.next())
            } else {
                "admin".to_owned()
            };
            let id = format!("01jd{:022x}", u128::from(noise.next()) << 24 | index as u128);
            json!({
                "version": "0",
                "id": id,
                "detail-type": OBJECT_CREATED_DETAIL_TYPE,
                "source": OBJECT_EVENT_SOURCE,
                "account": "wharf",
                "time": "2026-11-23T10:00:00Z",
                "region": "wharf",
                "resources": [format!("arn:aws:s3:::{bucket}")],
                "detail": {
                    "version": "0",
                    "bucket": {"name": bucket},
                    "object": {"key": key, "size": size, "etag": format!("{:032x}", u128::from(noise.next()))},
                    "request-id": id,
                    "requester": requester,
                    "reason": reason,
                },
            })
        })
        .collect()
}

/// What `EventRow::to_json` in `crates/wharf-store/src/events.rs` does for every event the
/// dispatcher reads: parse the stored body and add the `sequencer`.
pub fn event_from_stored(body: &str, seq: i64) -> Value {
    let mut value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    if let Some(object) = value
        .get_mut("detail")
        .and_then(|detail| detail.get_mut("object"))
        .and_then(Value::as_object_mut)
    {
        object.insert("sequencer".into(), Value::String(format!("{seq:016X}")));
    }
    value
}
