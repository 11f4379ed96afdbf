//! Conditional requests and content codings, once for every handler that serves something
//! cacheable: the bundle, OFREP's bulk answer, `/client/v1`, the relay document, the browser
//! SDK and the pages' assets.
//!
//! * [`IfNoneMatch`]: RFC 9110 §13.1.2 — a list of entity tags, or `*`; compared weakly
//!   (`W/"x"` matches `"x"`). A tag is the quoted string, commas inside it included.
//! * [`AcceptEncoding`]: RFC 9110 §12.5.3 — codings with q-values; `q=0` means "not
//!   acceptable", `*` stands for every coding not named, and `identity` is acceptable unless
//!   refused by name or by `*;q=0`.
//!
//! Both are extractors that keep the request (a reference count) and read its headers only when
//! asked, as bytes, without allocating: they are on the hottest paths (an OFREP bulk answer,
//! the bundle). actix's typed headers (`header::IfNoneMatch`, `header::AcceptEncoding`) parse
//! into a `Vec` of owned tags or codings on every request, so they serve here as the reference
//! the unit tests compare with, not as the parser. A header that is not well-formed matches
//! nothing (for `If-None-Match`, the tags before the defect still count).

use std::convert::Infallible;
use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{FromRequest, HttpRequest};

/// The request's `If-None-Match`, read on demand.
pub struct IfNoneMatch(HttpRequest);

impl IfNoneMatch {
    /// Whether the client already holds `etag` (a quoted strong or weak tag): answer 304.
    pub fn matches(&self, etag: &str) -> bool {
        none_match(self.0.headers(), etag)
    }
}

impl FromRequest for IfNoneMatch {
    type Error = Infallible;
    type Future = Ready<Result<IfNoneMatch, Infallible>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(IfNoneMatch(req.clone())))
    }
}

/// The request's `Accept-Encoding`, read on demand.
pub struct AcceptEncoding(HttpRequest);

impl AcceptEncoding {
    /// Whether to send the gzip form of a body that exists both plain and gzipped.
    pub fn gzip(&self) -> bool {
        prefers_gzip(self.0.headers())
    }
}

impl FromRequest for AcceptEncoding {
    type Error = Infallible;
    type Future = Ready<Result<AcceptEncoding, Infallible>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(AcceptEncoding(req.clone())))
    }
}

/// Whether any `If-None-Match` field names `etag` (weakly) or is `*`.
pub fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    let wanted = opaque(etag.trim().as_bytes());
    headers
        .get_all(header::IF_NONE_MATCH)
        .any(|value| EntityTags(value.as_bytes()).any(|tag| tag == Tag::Any || tag == Tag::Opaque(wanted)))
}

/// `W/"x"` → `"x"`: what weak comparison compares.
fn opaque(tag: &[u8]) -> &[u8] {
    tag.strip_prefix(b"W/").unwrap_or(tag)
}

#[derive(Debug, PartialEq, Eq)]
enum Tag<'a> {
    /// `*`
    Any,
    /// A tag's opaque part, quotes included.
    Opaque(&'a [u8]),
}

/// The entity tags of one `If-None-Match` field; ends at the first thing that is not one.
struct EntityTags<'a>(&'a [u8]);

impl<'a> Iterator for EntityTags<'a> {
    type Item = Tag<'a>;

    fn next(&mut self) -> Option<Tag<'a>> {
        let rest = self.0.trim_ascii_start();
        let rest = rest.strip_prefix(b",").unwrap_or(rest).trim_ascii_start();
        if let Some(after) = rest.strip_prefix(b"*") {
            let after = after.trim_ascii_start();
            if !(after.is_empty() || after.starts_with(b",")) {
                self.0 = b"";
                return None;
            }
            self.0 = after;
            return Some(Tag::Any);
        }
        let rest = rest.strip_prefix(b"W/").unwrap_or(rest);
        // entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; etagc = %x21 / %x23-7E / obs-text
        let inner = rest.strip_prefix(b"\"")?;
        let end = inner.iter().position(|&b| b == b'"')?;
        if !inner[..end]
            .iter()
            .all(|&b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
        {
            self.0 = b"";
            return None;
        }
        let (tag, after) = rest.split_at(end + 2);
        let after = after.trim_ascii_start();
        if !(after.is_empty() || after.starts_with(b",")) {
            // `"a"b`: not a list of tags; what came before still counts.
            self.0 = b"";
            return Some(Tag::Opaque(tag));
        }
        self.0 = after;
        Some(Tag::Opaque(tag))
    }
}

