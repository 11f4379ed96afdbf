//! Rollout bucketing: `bucket = (murmur3_x86_32(salt + "." + value, seed 0) * 100000) >> 32`.
//!
//! The test vectors in `eval/testdata/bucketing-vectors.json` pin this function down for every
//! SDK.

use serde_json::Value;

/// Number of buckets; rollout weights are out of this.
pub const BUCKETS: u32 = 100_000;

/// The bucket in `[0, 100000)` of `value` under `salt`.
pub fn bucket(salt: &str, value: &str) -> u32 {
    Salted::new(salt).bucket(value)
}

/// The bucket of a `bucket_by` attribute value: strings as they are, numbers as their JSON text;
/// `None` for any other JSON type.
pub fn bucket_value(salt: &str, value: &Value) -> Option<u32> {
    Salted::new(salt).bucket_value(value)
}

/// MurmurHash3 x86 32-bit of `data`.
pub fn murmur3_x86_32(data: &[u8], seed: u32) -> u32 {
    let mut hasher = Murmur3::new(seed);
    hasher.write(data);
    hasher.finish()
}

fn scale(hash: u32) -> u32 {
    // (hash * 100000) >> 32 is < 100000 because hash < 2^32.
    ((u64::from(hash) * u64::from(BUCKETS)) >> 32) as u32
}

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

/// The hash state after `salt + "."`: a rollout makes it once, and each bucket then hashes only
/// the value. [`bucket`] and [`bucket_value`] are this with a fresh state.
#[derive(Debug, Clone, Copy)]
pub struct Salted(Murmur3);

impl Salted {
    pub fn new(salt: &str) -> Salted {
        let mut hasher = Murmur3::new(0);
        hasher.write(salt.as_bytes());
        hasher.write(b".");
        Salted(hasher)
    }

    /// [`bucket`] under this salt.
    pub fn bucket(&self, value: &str) -> u32 {
        let mut hasher = self.0;
        hasher.write(value.as_bytes());
        scale(hasher.finish())
    }

    /// [`bucket_value`] under this salt.
    pub fn bucket_value(&self, value: &Value) -> Option<u32> {
        match value {
            Value::String(s) => Some(self.bucket(s)),
            // Rare enough that formatting the number into a String is fine.
            Value::Number(n) => Some(self.bucket(&n.to_string())),
            _ => None,
        }
    }
}

/// Streaming MurmurHash3 x86 32-bit, so that `salt + "." + value` needs no allocation.
#[derive(Debug, Clone, Copy)]
struct Murmur3 {
    h: u32,
    tail: [u8; 4],
    tail_len: usize,
    len: u32,
}

impl Murmur3 {
    fn new(seed: u32) -> Self {
        Murmur3 {
            h: seed,
            tail: [0; 4],
            tail_len: 0,
            len: 0,
        }
    }

    fn write(&mut self, mut data: &[u8]) {
        // The reference implementation mixes the length in as a 32-bit integer.
        self.len = self.len.wrapping_add(data.len() as u32);
        if self.tail_len > 0 {
            let take = (4 - self.tail_len).min(data.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&data[..take]);
            self.tail_len += take;
            data = &data[take..];
            if self.tail_len < 4 {
                return;
            }
            self.block(self.tail);
            self.tail_len = 0;
        }
        let mut blocks = data.chunks_exact(4);
        for block in &mut blocks {
            self.block([block[0], block[1], block[2], block[3]]);
        }
        let rest = blocks.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    fn block(&mut self, bytes: [u8; 4]) {
        self.h ^= mix(u32::from_le_bytes(bytes));
        self.h = self.h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }

    fn finish(self) -> u32 {
        let mut h = self.h;
        if self.tail_len > 0 {
            let mut k = 0u32;
            for (i, byte) in self.tail[..self.tail_len].iter().enumerate() {
                k |= u32::from(*byte) << (8 * i);
            }
            h ^= mix(k);
        }
        h ^= self.len;
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^ (h >> 16)
    }
}

fn mix(k: u32) -> u32 {
    k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_murmur3_values() {
        // Reference values of MurmurHash3_x86_32 (SMHasher).
        assert_eq!(murmur3_x86_32(b"", 0), 0);
        assert_eq!(murmur3_x86_32(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_x86_32(b"", 0xffff_ffff), 0x81f1_6f39);
        assert_eq!(murmur3_x86_32(b"hello", 0), 0x248b_fa47);
        assert_eq!(murmur3_x86_32(b"Hello, world!", 1234), 0xfaf6_cdb3);
        assert_eq!(
            murmur3_x86_32(b"The quick brown fox jumps over the lazy dog", 0x9747_b28c),
            0x2fa8_26cd
        );
    }

    #[test]
    fn a_salted_state_buckets_as_the_whole_string_does() {
        for salt in ["", "s", "abc", "abcd", "new-checkout", "a-salt-of-17-char"] {
            let salted = Salted::new(salt);
            for value in ["", "u", "user-12345", "ünïcödé", "0123456789abcdef0"] {
                let whole = scale(murmur3_x86_32(format!("{salt}.{value}").as_bytes(), 0));
                assert_eq!(salted.bucket(value), whole, "{salt:?} {value:?}");
                // The same state serves any number of values.
                assert_eq!(salted.bucket(value), whole, "{salt:?} {value:?} again");
            }
            let whole = |text: &str| Some(scale(murmur3_x86_32(format!("{salt}.{text}").as_bytes(), 0)));
            assert_eq!(salted.bucket_value(&serde_json::json!(42)), whole("42"));
            assert_eq!(salted.bucket_value(&serde_json::json!(2.5)), whole("2.5"));
            assert_eq!(salted.bucket_value(&serde_json::json!("x")), whole("x"));
            assert_eq!(salted.bucket_value(&serde_json::json!(true)), None);
        }
    }

    #[test]
    fn streaming_in_pieces_equals_one_piece() {
        let whole = b"salt.value-with-odd-length";
        let one = murmur3_x86_32(whole, 0);
        for split_a in 0..whole.len() {
            for split_b in split_a..whole.len() {
                let mut h = Murmur3::new(0);
                h.write(&whole[..split_a]);
                h.write(&whole[split_a..split_b]);
                h.write(&whole[split_b..]);
                assert_eq!(h.finish(), one, "split at {split_a}, {split_b}");
            }
        }
    }

    #[test]
    fn extreme_hashes_scale_into_range() {
        assert_eq!(scale(0), 0);
        assert_eq!(scale(u32::MAX), 99_999);
        assert_eq!(scale(1 << 31), 50_000);
    }
}
