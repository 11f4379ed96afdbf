//! Readable differences between two JSON values (an audit entry's before and after): one line
//! per changed leaf, with its path and the old and new values.

use serde_json::Value;

/// One changed value. `before`/`after` are compact JSON; `None` when absent on that side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// The longest value shown in full; longer ones are cut.
const MAX_VALUE_CHARS: usize = 160;

fn show(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= MAX_VALUE_CHARS {
        return text;
    }
    let cut: String = text.chars().take(MAX_VALUE_CHARS).collect();
    format!("{cut}…")
}

/// Versions change with every save: they are noise in a diff.
fn is_noise(path: &str) -> bool {
    path == "version" || (path.starts_with("environments.") && path.ends_with(".version"))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(path: &str, before: Option<&Value>, after: Option<&Value>, out: &mut Vec<Change>) {
    if is_noise(path) {
        return;
    }
    match (before, after) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))).collect();
            keys.sort();
            for key in keys {
                walk(&join(path, key), a.get(key), b.get(key), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            for i in 0..a.len().max(b.len()) {
                walk(&format!("{path}[{i}]"), a.get(i), b.get(i), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(Change {
            path: path.to_owned(),
            before: a.map(show),
            after: b.map(show),
        }),
    }
}

/// Every changed leaf from `before` to `after`, in path order.
pub fn diff(before: Option<&Value>, after: Option<&Value>) -> Vec<Change> {
    let mut out = Vec::new();
    match (before, after) {
        // A creation or deletion lists the top-level fields, not every leaf.
        (None, Some(Value::Object(map))) | (Some(Value::Object(map)), None) => {
            let created = after.is_some();
            for (key, value) in map {
                if is_noise(key) {
                    continue;
                }
                let shown = Some(show(value));
                out.push(Change {
                    path: key.clone(),
                    before: if created { None } else { shown.clone() },
                    after: if created { shown } else { None },
                });
            }
        }
        _ => walk("", before, after, &mut out),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changed_leaves_are_listed_with_their_paths() {
        let before = json!({"enabled": false, "rules": [{"id": "a"}], "version": 3, "targets": []});
        let after =
            json!({"enabled": true, "rules": [{"id": "a"}, {"id": "b"}], "version": 4, "targets": []});
        assert_eq!(
            diff(Some(&before), Some(&after)),
            vec![
                Change {
                    path: "enabled".into(),
                    before: Some("false".into()),
                    after: Some("true".into())
                },
                Change {
                    path: "rules[1]".into(),
                    before: None,
                    after: Some("{\"id\":\"b\"}".into())
                },
            ]
        );
    }

    #[test]
    fn a_creation_lists_top_level_fields_and_long_values_are_cut() {
        let after = json!({"key": "f", "name": "x".repeat(500)});
        let changes = diff(None, Some(&after));
        assert_eq!(changes.len(), 2);
        assert!(changes[1].after.as_ref().unwrap().ends_with('…'));
        assert!(changes.iter().all(|c| c.before.is_none()));
    }
}
