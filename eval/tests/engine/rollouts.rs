//! Rollout properties: stickiness, monotonic weight changes, and distribution.

use flagstaff_eval::{CompiledEnvironment, Reason};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::support::{ENV, compile_valid, ctx};

/// A string flag `f` with variations v0..v{n-1} and a fallthrough rollout with `weights`.
fn rollout_env(weights: &[u32], salt: Option<&str>) -> CompiledEnvironment {
    let variations: Vec<Value> = (0..weights.len())
        .map(|i| json!({"key": format!("v{i}"), "value": format!("value {i}")}))
        .collect();
    let weighted: Vec<Value> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| json!({"variation": format!("v{i}"), "weight": w}))
        .collect();
    let mut rollout = json!({"variations": weighted});
    if let Some(salt) = salt {
        rollout["salt"] = json!(salt);
    }
    compile_valid(
        json!([]),
        json!([{"key": "f", "type": "string", "variations": variations,
                "environments": {ENV: {"enabled": true, "fallthrough": {"rollout": rollout}}}}]),
    )
}

fn variant_of(env: &CompiledEnvironment, key: &str) -> usize {
    let e = env.evaluate("f", &ctx(json!({"targetingKey": key})));
    assert_eq!(e.reason, Reason::Split, "{e:?}");
    e.variant.expect("a variant")[1..].parse().expect("v<number>")
}

/// 2 to 5 weights summing to 100000.
fn weights() -> impl Strategy<Value = Vec<u32>> {
    proptest::collection::vec(0u32..=100_000, 1..=4).prop_map(|mut cuts| {
        cuts.sort_unstable();
        let mut weights = Vec::with_capacity(cuts.len() + 1);
        let mut last = 0;
        for cut in cuts {
            weights.push(cut - last);
            last = cut;
        }
        weights.push(100_000 - last);
        weights
    })
}

/// SplitMix64: random keys without a dependency, reproducible from a proptest seed.
fn random_keys(seed: u64, n: usize) -> Vec<String> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..n)
        .map(|_| {
            let len = 4 + (next() % 28) as usize;
            (0..len)
                .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789-_@."[(next() % 40) as usize]))
                .collect()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_context_always_gets_the_same_bucket(
        weights in weights(),
        key in "\\PC{0,40}",
        other in "[a-z]{1,8}",
        // An empty salt is refused by validation (left out, the flag key salts).
        salt in proptest::option::of("[a-z.-]{1,12}"),
    ) {
        let env = rollout_env(&weights, salt.as_deref());
        let first = variant_of(&env, &key);
        // Again, on a freshly compiled copy, and with other attributes in the context.
        let again = rollout_env(&weights, salt.as_deref());
        prop_assert_eq!(variant_of(&again, &key), first);
        let e = env.evaluate("f", &ctx(json!({"targetingKey": key, other: [1, 2], "plan": "gold"})));
        let expected = format!("v{first}");
        prop_assert_eq!(e.variant, Some(expected.as_str()));
        prop_assert!(weights[first] > 0, "a zero-weight variation is never served");
    }

    #[test]
    fn raising_one_weight_only_moves_contexts_into_that_variation(
        weights in weights(),
        pick in any::<prop::sample::Index>(),
        fraction in 0.0f64..=1.0,
        seed in any::<u64>(),
    ) {
        let raised = pick.index(weights.len());
        // Take the weight from the neighbouring variations: the ones after it, nearest first,
        // or, for the last variation, the ones before it.
        let donors: Vec<usize> = if raised + 1 < weights.len() {
            (raised + 1..weights.len()).collect()
        } else {
            (0..raised).rev().collect()
        };
        let available: u32 = donors.iter().map(|&d| weights[d]).sum();
        let mut delta = (f64::from(available) * fraction) as u32;
        let mut new_weights = weights.clone();
        new_weights[raised] += delta;
        for d in donors {
            let take = delta.min(new_weights[d]);
            new_weights[d] -= take;
            delta -= take;
        }
        prop_assert_eq!(new_weights.iter().sum::<u32>(), 100_000);
        let before = rollout_env(&weights, None);
        let after = rollout_env(&new_weights, None);
        for key in random_keys(seed, 2_000) {
            let (old, new) = (variant_of(&before, &key), variant_of(&after, &key));
            prop_assert!(new == old || new == raised,
                "{key}: moved from v{old} to v{new}; raised v{raised}: {weights:?} → {new_weights:?}");
        }
    }
}

proptest! {
    // Each case evaluates 100,000 contexts.
    #![proptest_config(ProptestConfig::with_cases(3))]

    #[test]
    fn splits_land_within_one_percent_over_100000_keys(seed in any::<u64>(), salt in "[a-z-]{1,12}") {
        let keys = random_keys(seed, 100_000);
        for percent in [10u32, 50, 90] {
            let env = rollout_env(&[percent * 1000, (100 - percent) * 1000], Some(&salt));
            let first = keys.iter().filter(|k| variant_of(&env, k) == 0).count();
            let share = first as f64 / keys.len() as f64 * 100.0;
            prop_assert!((share - f64::from(percent)).abs() <= 1.0,
                "{percent}% split served {share:.2}% (salt {salt:?}, seed {seed})");
        }
    }
}
