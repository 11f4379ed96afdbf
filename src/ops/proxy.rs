//! The client's address behind reverse proxies.
//!
//! `X-Forwarded-For` is a list anyone can start: a client may send `X-Forwarded-For: 1.2.3.4`
//! and a proxy appends the address it saw. So the header is read only when the peer is a
//! proxy the operator named (`--trusted-proxies` / `FLAGSTAFF_TRUSTED_PROXIES`), and from the
//! right: each trusted proxy is skipped, and the first address that is not one is the client.
//!
//! The same holds for the scheme and host the client used (`X-Forwarded-Proto`,
//! `X-Forwarded-Host`, `Forwarded`), which decide the session cookie's `Secure` and the admin
//! pages' `Origin` check: from any other peer they are the connection's own ([`scheme`],
//! [`host`]).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use actix_web::HttpRequest;
use actix_web::dev::ServiceRequest;
use actix_web::http::header::HeaderMap;
use actix_web::web;

use crate::state::Serving;

/// An address or a CIDR range (`10.0.0.0/8`, `::1`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Whether `addr` is in the range (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.network, canonical(addr)) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(s: &str) -> Result<IpRange, String> {
        let s = s.trim();
        let bad = || format!("expected an IP address or a CIDR range such as 10.0.0.0/8, got {s:?}");
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let network = canonical(addr.parse::<IpAddr>().map_err(|_| bad())?);
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(IpRange { network, prefix })
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The client's address: the peer's, or — when the peer is a trusted proxy — the rightmost
/// address of `X-Forwarded-For` that is not a trusted proxy.
pub fn resolve(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpRange]) -> Option<IpAddr> {
    let peer = peer.map(canonical)?;
    let is_trusted = |a: IpAddr| trusted.iter().any(|r| r.contains(a));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let mut client = peer;
    for value in forwarded.iter().rev() {
        match parse_forwarded_address(value) {
            // An unreadable hop ends what can be believed: the last believed address stands.
            None => break,
            Some(addr) => {
                client = addr;
                if !is_trusted(addr) {
                    break;
                }
            }
        }
    }
    Some(client)
}

/// One `X-Forwarded-For` entry: an address, maybe with a port (`1.2.3.4:5678`, `[::1]:80`).
fn parse_forwarded_address(value: &str) -> Option<IpAddr> {
    if let Ok(addr) = value.parse::<IpAddr>() {
        return Some(canonical(addr));
    }
    value
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|s| canonical(s.ip()))
}

/// The client's address of a request, by the application's trusted proxies.
pub fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    resolve(req.peer_addr().map(|a| a.ip()), req.headers(), trusted(req))
}

fn trusted(req: &HttpRequest) -> &[IpRange] {
    req.app_data::<web::Data<Serving>>()
        .map_or(&[], |s| s.settings.serve.trusted_proxies.as_slice())
}

/// Whether the request's peer is a trusted proxy, whose forwarding headers are believed.
pub fn from_trusted_proxy(req: &HttpRequest) -> bool {
    let trusted = trusted(req);
    req.peer_addr()
        .is_some_and(|peer| trusted.iter().any(|r| r.contains(canonical(peer.ip()))))
}

/// The scheme the client used (`http` or `https`): a trusted proxy's `X-Forwarded-Proto` or
/// `Forwarded: proto=`, else the connection's own.
pub fn scheme(req: &HttpRequest) -> String {
    if from_trusted_proxy(req) {
        return req.connection_info().scheme().to_owned();
    }
    match req.uri().scheme_str() {
        Some(scheme) => scheme.to_owned(),
        None if req.app_config().secure() => "https".to_owned(),
        None => "http".to_owned(),
    }
}

/// The host (and port) the client asked for: a trusted proxy's `X-Forwarded-Host` or
/// `Forwarded: host=`, else the request's `Host`.
pub fn host(req: &HttpRequest) -> String {
    if from_trusted_proxy(req) {
        return req.connection_info().host().to_owned();
    }
    req.headers()
        .get(actix_web::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(actix_web::http::uri::Authority::as_str))
        .unwrap_or_else(|| req.app_config().host())
        .to_owned()
}

/// [`client_ip`] for middleware.
pub fn client_ip_of(req: &ServiceRequest) -> Option<IpAddr> {
    client_ip(req.request())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in xff {
            map.append(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn ranges(s: &[&str]) -> Vec<IpRange> {
        s.iter().map(|r| r.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_parse_and_match() {
        let r: IpRange = "10.0.0.0/8".parse().unwrap();
        assert!(r.contains(ip("10.200.1.2")));
        assert!(!r.contains(ip("11.0.0.1")));
        assert!(
            r.contains(ip("::ffff:10.1.1.1")),
            "IPv4-mapped addresses count as IPv4"
        );
        let one: IpRange = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6: IpRange = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        let all: IpRange = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        for bad in ["", "10.0.0.0/33", "nonsense", "10.0.0/8", "::1/129"] {
            let err = bad.parse::<IpRange>().unwrap_err();
            assert!(err.contains("CIDR"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_header_is_ignored_unless_the_peer_is_a_trusted_proxy() {
        let h = headers(&["198.51.100.7"]);
        assert_eq!(resolve(Some(ip("127.0.0.2")), &h, &[]), Some(ip("127.0.0.2")));
        assert_eq!(
            resolve(Some(ip("127.0.0.2")), &h, &ranges(&["127.0.0.1"])),
            Some(ip("127.0.0.2"))
        );
        assert_eq!(
            resolve(Some(ip("127.0.0.1")), &h, &ranges(&["127.0.0.1"])),
            Some(ip("198.51.100.7"))
        );
    }

    #[test]
    fn a_spoofed_first_entry_is_not_believed() {
        // The client sent "X-Forwarded-For: 198.51.100.7"; nginx appended what it saw.
        let h = headers(&["198.51.100.7, 203.0.113.20"]);
        let trusted = ranges(&["127.0.0.1"]);
        assert_eq!(
            resolve(Some(ip("127.0.0.1")), &h, &trusted),
            Some(ip("203.0.113.20"))
        );
        // Two proxies in a row, both trusted, and header lines split.
        let h = headers(&["198.51.100.7, 203.0.113.20", "10.1.2.3"]);
        let trusted = ranges(&["127.0.0.1", "10.0.0.0/8"]);
        assert_eq!(
            resolve(Some(ip("127.0.0.1")), &h, &trusted),
            Some(ip("203.0.113.20"))
        );
    }

    #[test]
    fn garbage_and_ports_in_the_header() {
        let trusted = ranges(&["127.0.0.1"]);
        assert_eq!(
            resolve(Some(ip("127.0.0.1")), &headers(&["203.0.113.5:4711"]), &trusted),
            Some(ip("203.0.113.5"))
        );
        assert_eq!(
            resolve(Some(ip("127.0.0.1")), &headers(&["[2001:db8::1]:80"]), &trusted),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(
            resolve(
                Some(ip("127.0.0.1")),
                &headers(&["203.0.113.5, unknown"]),
                &trusted
            ),
            Some(ip("127.0.0.1"))
        );
        assert_eq!(
            resolve(Some(ip("127.0.0.1")), &headers(&[]), &trusted),
            Some(ip("127.0.0.1"))
        );
        assert_eq!(resolve(None, &headers(&[]), &trusted), None);
    }
}