/// A q-value in thousandths: `q=0.5` → 500. `None` when it is not one (RFC 9110 §12.4.2:
/// `0`, `0.` and up to three digits, or `1` with only zeros after the point).
fn qvalue(text: &[u8]) -> Option<u16> {
    let (int, frac) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let thousandths = frac
        .iter()
        .chain(std::iter::repeat(&b'0'))
        .take(3)
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The codings of one `Accept-Encoding` field with their weights, in thousandths. An element
/// whose parameters are not well-formed is left out.
fn codings(value: &[u8]) -> impl Iterator<Item = (&[u8], u16)> {
    value.split(|&b| b == b',').filter_map(|element| {
        let mut parts = element.split(|&b| b == b';');
        let coding = parts.next()?.trim_ascii();
        if coding.is_empty() {
            return None;
        }
        let mut weight = 1000;
        for param in parts {
            let param = param.trim_ascii();
            let (name, value) = param.split_at(param.iter().position(|&b| b == b'=')?);
            if name.trim_ascii().eq_ignore_ascii_case(b"q") {
                weight = qvalue(value[1..].trim_ascii())?;
            }
        }
        Some((coding, weight))
    })
}

/// Whether gzip is the coding to send, given the body exists as gzip and as identity: gzip
/// must be acceptable (named with a weight above 0, or covered by `*` with a weight above 0),
/// and identity must not be preferred by name with a higher weight. With no `Accept-Encoding`
/// the answer is identity, which every client reads. When neither is acceptable, identity is
/// sent all the same (RFC 9110 §12.5.3 allows it; a 406 would help nobody).
pub fn prefers_gzip(headers: &HeaderMap) -> bool {
    let (mut gzip, mut identity, mut any) = (None, None, None);
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        for (coding, weight) in codings(value.as_bytes()) {
            let slot = if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
                &mut gzip
            } else if coding.eq_ignore_ascii_case(b"identity") {
                &mut identity
            } else if coding == b"*" {
                &mut any
            } else {
                continue;
            };
            // Named twice: the most generous weight counts.
            *slot = Some(slot.map_or(weight, |w: u16| w.max(weight)));
        }
    }
    let gzip = gzip.or(any).unwrap_or(0);
    gzip > 0 && identity.is_none_or(|identity| identity <= gzip)
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{EntityTag, Header as _, HeaderValue};
    use actix_web::test::TestRequest;

    use super::*;

    fn headers(name: header::HeaderName, values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(
                name.clone(),
                HeaderValue::from_bytes(v).expect("test values are header bytes"),
            );
        }
        map
    }

    fn inm(value: &str, etag: &str) -> bool {
        none_match(&headers(header::IF_NONE_MATCH, &[value.as_bytes()]), etag)
    }

    #[test]
    fn if_none_match_compares_weakly_in_lists() {
        assert!(inm("\"r1-ab\"", "\"r1-ab\""));
        assert!(inm("W/\"r1-ab\"", "\"r1-ab\""));
        assert!(inm("\"r1-ab\"", "W/\"r1-ab\""));
        assert!(inm("\"x\", \"r1-ab\"", "\"r1-ab\""));
        assert!(inm("\"x\",W/\"r1-ab\" , \"y\"", "\"r1-ab\""));
        assert!(inm("*", "\"anything\""));
        assert!(inm(" * ", "\"anything\""));
        assert!(!inm("\"r0-ab\"", "\"r1-ab\""));
        assert!(!inm("r1-ab", "\"r1-ab\""), "an unquoted tag is not a tag");
        assert!(!inm("", "\"r1-ab\""));
        assert!(!inm("\"R1-AB\"", "\"r1-ab\""), "tags are case-sensitive");
        assert!(
            !inm("w/\"r1-ab\"", "\"r1-ab\""),
            "the weak prefix is case-sensitive"
        );
    }

    #[test]
    fn a_comma_inside_a_tag_is_part_of_it() {
        assert!(inm("\"a,b\"", "\"a,b\""));
        assert!(!inm("\"a,b\"", "\"a\""));
        assert!(!inm("\"a,b\"", "\"b\""));
        assert!(inm("\"x\", \"a,b\"", "\"a,b\""));
    }

    #[test]
    fn every_field_counts_and_a_defect_ends_only_its_own_field() {
        let map = headers(header::IF_NONE_MATCH, &[b"\"x\"", b"\"y\", \"z\""]);
        assert!(none_match(&map, "\"z\""));
        assert!(!none_match(&map, "\"w\""));
        // Tags before the defect count; nothing after it.
        assert!(inm("\"a\", b, \"c\"", "\"a\""));
        assert!(!inm("\"a\", b, \"c\"", "\"c\""));
        assert!(!inm("\"a\"\"c\"", "\"c\""));
        assert!(!inm("\"unterminated", "\"unterminated\""));
    }

    #[test]
    fn hostile_bytes_match_nothing_and_never_panic() {
        let hostile: &[&[u8]] = &[
            b"\"<script>alert(1)</script>\"",
            b"\"\t\"",
            b"\"a\tb\"",
            "\"caf\u{e9}\"".as_bytes(),
            b"\"\xff\xfe\"",
            b"W/",
            b"W/\"",
            b"\"",
            b",,,,",
            b"*\"\"",
            b"\",\"",
            b"W/W/\"x\"",
            &[b'"'; 300],
        ];
        for value in hostile {
            let map = headers(header::IF_NONE_MATCH, &[value]);
            assert!(!none_match(&map, "\"r1-ab\""), "{value:?}");
        }
        // Bytes above 0x7f are obs-text, allowed inside a tag: compared as bytes.
        let map = headers(header::IF_NONE_MATCH, &["\"caf\u{e9}\"".as_bytes()]);
        assert!(none_match(&map, "\"caf\u{e9}\""));
        assert!(!none_match(&map, "\"cafe\""));
        // A tab inside a tag is not etagc: the tag is refused.
        assert!(!inm("\"a\tb\"", "\"a\tb\""));
    }

    #[test]
    fn agrees_with_actix_typed_header_on_well_formed_lists() {
        for value in [
            "\"a\"",
            "W/\"a\"",
            "\"a\", \"b\"",
            "W/\"b\",\"a\"",
            "\"x\", W/\"y\", \"z\"",
            "*",
        ] {
            let req = TestRequest::default()
                .insert_header((header::IF_NONE_MATCH, value))
                .to_http_request();
            let typed = header::IfNoneMatch::parse(&req).expect("well-formed");
            for etag in ["\"a\"", "\"b\"", "\"y\"", "\"q\""] {
                let reference = match &typed {
                    header::IfNoneMatch::Any => true,
                    header::IfNoneMatch::Items(tags) => {
                        let ours: EntityTag = etag.parse().expect("a quoted tag");
                        tags.iter().any(|t| t.weak_eq(&ours))
                    }
                };
                assert_eq!(inm(value, etag), reference, "{value} vs {etag}");
            }
        }
    }

    fn gzip(values: &[&str]) -> bool {
        let values: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        prefers_gzip(&headers(header::ACCEPT_ENCODING, &values))
    }

    #[test]
    fn gzip_is_chosen_only_with_a_positive_weight() {
        assert!(gzip(&["gzip"]));
        assert!(gzip(&["br, gzip;q=0.5, deflate"]));
        assert!(gzip(&["GZIP"]));
        assert!(gzip(&["x-gzip"]));
        assert!(gzip(&["gzip ; q=1"]));
        assert!(gzip(&["gzip;Q=0.001"]));
        assert!(gzip(&["*"]));
        assert!(gzip(&["br", "gzip"]), "every field counts");
        assert!(!gzip(&["gzip;q=0"]));
        assert!(!gzip(&["gzip;q=0.000"]));
        assert!(!gzip(&["gzip;q=0.0, *"]), "named at 0: * does not bring it back");
        assert!(!gzip(&["br, deflate"]));
        assert!(!gzip(&["identity"]));
        assert!(!gzip(&["*;q=0"]));
        assert!(!gzip(&[""]));
        assert!(!gzip(&[]), "no header: identity");
    }

    #[test]
    fn identity_named_with_a_higher_weight_wins() {
        assert!(!gzip(&["gzip;q=0.5, identity"]));
        assert!(!gzip(&["*;q=0.2, identity;q=0.9"]));
        assert!(gzip(&["gzip, identity;q=0.5"]));
        assert!(
            gzip(&["gzip;q=0.5, identity;q=0.5"]),
            "a tie goes to the smaller body"
        );
        assert!(gzip(&["gzip, identity;q=0"]));
        assert!(gzip(&["*, identity;q=0"]));
    }

    #[test]
    fn malformed_weights_leave_their_coding_out() {
        for bad in [
            "gzip;q=2",
            "gzip;q=1.5",
            "gzip;q=nan",
            "gzip;q=inf",
            "gzip;q=-1",
            "gzip;q=0.0001",
            "gzip;q=",
            "gzip;q",
            "gzip;q=0x1",
            "gzip;q=1.001",
        ] {
            assert!(!gzip(&[bad]), "{bad}");
        }
        // The other elements still count.
        assert!(gzip(&["gzip;q=2, *"]));
        assert!(gzip(&["gzip;level=9"]), "other parameters are ignored");
    }

    #[test]
    fn qvalues_parse_in_thousandths() {
        let q = |s: &str| qvalue(s.as_bytes());
        assert_eq!(q("0"), Some(0));
        assert_eq!(q("0."), Some(0));
        assert_eq!(q("0.5"), Some(500));
        assert_eq!(q("0.05"), Some(50));
        assert_eq!(q("0.123"), Some(123));
        assert_eq!(q("1"), Some(1000));
        assert_eq!(q("1.000"), Some(1000));
        assert_eq!(q("1.1"), None);
        assert_eq!(q("00.5"), None);
        assert_eq!(q(".5"), None);
        assert_eq!(q("0.1234"), None);
        assert_eq!(q("\u{e9}"), None);
    }

    #[test]
    fn hostile_accept_encoding_never_panics() {
        for value in [
            &b"gzip;q=\xff"[..],
            b";;;,,,",
            b"<script>gzip</script>",
            b"gzip;q=\"1\"",
            b"\tgzip\t",
            b"gzip;=;q=1",
            "gzip;q=0.\u{661}".as_bytes(),
        ] {
            let _ = prefers_gzip(&headers(header::ACCEPT_ENCODING, &[value]));
        }
        assert!(gzip(&["\tgzip\t"]), "tabs are whitespace");
        assert!(!gzip(&["<script>gzip</script>"]));
    }
}
