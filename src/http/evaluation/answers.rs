//! Pre-written pieces of evaluation answers, per snapshot: the JSON of each flag's key and of
//! each variation's value and key never changes within a snapshot, so the OFREP bulk answer and
//! the cacheable `GET /client/v1` answer copy them instead of serialising 50 values per request.
//! Built on the first evaluation after each change (about a microsecond per flag) and kept with
//! the snapshot.
//!
//! Each flag also owns a range of counter slots, one per variation, so that counting what was
//! served is an array increment ([`crate::events::tally`]).
//!
//! These bytes are the HTTP side's: the snapshot keeps them ([`Snapshot::derived`]) without
//! knowing their layout.

use flagstaff_eval::CompiledEnvironment;

use super::json::{write_str, write_value};
use crate::snapshot::Snapshot;

/// The pre-written answers of `snapshot`, made on first use and kept with it.
pub fn of(snapshot: &Snapshot) -> &Answers {
    snapshot.derived(|s| Answers::new(&s.engine))
}

/// The pieces of every flag of one snapshot, in the engine's flag order
/// ([`CompiledEnvironment::flags`], the positions `evaluate_each` gives), in one buffer.
#[derive(Debug)]
pub struct Answers {
    /// Every piece, flag after flag.
    bytes: Vec<u8>,
    /// Per flag: its first piece in `pieces` and its first counter slot.
    flags: Box<[(u32, u32)]>,
    /// Per flag, per variation, two pieces: the start of an OFREP success item, and a member
    /// of the `/client/v1` answer; as ranges of `bytes`.
    pieces: Box<[(u32, u32)]>,
    counters: usize,
}

impl Answers {
    pub fn new(engine: &CompiledEnvironment) -> Answers {
        let mut bytes = Vec::new();
        let mut flags = Vec::with_capacity(engine.len());
        let mut pieces = Vec::new();
        let mut counter = 0;
        let mut key = Vec::new();
        let mut piece = |bytes: &mut Vec<u8>, write: &dyn Fn(&mut Vec<u8>)| {
            let start = bytes.len();
            write(bytes);
            pieces.push((to_u32(start), to_u32(bytes.len())));
        };
        for flag in engine.flags() {
            flags.push((to_u32(2 * counter), to_u32(counter)));
            key.clear();
            write_str(&mut key, flag.key());
            for (variant, value) in flag.variations() {
                // {"key":…,"value":…,"variant":…,"metadata":{"version":N
                piece(&mut bytes, &|out| {
                    out.extend_from_slice(b"{\"key\":");
                    out.extend_from_slice(&key);
                    out.extend_from_slice(b",\"value\":");
                    write_value(out, value);
                    out.extend_from_slice(b",\"variant\":");
                    write_str(out, variant);
                    out.extend_from_slice(b",\"metadata\":{\"version\":");
                    out.extend_from_slice(flag.version().to_string().as_bytes());
                });
                // "key":value
                piece(&mut bytes, &|out| {
                    out.extend_from_slice(&key);
                    out.push(b':');
                    write_value(out, value);
                });
            }
            counter += flag.variations().len();
        }
        Answers {
            bytes,
            flags: flags.into_boxed_slice(),
            pieces: pieces.into_boxed_slice(),
            counters: counter,
        }
    }

    fn piece(&self, flag: usize, variation: usize, which: usize) -> &[u8] {
        let (start, end) = self.pieces[self.flags[flag].0 as usize + 2 * variation + which];
        &self.bytes[start as usize..end as usize]
    }

    /// The start of the OFREP success item of the flag at `flag` serving the variation at
    /// `variation`: `{"key":…,"value":…,"variant":…,"metadata":{"version":N` (the caller
    /// finishes the metadata, then adds the reason).
    pub fn ofrep_head(&self, flag: usize, variation: usize) -> &[u8] {
        self.piece(flag, variation, 0)
    }

    /// `"key":value`, for the `/client/v1` answer.
    pub fn member(&self, flag: usize, variation: usize) -> &[u8] {
        self.piece(flag, variation, 1)
    }

    /// The counter slot of the flag at `flag` serving the variation at `variation`: the slots
    /// are laid out as [`crate::events::tally`] reads them back.
    pub fn counter(&self, flag: usize, variation: usize) -> usize {
        self.flags[flag].1 as usize + variation
    }

    /// How many counter slots the flags own together.
    pub fn counters(&self) -> usize {
        self.counters
    }
}

/// Positions in one snapshot's answers fit in 32 bits (a snapshot of 4 GiB of answers is not a
/// thing this server holds).
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("a snapshot's answers are under 4 GiB")
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
        let text = |b: &[u8]| std::str::from_utf8(b).unwrap().to_owned();
        assert_eq!(answers.counters(), 3);
        // Sorted by key: a, then b.
        assert_eq!(
            text(answers.ofrep_head(0, 0)),
            r#"{"key":"a","value":{"x":[1,2.5,null]},"variant":"v1","metadata":{"version":0"#
        );
        assert_eq!(text(answers.member(0, 0)), r#""a":{"x":[1,2.5,null]}"#);
        assert_eq!(
            text(answers.ofrep_head(1, 0)),
            r#"{"key":"b","value":"say \"hi\"\n","variant":"q","metadata":{"version":7"#
        );
        assert_eq!(text(answers.member(1, 1)), r#""b":"plain""#);
        assert_eq!(
            (
                answers.counter(0, 0),
                answers.counter(1, 0),
                answers.counter(1, 1)
            ),
            (0, 1, 2)
        );
        // A whole item parses as the JSON it claims to be.
        let mut item = answers.ofrep_head(1, 1).to_vec();
        item.extend_from_slice(br#"},"reason":"STATIC"}"#);
        let item: serde_json::Value = serde_json::from_slice(&item).unwrap();
        assert_eq!(
            item,
            json!({"key": "b", "value": "plain", "variant": "n", "reason": "STATIC", "metadata": {"version": 7}})
        );
    }
}
