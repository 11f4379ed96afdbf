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

    /// The first value of a field, trimmed; empty when not sent. For keys and choices; free
    /// text is read with [`Form::line`] or [`Form::multiline`], which keep what was typed.
    pub fn text(&self, name: &str) -> &str {
        self.get(name).map_or("", str::trim)
    }

    /// The first value of a one-line field as sent (not trimmed); empty when not sent.
    pub fn line(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    /// The first value of a textarea, its line breaks as `\n`; empty when not sent.
    pub fn multiline(&self, name: &str) -> String {
        multiline(self.get(name).unwrap_or(""))
    }

    /// The fields whose names start with `prefix`, as (rest of the name, value), in the order
    /// sent; a repeated name counts once (its first value).
    pub fn with_prefix<'a>(&'a self, prefix: &str) -> Vec<(&'a str, &'a str)> {
        let mut out: Vec<(&str, &str)> = Vec::new();
        for (k, v) in &self.fields {
            if let Some(rest) = k.strip_prefix(prefix)
                && !out.iter().any(|(r, _)| *r == rest)
            {
                out.push((rest, v.as_str()));
            }
        }
        out
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

/// Whether `value` shows as one line of a textarea and reads back unchanged: not empty, no
/// spaces at its ends (lines are trimmed), nothing an HTML parser or a browser changes (CR, LF,
/// NUL), and not starting with `[` (which starts the JSON form).
pub fn is_plain_line(value: &str) -> bool {
    !value.is_empty()
        && value.trim() == value
        && !value.contains(['\n', '\r', '\0'])
        && !value.starts_with('[')
}

/// A list of strings as a textarea shows it: one per line when every value is a
/// [plain line](is_plain_line), otherwise a JSON array (which holds any string exactly).
/// [`list`] reads either back to the same values.
pub fn list_text(values: &[String]) -> String {
    if values.iter().all(|v| is_plain_line(v)) {
        values.join("\n")
    } else {
        serde_json::Value::from(values).to_string()
    }
}

/// Reads a list of strings from a textarea: a JSON array of strings as is; otherwise one value
/// per line, trimmed, without empty lines. Commas are part of values: `Doe, Jane` is one key.
pub fn list(text: &str) -> Result<Vec<String>, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('[') {
        return serde_json::from_str::<Vec<String>>(trimmed).map_err(|_| {
            "Starts with [ but is not a JSON array of strings; write one value per line instead.".to_owned()
        });
    }
    Ok(lines(text))
}

/// Lines of a textarea, trimmed, without empty ones (commas kept: values may contain them).
pub fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Keys separated by commas, spaces or lines (for variation keys, which contain none of them).
pub fn keys(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A textarea's text as it was rendered: browsers send its line breaks as CR LF.
pub fn multiline(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
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
        assert_eq!(list(" u-1\nDoe, Jane \r\n\n").unwrap(), vec!["u-1", "Doe, Jane"]);
        assert_eq!(lines("a,b\n c \n"), vec!["a,b", "c"]);
        assert_eq!(keys("on, off\nmaybe"), vec!["on", "off", "maybe"]);
        assert_eq!(multiline("a\r\nb\rc\n"), "a\nb\nc\n");
    }

    #[test]
    fn every_list_reads_back_as_it_was_shown() {
        let lists: Vec<Vec<String>> = vec![
            vec![],
            vec!["u-1".into(), "Doe, Jane".into()],
            vec![" padded ".into()],
            vec![String::new()],
            vec!["line\nbreak".into(), "cr\r".into(), "nul\0".into()],
            vec!["[not json".into(), "\"quoted\"".into(), "<script>".into()],
            vec!["12".into(), "ünï ✓".into(), "\t".into()],
        ];
        for values in lists {
            let shown = list_text(&values);
            assert_eq!(list(&multiline(&shown)).unwrap(), values, "{shown:?}");
        }
        assert!(list("[1, 2]").is_err());
    }
}
