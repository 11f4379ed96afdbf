//! A posted form (`application/x-www-form-urlencoded`) as an ordered list of fields, so that
//! repeated and indexed names (`rules[0].clauses[1].op`) can be read back.

use std::collections::BTreeSet;

/// The fields of a posted form, in the order they were sent.
#[derive(Debug, Clone, Default)]
pub struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    /// Parses a form body. Malformed percent-encoding is replaced, never an error.
    pub fn parse(body: &[u8]) -> Result<Form, String> {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
            .map(|fields| Form { fields })
            .map_err(|e| format!("the form could not be read: {e}"))
    }

    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Form {
        Form {
            fields: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// The first value of a field, if sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a field, trimmed; empty when not sent.
    pub fn text(&self, name: &str) -> &str {
        self.get(name).map(str::trim).unwrap_or("")
    }

    /// Every value of a repeated field (e.g. several checked boxes of one name).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether a checkbox of this name was checked (any value but `false`/`off`).
    pub fn checked(&self, name: &str) -> bool {
        self.all(name)
            .iter()
            .any(|v| !matches!(*v, "false" | "off" | "0"))
    }

    /// The indices `i` of fields named `{prefix}[i]…`, in numeric order (rows a script added
    /// or removed leave gaps; they are read in order).
    pub fn indices(&self, prefix: &str) -> Vec<usize> {
        let mut out = BTreeSet::new();
        for (k, _) in &self.fields {
            if let Some(rest) = k.strip_prefix(prefix).and_then(|r| r.strip_prefix('['))
                && let Some((n, _)) = rest.split_once(']')
                && let Ok(n) = n.parse::<usize>()
            {
                out.insert(n);
            }
        }
        out.into_iter().collect()
    }
}

/// Lines of a textarea (or comma-separated values), trimmed, without empty ones.
pub fn list(text: &str) -> Vec<String> {
    text.split(['\n', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Lines of a textarea, trimmed, without empty ones (commas kept: values may contain them).
pub fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_numeric_and_ordered_with_gaps() {
        let form = Form::from_pairs(&[
            ("rules[10].id", "a"),
            ("rules[2].id", "b"),
            ("rules[2].clauses[0].op", "in"),
            ("rulesx[3].id", "c"),
            ("rules[x].id", "d"),
        ]);
        assert_eq!(form.indices("rules"), vec![2, 10]);
        assert_eq!(form.indices("rules[2].clauses"), vec![0]);
    }

    #[test]
    fn checkboxes_and_lists() {
        let form = Form::parse(b"a=on&b=false&c=x%2Cy&c=z").unwrap();
        assert!(form.checked("a"));
        assert!(!form.checked("b"));
        assert!(!form.checked("missing"));
        assert_eq!(form.all("c"), vec!["x,y", "z"]);
        assert_eq!(list(" u-1\nu-2, u-3 \n\n"), vec!["u-1", "u-2", "u-3"]);
        assert_eq!(lines("a,b\n c \n"), vec!["a,b", "c"]);
    }
}
