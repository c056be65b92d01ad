//! The client's address, believing forwarding headers only from trusted proxies.
//!
//! Resolved once, by [`ClientIpLayer`] in the global stack right under the request id, so the
//! access log, rate-limit keys, audit records and the `X-Forwarded-For` sent upstream all name
//! the same client (behind a load balancer: the real client, not the balancer). Exactly one header is believed:
//! the one the trusted proxies write ([`ClientIpHeader`]: `X-Forwarded-For` by default, RFC 7239
//! `Forwarded` or a single-address header such as `X-Real-IP` only when chosen). A header that is
//! not named is never read: nginx, HAProxy and the cloud load balancers neither write nor strip
//! `Forwarded`, so a client's own copy would arrive through them intact. The header is read only
//! when the TCP peer is in `trusted_proxies`. The chain is walked from right to left, skipping
//! trusted hops, and the first untrusted address is the client; or, with a fixed hop count
//! (Envoy's `xff_num_trusted_hops`), the client is that many entries from the right. Anything a
//! hop did not vouch for (an unparsable or obfuscated entry) stops the walk at the last address
//! that a trusted hop did vouch for, so a forged entry can never be chosen.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use http::header::FORWARDED;
use ipnet::IpNet;

/// The peer's TCP address, put into request extensions by the accept loop and replaced by
/// [`ClientIp`] (which keeps the peer) in [`ClientIpLayer`]: one value travels, not two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The resolved client address, put into request extensions at the edge of the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp {
    /// The client as far as trusted hops vouch.
    pub ip: IpAddr,
    /// Whether the address came from the forwarding header (the peer was a trusted proxy).
    pub forwarded: bool,
    /// The TCP peer (IPv4-mapped addresses unmapped).
    pub peer: IpAddr,
    /// Whether the peer is a trusted proxy (its other forwarding claims may be believed).
    pub trusted_peer: bool,
}

/// The one header the trusted proxies write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientIpHeader {
    /// `X-Forwarded-For`, every line read as one list (the default).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded` (`for=` nodes).
    Forwarded,
    /// A header holding exactly one address (`X-Real-IP`, `True-Client-IP`...), written by the
    /// proxy in front; the proxy must overwrite any client copy.
    Single(http::HeaderName),
}

/// Networks whose forwarding header is believed, and which header that is.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
    header: ClientIpHeader,
    hops: Option<usize>,
}

impl TrustedProxies {
    /// Trusts the given networks' `X-Forwarded-For`. An empty list trusts nobody (the default).
    pub fn new(networks: Vec<IpNet>) -> Self {
        TrustedProxies {
            networks,
            header: ClientIpHeader::default(),
            hops: None,
        }
    }

    /// Believes `header` instead of `X-Forwarded-For`.
    pub fn with_header(mut self, header: ClientIpHeader) -> Self {
        self.header = header;
        self
    }

    /// Takes the client as the entry `hops` places from the right of the list (1: the
    /// rightmost, written by the one proxy in front), instead of skipping trusted networks.
    pub fn with_trusted_hops(mut self, hops: usize) -> Self {
        self.hops = Some(hops.max(1));
        self
    }

    /// Whether `ip` is a trusted proxy. IPv4-mapped IPv6 peers match IPv4 networks.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.networks.iter().any(|net| net.contains(&ip))
    }

    /// Resolves the client address of a request from `peer` with `headers`, reading only the
    /// configured header.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> ClientIp {
        let peer = canonical_ip(peer);
        if !self.is_trusted(peer) {
            return ClientIp {
                ip: peer,
                forwarded: false,
                peer,
                trusted_peer: false,
            };
        }
        let hops = match &self.header {
            ClientIpHeader::XForwardedFor => x_forwarded_for_hops(headers),
            ClientIpHeader::Forwarded => forwarded_hops(headers),
            ClientIpHeader::Single(name) => single_hop(headers, name),
        };
        let mut client = peer;
        if let Some(n) = self.hops {
            // The proxies in front append one entry each; what lies further left is the
            // client's own text. Fewer entries than hops: all were written by proxies.
            let index = hops.len().saturating_sub(n);
            if let Some(Some(ip)) = hops.get(index) {
                client = canonical_ip(*ip);
            }
            return ClientIp {
                ip: client,
                forwarded: client != peer,
                peer,
                trusted_peer: true,
            };
        }
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
            peer,
            trusted_peer: true,
        }
    }
}

/// Resolves the client once per request from [`PeerAddr`] and inserts [`ClientIp`].
#[derive(Clone, Debug)]
pub struct ClientIpLayer {
    proxies: std::sync::Arc<TrustedProxies>,
}

impl ClientIpLayer {
    /// Resolves with `proxies`.
    pub fn new(proxies: TrustedProxies) -> Self {
        ClientIpLayer {
            proxies: std::sync::Arc::new(proxies),
        }
    }
}

impl<S> tower::Layer<S> for ClientIpLayer {
    type Service = ResolveClientIp<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ResolveClientIp {
            inner,
            proxies: self.proxies.clone(),
        }
    }
}

/// Service produced by [`ClientIpLayer`].
#[derive(Clone, Debug)]
pub struct ResolveClientIp<S> {
    inner: S,
    proxies: std::sync::Arc<TrustedProxies>,
}

