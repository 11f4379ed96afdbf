//! Pre-written pieces of evaluation answers, per snapshot: the JSON of each flag's key and of
//! each variation's value and key never changes within a snapshot, so the OFREP bulk answer and
//! the cacheable `GET /client/v1` answer copy them instead of serialising 50 values per request.
//! Built on the first evaluation after each change (about a microsecond per flag) and kept with
//! the snapshot.
//!
//! Each flag also owns a range of counter slots, one per variation, so that counting what was
//! served is an array increment ([`crate::http::ofrep`]'s tallies).

use flagstaff_eval::{CompiledEnvironment, Value};

/// The pieces of every flag of one snapshot, in the engine's flag order
/// ([`CompiledEnvironment::flags`], the positions `evaluate_each` gives).
#[derive(Debug)]
pub struct Answers {
    flags: Box<[FlagAnswers]>,
    counters: usize,
}

/// One flag's pieces.
#[derive(Debug)]
pub struct FlagAnswers {
    /// Per variation, the start of an OFREP success item up to the reason's opening quote:
    /// `{"key":"…","value":…,"variant":"…","reason":"`.
    ofrep: Box<[Box<[u8]>]>,
    /// What follows the reason: `","metadata":{"version":N` (the caller closes it).
    metadata: Box<[u8]>,
    /// Per variation, a member of the `/client/v1` answer: `"key":value`.
    member: Box<[Box<[u8]>]>,
    /// The first of this flag's counter slots (one per variation).
    counter: usize,
}

impl Answers {
    pub fn new(engine: &CompiledEnvironment) -> Answers {
        let mut counter = 0;
        let flags = engine
            .flags()
            .map(|flag| {
                let mut key = Vec::with_capacity(flag.key().len() + 2);
                write_str(&mut key, flag.key());
                let mut ofrep = Vec::with_capacity(flag.variations().len());
                let mut member = Vec::with_capacity(flag.variations().len());
                for (variant, value) in flag.variations() {
                    let mut item = Vec::with_capacity(64);
                    item.extend_from_slice(b"{\"key\":");
                    item.extend_from_slice(&key);
                    item.extend_from_slice(b",\"value\":");
                    write_value(&mut item, value);
                    item.extend_from_slice(b",\"variant\":");
                    write_str(&mut item, variant);
                    item.extend_from_slice(b",\"reason\":\"");
                    ofrep.push(item.into_boxed_slice());

                    let mut pair = key.clone();
                    pair.push(b':');
                    write_value(&mut pair, value);
                    member.push(pair.into_boxed_slice());
                }
                let metadata = format!("\",\"metadata\":{{\"version\":{}", flag.version());
                let answers = FlagAnswers {
                    ofrep: ofrep.into_boxed_slice(),
                    metadata: metadata.into_bytes().into_boxed_slice(),
                    member: member.into_boxed_slice(),
                    counter,
                };
                counter += flag.variations().len();
                answers
            })
            .collect();
        Answers {
            flags,
            counters: counter,
        }
    }

    /// The flag at `index` in the engine's order.
    pub fn flag(&self, index: usize) -> &FlagAnswers {
        &self.flags[index]
    }

    /// How many counter slots the flags own together.
    pub fn counters(&self) -> usize {
        self.counters
    }
}

impl FlagAnswers {
    /// `{"key":…,"value":…,"variant":…,"reason":"` for the variation at `variation`.
    pub fn ofrep_head(&self, variation: usize) -> &[u8] {
        &self.ofrep[variation]
    }

    /// `","metadata":{"version":N`.
    pub fn ofrep_metadata(&self) -> &[u8] {
        &self.metadata
    }

    /// `"key":value` for the variation at `variation`.
    pub fn member(&self, variation: usize) -> &[u8] {
        &self.member[variation]
    }

    /// The counter slot of the variation at `variation`.
    pub fn counter(&self, variation: usize) -> usize {
        self.counter + variation
    }
}

/// Writes `s` as a JSON string. Keys, variation keys and rule ids never need escaping (they
/// are validated slugs), so the common case is a copy; anything else goes through serde_json.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("writing JSON to a Vec cannot fail");
    }
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
    use serde_json::json;

    #[test]
    fn pieces_are_the_json_of_each_flag_and_variation() {
        let doc = flagstaff_eval::parse_document(
            json!({"flagstaff": 1, "project": {"key": "p"}, "environments": [{"key": "e"}],
                   "flags": [
                     {"key": "b", "type": "string", "variations": [
                        {"key": "q", "value": "say \"hi\"\n"}, {"key": "n", "value": "plain"}],
                      "environments": {"e": {"enabled": true, "version": 7, "fallthrough": {"variation": "q"}}}},
                     {"key": "a", "type": "json", "variations": [{"key": "v1", "value": {"x": [1, 2.5, null]}}],
                      "environments": {"e": {"enabled": true, "fallthrough": {"variation": "v1"}}}}]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let engine = CompiledEnvironment::compile(&doc, "e");
        let answers = Answers::new(&engine);
        assert_eq!(answers.counters(), 3);
        // Sorted by key: a, then b.
        let a = answers.flag(0);
        assert_eq!(
            std::str::from_utf8(a.ofrep_head(0)).unwrap(),
            r#"{"key":"a","value":{"x":[1,2.5,null]},"variant":"v1","reason":""#
        );
        assert_eq!(
            std::str::from_utf8(a.member(0)).unwrap(),
            r#""a":{"x":[1,2.5,null]}"#
        );
        let b = answers.flag(1);
        assert_eq!(
            std::str::from_utf8(b.ofrep_head(0)).unwrap(),
            r#"{"key":"b","value":"say \"hi\"\n","variant":"q","reason":""#
        );
        assert_eq!(std::str::from_utf8(b.member(1)).unwrap(), r#""b":"plain""#);
        assert_eq!(
            std::str::from_utf8(b.ofrep_metadata()).unwrap(),
            r#"","metadata":{"version":7"#
        );
        assert_eq!((a.counter(0), b.counter(0), b.counter(1)), (0, 1, 2));
        // A whole item parses as the JSON it claims to be.
        let mut item = b.ofrep_head(1).to_vec();
        item.extend_from_slice(b"STATIC");
        item.extend_from_slice(b.ofrep_metadata());
        item.extend_from_slice(b"}}");
        let item: serde_json::Value = serde_json::from_slice(&item).unwrap();
        assert_eq!(
            item,
            json!({"key": "b", "value": "plain", "variant": "n", "reason": "STATIC", "metadata": {"version": 7}})
        );
    }
}
