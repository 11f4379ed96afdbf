//! A JSON writer for the answers built by hand on the evaluation paths (OFREP, `/client/v1`):
//! appends to a `Vec<u8>` without intermediate strings. serde_json writes anything that is not
//! a plain key or a boolean, so the output is always valid JSON.

use flagstaff_eval::Value;

/// Writes `s` as a JSON string. Keys, variation keys and rule ids never need escaping (they
/// are validated slugs), so the common case is a copy; anything else goes through serde_json.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_str_content(out, s);
    out.push(b'"');
}

/// Writes the inside of `s` as a JSON string, without the quotes: pieces of one string can be
/// written one after another.
pub fn write_str_content(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.extend_from_slice(s.as_bytes());
    } else {
        let quoted = serde_json::to_string(s).expect("a string is always JSON");
        out.extend_from_slice(&quoted.as_bytes()[1..quoted.len() - 1]);
    }
}

/// Writes a number without an allocation.
pub fn write_u64(out: &mut Vec<u8>, n: u64) {
    use std::io::Write as _;
    write!(out, "{n}").expect("writing to a Vec cannot fail");
}

/// Writes a JSON value.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::String(s) => write_str(out, s),
        other => serde_json::to_writer(&mut *out, other).expect("writing JSON to a Vec cannot fail"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_copied_when_plain_and_escaped_otherwise() {
        for s in [
            "plain-key",
            "with, comma",
            "say \"hi\"",
            "tab\there",
            "back\\slash",
            "<script>alert(1)</script>",
            "caf\u{e9} \u{1f600}",
            "\u{0}",
        ] {
            let mut out = Vec::new();
            write_str(&mut out, s);
            assert_eq!(
                std::str::from_utf8(&out).unwrap(),
                serde_json::to_string(s).unwrap(),
                "{s:?}"
            );
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, s);
        }
        let mut out = b"\"".to_vec();
        write_str_content(&mut out, "a\"");
        write_str_content(&mut out, "b");
        out.push(b'"');
        assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), "a\"b");
    }

    #[test]
    fn values_and_numbers_are_json() {
        for value in [
            serde_json::json!(true),
            serde_json::json!(false),
            serde_json::json!(1.5),
            serde_json::json!({"a": [1, null, "x\ty"]}),
        ] {
            let mut out = Vec::new();
            write_value(&mut out, &value);
            assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), value);
        }
        let mut out = Vec::new();
        write_u64(&mut out, u64::MAX);
        assert_eq!(out, u64::MAX.to_string().as_bytes());
    }
}