impl<S, B> tower::Service<http::Request<B>> for ResolveClientIp<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        if let Some(PeerAddr(peer)) = req.extensions_mut().remove::<PeerAddr>() {
            let client = self.proxies.resolve(peer.ip(), req.headers());
            req.extensions_mut().insert(client);
        }
        self.inner.call(req)
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

/// The one address of a single-address header; several lines or fields vouch for nothing.
fn single_hop(headers: &HeaderMap, name: &http::HeaderName) -> Vec<Option<IpAddr>> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => vec![value.to_str().ok().and_then(|v| parse_node(v.trim()))],
        (None, _) => Vec::new(),
        (Some(_), Some(_)) => vec![None],
    }
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

    fn forwarded_proxies() -> TrustedProxies {
        proxies().with_header(ClientIpHeader::Forwarded)
    }

    #[test]
    fn only_the_named_header_is_believed() {
        // Behind a proxy that writes only X-Forwarded-For, a client's Forwarded is ignored.
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("forwarded", "for=6.6.6.6"),
        ]);
        assert_eq!(proxies().resolve(ip("10.0.0.2"), &h).ip, ip("198.51.100.7"));
        let h = headers(&[("forwarded", "for=6.6.6.6")]);
        assert_eq!(proxies().resolve(ip("10.0.0.2"), &h).ip, ip("10.0.0.2"));
        // And the other way round.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            (
                "forwarded",
                "for=192.0.2.43;proto=https, for=\"[2001:db8:cafe::17]:4711\";by=10.0.0.1",
            ),
        ]);
        assert_eq!(
            forwarded_proxies().resolve(ip("10.0.0.2"), &h).ip,
            ip("2001:db8:cafe::17")
        );
    }

    #[test]
    fn single_address_headers_take_one_value_only() {
        let real_ip = proxies().with_header(ClientIpHeader::Single(http::HeaderName::from_static(
            "x-real-ip",
        )));
        let h = headers(&[
            ("x-real-ip", "198.51.100.7"),
            ("x-forwarded-for", "6.6.6.6"),
        ]);
        assert_eq!(real_ip.resolve(ip("10.0.0.2"), &h).ip, ip("198.51.100.7"));
        let h = headers(&[("x-real-ip", "198.51.100.7"), ("x-real-ip", "6.6.6.6")]);
        assert_eq!(real_ip.resolve(ip("10.0.0.2"), &h).ip, ip("10.0.0.2"));
        let h = headers(&[("x-real-ip", "198.51.100.7, 6.6.6.6")]);
        assert_eq!(real_ip.resolve(ip("10.0.0.2"), &h).ip, ip("10.0.0.2"));
    }

    #[test]
    fn a_fixed_hop_count_takes_that_entry_from_the_right() {
        let one = proxies().with_trusted_hops(1);
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9")]);
        assert_eq!(one.resolve(ip("10.0.0.2"), &h).ip, ip("203.0.113.9"));
        let two = proxies().with_trusted_hops(2);
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 192.0.2.1")]);
        assert_eq!(two.resolve(ip("10.0.0.2"), &h).ip, ip("203.0.113.9"));
        // A garbage entry where the client should be vouches for nothing: the peer.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, junk, 192.0.2.1")]);
        assert_eq!(two.resolve(ip("10.0.0.2"), &h).ip, ip("10.0.0.2"));
        // Untrusted peers are never read.
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(one.resolve(ip("192.0.2.50"), &h).ip, ip("192.0.2.50"));
    }

    #[test]
    fn forwarded_unknown_and_obfuscated_nodes_stop_the_walk() {
        let h = headers(&[("forwarded", "for=1.2.3.4, for=unknown, for=10.5.5.5")]);
        assert_eq!(
            forwarded_proxies().resolve(ip("10.0.0.2"), &h).ip,
            ip("10.5.5.5")
        );
        let h = headers(&[("forwarded", "for=_hidden")]);
        assert_eq!(
            forwarded_proxies().resolve(ip("10.0.0.2"), &h).ip,
            ip("10.0.0.2")
        );
    }

    #[test]
    fn forwarded_quoted_commas_do_not_split() {
        let h = headers(&[("forwarded", "for=\"1.2.3.4\";host=\"a,b\"")]);
        assert_eq!(
            forwarded_proxies().resolve(ip("10.0.0.2"), &h).ip,
            ip("1.2.3.4")
        );
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

    #[tokio::test]
    async fn the_layer_replaces_the_peer_with_one_resolved_value() {
        use tower::ServiceExt;
        let svc = tower::ServiceBuilder::new()
            .layer(ClientIpLayer::new(proxies()))
            .service_fn(|req: http::Request<()>| async move {
                assert!(
                    req.extensions().get::<PeerAddr>().is_none(),
                    "two values travel"
                );
                Ok::<_, std::convert::Infallible>(
                    req.extensions()
                        .get::<ClientIp>()
                        .copied()
                        .expect("resolved"),
                )
            });
        let mut req = http::Request::builder()
            .header("x-forwarded-for", "198.51.100.7")
            .body(())
            .expect("request");
        req.extensions_mut()
            .insert(PeerAddr("10.0.0.2:4000".parse().expect("addr")));
        let client = svc.oneshot(req).await.expect("infallible");
        assert_eq!(client.ip, ip("198.51.100.7"));
        assert_eq!(client.peer, ip("10.0.0.2"));
        assert!(client.forwarded && client.trusted_peer);
    }
}
