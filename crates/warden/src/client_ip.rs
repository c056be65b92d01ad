//! The client's address, believing forwarding headers only from trusted proxies.
//!
//! Resolved in the global stack right after canonicalization, before routing; rate-limit keys,
//! audit records and the `X-Forwarded-For` sent upstream use it. `X-Forwarded-For` and RFC 7239
//! `Forwarded` are read only when the TCP peer is in `trusted_proxies`; the chain is walked from
//! right to left, skipping trusted hops, and the first untrusted address is the client. Anything
//! a hop did not vouch for (an unparsable or obfuscated entry) stops the walk at the last address
//! that a trusted hop did vouch for, so a forged entry can never be chosen.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use http::header::FORWARDED;
use ipnet::IpNet;

/// The peer's TCP address, put into request extensions by the accept loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The resolved client address, put into request extensions before routing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp {
    /// The client as far as trusted hops vouch.
    pub ip: IpAddr,
    /// Whether the address came from forwarding headers (the peer was a trusted proxy).
    pub forwarded: bool,
}

/// Networks whose forwarding headers are believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
}

impl TrustedProxies {
    /// Trusts the given networks. An empty list trusts nobody (the default).
    pub fn new(networks: Vec<IpNet>) -> Self {
        TrustedProxies { networks }
    }

    /// Whether `ip` is a trusted proxy. IPv4-mapped IPv6 peers match IPv4 networks.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.networks.iter().any(|net| net.contains(&ip))
    }

    /// Resolves the client address of a request from `peer` with `headers`.
    ///
    /// `Forwarded` is preferred when present; otherwise every `X-Forwarded-For` line is read as
    /// one list, in order.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> ClientIp {
        let peer = canonical_ip(peer);
        if !self.is_trusted(peer) {
            return ClientIp {
                ip: peer,
                forwarded: false,
            };
        }
        let hops = if headers.contains_key(FORWARDED) {
            forwarded_hops(headers)
        } else {
            x_forwarded_for_hops(headers)
        };
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) => {
                    client = canonical_ip(*ip);
                    if !self.is_trusted(client) {
                        break;
                    }
                }
                // The trusted hop in `client` passed on something unverifiable: stop at it.
                None => break,
            }
        }
        ClientIp {
            ip: client,
            forwarded: client != peer,
        }
    }
}

fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Every `X-Forwarded-For` entry, left to right; `None` for entries that are not addresses.
pub fn x_forwarded_for_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|value| value.to_str().unwrap_or("\u{0}").split(','))
        .map(|entry| parse_node(entry.trim()))
        .collect()
}

/// Every RFC 7239 `for=` node, left to right; `None` for `unknown`, obfuscated or bad nodes.
pub fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for value in headers.get_all(FORWARDED) {
        let Ok(text) = value.to_str() else {
            hops.push(None);
            continue;
        };
        for element in split_unquoted(text, b',') {
            let mut node = None;
            let mut seen_for = false;
            for pair in split_unquoted(element, b';') {
                let Some((name, value)) = pair.split_once('=') else {
                    continue;
                };
                if name.trim().eq_ignore_ascii_case("for") {
                    // A repeated `for` in one element is malformed: trust neither.
                    node = if seen_for {
                        None
                    } else {
                        parse_node(unquote(value.trim()))
                    };
                    seen_for = true;
                }
            }
            hops.push(node);
        }
    }
    hops
}

/// Splits on `sep` outside double quotes.
fn split_unquoted(text: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut in_quotes = false;
    let mut start = 0;
    let bytes = text.as_bytes();
    let mut pieces = Vec::new();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'"' {
            in_quotes = !in_quotes;
        } else if b == sep && !in_quotes {
            pieces.push(&text[start..i]);
            start = i + 1;
        }
    }
    pieces.push(&text[start..]);
    pieces.into_iter()
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// Parses `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:80`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    node.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<IpAddr>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies() -> TrustedProxies {
        TrustedProxies::new(vec![
            "10.0.0.0/8".parse().expect("net"),
            "2001:db8:ffff::/48".parse().expect("net"),
        ])
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().expect("value"));
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let h = headers(&[("x-forwarded-for", "1.1.1.1")]);
        let got = proxies().resolve(ip("203.0.113.9"), &h);
        assert_eq!(got.ip, ip("203.0.113.9"));
        assert!(!got.forwarded);
    }

    #[test]
    fn walks_right_to_left_skipping_trusted_hops() {
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.1.1")]);
        let got = proxies().resolve(ip("10.0.0.2"), &h);
        assert_eq!(got.ip, ip("198.51.100.7"));
        assert!(got.forwarded);
    }

    #[test]
    fn multiple_header_lines_form_one_list() {
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(proxies().resolve(ip("10.0.0.2"), &h).ip, ip("198.51.100.7"));
    }

    #[test]
    fn garbage_stops_at_the_last_vouching_hop() {
        let h = headers(&[("x-forwarded-for", "1.2.3.4, not-an-ip, 10.9.9.9")]);
        assert_eq!(proxies().resolve(ip("10.0.0.2"), &h).ip, ip("10.9.9.9"));
    }

    #[test]
    fn all_trusted_yields_leftmost() {
        let h = headers(&[("x-forwarded-for", "10.3.3.3, 10.2.2.2")]);
        assert_eq!(proxies().resolve(ip("10.0.0.2"), &h).ip, ip("10.3.3.3"));
    }

    #[test]
    fn forwarded_header_is_preferred_and_parsed() {
        let h = headers(&[
            ("x-forwarded-for", "9.9.9.9"),
            (
                "forwarded",
                "for=192.0.2.43;proto=https, for=\"[2001:db8:cafe::17]:4711\";by=10.0.0.1",
            ),
        ]);
        assert_eq!(
            proxies().resolve(ip("10.0.0.2"), &h).ip,
            ip("2001:db8:cafe::17")
        );
    }

    #[test]
    fn forwarded_unknown_and_obfuscated_nodes_stop_the_walk() {
        let h = headers(&[("forwarded", "for=1.2.3.4, for=unknown, for=10.5.5.5")]);
        assert_eq!(proxies().resolve(ip("10.0.0.2"), &h).ip, ip("10.5.5.5"));
        let h = headers(&[("forwarded", "for=_hidden")]);
        assert_eq!(proxies().resolve(ip("10.0.0.2"), &h).ip, ip("10.0.0.2"));
    }

    #[test]
    fn forwarded_quoted_commas_do_not_split() {
        let h = headers(&[("forwarded", "for=\"1.2.3.4\";host=\"a,b\"")]);
        assert_eq!(proxies().resolve(ip("10.0.0.2"), &h).ip, ip("1.2.3.4"));
    }

    #[test]
    fn ipv4_mapped_peer_matches_ipv4_network() {
        let h = headers(&[("x-forwarded-for", "198.51.100.1")]);
        let got = proxies().resolve(ip("::ffff:10.0.0.2"), &h);
        assert_eq!(got.ip, ip("198.51.100.1"));
    }

    #[test]
    fn nobody_is_trusted_by_default() {
        let h = headers(&[("x-forwarded-for", "1.1.1.1")]);
        let got = TrustedProxies::default().resolve(ip("10.0.0.2"), &h);
        assert_eq!(got.ip, ip("10.0.0.2"));
    }
}
