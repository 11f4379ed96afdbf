//! Whatever documents and contexts arrive, parse, validate, compile and evaluate never panic,
//! and their results keep their invariants.

use flagstaff_eval::{
    CompiledEnvironment, Context, EvalError, Reason, parse_bundle, parse_document, validate_bundle,
    validate_document,
};
use proptest::collection::{btree_map, vec};
use proptest::option::of;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};

const OPS: &[&str] = &[
    "in",
    "contains",
    "starts_with",
    "ends_with",
    "matches",
    "lt",
    "lte",
    "gt",
    "gte",
    "semver_eq",
    "semver_lt",
    "semver_lte",
    "semver_gt",
    "semver_gte",
    "before",
    "after",
    "exists",
    "in_segment",
];

/// Strings that mean something to some operator, or break it.
const STRINGS: &[&str] = &[
    "",
    "a",
    "u-1",
    "u-2",
    "beta",
    "gamma",
    "on",
    "off",
    "v1",
    "1.2.3",
    "v2.0",
    "1.2.3-rc.1",
    "x.y.z",
    "2024-05-01T12:00:00Z",
    "2024-13-45T99:00:00Z",
    "(",
    "^a.*$",
    "[",
    "\\p{Greek}+",
    "a{1000}{1000}",
    "@acme.com",
    "ann@acme.com",
    "日本語",
    "targetingKey",
    "user.email",
];

const ATTRIBUTES: &[&str] = &[
    "targetingKey",
    "email",
    "user",
    "user.email",
    "n",
    "v",
    "when",
    "a.b.c",
    "",
];
const VARIATIONS: &[&str] = &["on", "off", "v1", "", "nope"];
const FLAG_KEYS: &[&str] = &["f", "g", "h", "f", "g", "h", "Bad Key"];

fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![4 => select(STRINGS).prop_map(str::to_owned), 1 => "\\PC{0,12}"]
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        2 => (-5i64..200_000).prop_map(Value::from),
        6 => any_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(any_string(), inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn clause() -> impl Strategy<Value = Value> {
    // Clauses that real contexts often match, so that evaluation gets past the rules.
    let friendly = select(vec![
        json!({"attribute": "targetingKey", "op": "exists"}),
        json!({"attribute": "email", "op": "ends_with", "values": ["@acme.com"]}),
        json!({"attribute": "targetingKey", "op": "in", "values": ["u-1", "u-2", "a", "on"]}),
        json!({"op": "in_segment", "values": ["beta"]}),
        json!({"attribute": "n", "op": "lt", "values": [100_000]}),
        json!({"attribute": "email", "op": "exists", "negate": true}),
    ]);
    prop_oneof![friendly, random_clause()]
}

fn random_clause() -> impl Strategy<Value = Value> {
    (
        of(select(ATTRIBUTES)),
        select(OPS),
        vec(any_json(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(attribute, op, values, negate)| {
            let mut c = json!({"op": op, "values": values, "negate": negate});
            if let Some(a) = attribute {
                c["attribute"] = json!(a);
            }
            c
        })
}

fn serve() -> impl Strategy<Value = Value> {
    let weight =
        prop_oneof![3 => Just(50_000i64), 3 => Just(100_000), 1 => -10i64..=100_010, 1 => any::<i64>()];
    let rollout = (
        vec((select(VARIATIONS), weight), 0..4),
        of(select(&["targetingKey", "n", "user.email", ""][..])),
        of(any_string()),
    )
        .prop_map(|(weights, bucket_by, salt)| {
            let variations: Vec<Value> = weights
                .into_iter()
                .map(|(v, w)| json!({"variation": v, "weight": w}))
                .collect();
            let mut rollout = json!({"variations": variations});
            if let Some(b) = bucket_by {
                rollout["bucket_by"] = json!(b);
            }
            if let Some(s) = salt {
                rollout["salt"] = json!(s);
            }
            json!({"rollout": rollout})
        });
    prop_oneof![select(VARIATIONS).prop_map(|v| json!({"variation": v})), rollout]
}

fn rule() -> impl Strategy<Value = Value> {
    (
        of(select(&["r1", "r2", "bad id"][..])),
        vec(clause(), 1..3),
        serve(),
    )
        .prop_map(|(id, clauses, serve)| {
            let mut r = json!({"clauses": clauses, "serve": serve});
            if let Some(id) = id {
                r["id"] = json!(id);
            }
            r
        })
}

fn env_state() -> impl Strategy<Value = Value> {
    let prerequisite = (
        select(&["f", "g", "h", "missing"][..]),
        vec(select(VARIATIONS), 0..3),
    )
        .prop_map(|(f, v)| json!({"flag": f, "variations": v}));
    let target = (select(VARIATIONS), vec(any_string(), 0..4))
        .prop_map(|(v, values)| json!({"variation": v, "values": values}));
    (
        prop_oneof![1 => Just(false), 4 => Just(true)],
        of(select(VARIATIONS)),
        vec(prerequisite, 0..2),
        vec(target, 0..3),
        vec(rule(), 0..4),
        prop_oneof![1 => Just(None), 3 => serve().prop_map(Some)],
        of(any::<u64>()),
    )
        .prop_map(
            |(enabled, off, prerequisites, targets, rules, fallthrough, version)| {
                let mut s = json!({"enabled": enabled, "prerequisites": prerequisites,
                               "targets": targets, "rules": rules});
                if let Some(o) = off {
                    s["off_variation"] = json!(o);
                }
                if let Some(f) = fallthrough {
                    s["fallthrough"] = f;
                }
                if let Some(v) = version {
                    s["version"] = json!(v);
                }
                s
            },
        )
}

/// Mostly a value of the flag's type, sometimes anything.
fn variation_value(flag_type: &'static str) -> impl Strategy<Value = Value> {
    let typed = match flag_type {
        "boolean" => any::<bool>().prop_map(Value::from).boxed(),
        "string" => any_string().prop_map(Value::from).boxed(),
        "number" => (-100i64..100).prop_map(Value::from).boxed(),
        _ => any_json().boxed(),
    };
    prop_oneof![4 => typed, 1 => any_json()]
}

fn flag() -> impl Strategy<Value = Value> {
    select(&["boolean", "string", "number", "json"][..]).prop_flat_map(|flag_type| {
        let variations = prop_oneof![
            1 => vec((select(VARIATIONS), variation_value(flag_type)), 0..1),
            6 => vec((select(VARIATIONS), variation_value(flag_type)), 1..4),
        ];
        (
            select(FLAG_KEYS),
            variations,
            (
                prop_oneof![1 => Just(None), 4 => env_state().prop_map(Some)],
                btree_map(select(&["staging", "other"][..]), env_state(), 0..2),
            )
                .prop_map(|(production, mut others)| {
                    if let Some(state) = production {
                        others.insert("production", state);
                    }
                    others
                }),
            of(any::<bool>()),
        )
            .prop_map(move |(key, variations, environments, client_side)| {
                let variations: Vec<Value> = variations
                    .into_iter()
                    .map(|(k, v)| json!({"key": k, "value": v}))
                    .collect();
                let mut f = json!({"key": key, "type": flag_type, "variations": variations,
                                   "environments": environments});
                if let Some(c) = client_side {
                    f["client_side"] = json!(c);
                }
                f
            })
    })
}

fn segment() -> impl Strategy<Value = Value> {
    (
        select(&["beta", "gamma", "Bad"][..]),
        vec(any_string(), 0..4),
        vec(any_string(), 0..4),
        vec(vec(clause(), 0..3), 0..3),
    )
        .prop_map(|(key, included, excluded, rules)| {
            let rules: Vec<Value> = rules
                .into_iter()
                .map(|clauses| json!({"clauses": clauses}))
                .collect();
            json!({"key": key, "included": included, "excluded": excluded, "rules": rules})
        })
}

/// Documents shaped like real ones but full of mistakes.
fn document() -> impl Strategy<Value = Value> {
    (
        prop_oneof![6 => Just(1u32), 1 => Just(2)],
        vec(select(&["production", "staging", "Bad"][..]), 0..3),
        vec(segment(), 0..3),
        vec(flag(), 1..8),
    )
        .prop_map(|(version, envs, segments, flags)| {
            let envs: Vec<Value> = envs.into_iter().map(|k| json!({"key": k})).collect();
            json!({"flagstaff": version, "project": {"key": "p"}, "environments": envs,
                   "segments": segments, "flags": flags})
        })
}

fn context() -> impl Strategy<Value = Context> {
    let key = prop_oneof![1 => Just(None), 4 => any_string().prop_map(Some)];
    (key, btree_map(select(ATTRIBUTES), any_json(), 0..5)).prop_map(|(key, attributes)| {
        let mut ctx: Context = attributes.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        if let Some(key) = key {
            ctx.insert("targetingKey".into(), Value::from(key));
        }
        ctx
    })
}

/// Everything the engine offers, on one document; checks the invariants of each result.
fn exercise(doc_json: &Value, contexts: &[Context]) {
    let bytes = serde_json::to_vec(doc_json).expect("serializes");
    let Ok(doc) = parse_document(&bytes) else { return };
    let _ = validate_document(&doc);
    for environment in ["production", "staging", "nowhere"] {
        let env = CompiledEnvironment::compile(&doc, environment);
        for ctx in contexts {
            for key in ["f", "g", "h", "missing"] {
                let e = env.evaluate(key, ctx);
                assert_eq!(e.key, key);
                assert_eq!(e.value.is_none(), e.error.is_some(), "{e:?}");
                assert_eq!(e.variant.is_none(), e.error.is_some(), "{e:?}");
                assert_eq!(e.reason == Reason::Error, e.error.is_some(), "{e:?}");
                assert_eq!(
                    e.prerequisite.is_some(),
                    e.reason == Reason::PrerequisiteFailed,
                    "{e:?}"
                );
                match env.flag(key) {
                    None => assert_eq!(e.error, Some(EvalError::FlagNotFound)),
                    Some(flag) => {
                        assert_ne!(e.error, Some(EvalError::FlagNotFound));
                        if e.error.is_none() {
                            // The value is that of one of the flag's variations.
                            assert!(
                                flag.variations()
                                    .any(|(k, v)| Some(k) == e.variant && Some(v) == e.value)
                            );
                        }
                    }
                }
            }
            let all = env.evaluate_all(ctx, |_| true);
            assert_eq!(all.len(), env.len());
            for e in &all {
                assert_eq!(e, &env.evaluate(e.key, ctx), "bulk and single evaluation agree");
            }
        }
        for flag in &doc.flags {
            let changed = env.with_flag(flag).without_flag("g");
            for ctx in contexts {
                changed.evaluate_all(ctx, |_| true);
            }
        }
    }
    // The same flags as a bundle.
    let bundle = json!({"flagstaff": 1, "project": {"key": "p"}, "environment": "production",
                        "revision": 1, "segments": doc_json["segments"], "flags": doc_json["flags"]});
    if let Ok(bundle) = parse_bundle(&serde_json::to_vec(&bundle).expect("serializes")) {
        let _ = validate_bundle(&bundle);
        let env = CompiledEnvironment::from_bundle(&bundle);
        for ctx in contexts {
            env.evaluate_all(ctx, flagstaff_eval::CompiledFlag::is_client_side);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn document_like_json_never_panics(doc in document(), contexts in vec(context(), 1..4)) {
        exercise(&doc, &contexts);
    }

    #[test]
    fn arbitrary_json_never_panics(doc in any_json(), ctx in any_json()) {
        let contexts: Vec<Context> = match ctx {
            Value::Object(m) => vec![m],
            _ => vec![Context::new()],
        };
        exercise(&doc, &contexts);
        // Arbitrary JSON where the engine expects a flag.
        exercise(&json!({"flagstaff": 1, "project": {"key": "p"}, "flags": [doc]}), &contexts);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        let _ = parse_document(&bytes);
        let _ = parse_bundle(&bytes);
    }
}
