//! Who is asking: the client's address and whether it came over HTTPS, as one request extension
//! ([`ClientAddr`]) used by the log-in throttle, the access log, the `/metrics` allow-list and
//! CSRF.
//!
//! Without `--trusted-proxies` the client is the TCP peer and `X-Forwarded-*` / `Forwarded`
//! headers are ignored: anyone can write them. When the peer is a trusted proxy, the address
//! is read from `X-Forwarded-For` (or, when absent, from `Forwarded: for=`), walking from the
//! right and skipping trusted addresses, and the scheme from `X-Forwarded-Proto` (its first
//! value, as Django reads it). A malformed hop stops the walk at the nearest trusted hop: what
//! lies to its left may have been written by anyone.
//!
//! Depends on nothing but the request's headers and the peer address; no state, no I/O.

use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// The addresses (or networks) of reverse proxies whose forwarding headers are believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies(nets.into_iter().map(|n| n.trunc()).collect())
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Parses one `--trusted-proxies` entry: an address (`10.0.0.1`, `::1`) or a network
/// (`10.0.0.0/8`, `fd00::/8`).
pub fn parse_trusted_proxy(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(ip.to_canonical()));
    }
    s.parse::<IpNet>().map_err(|_| format!("`{s}` is not an IP address or a network like 10.0.0.0/8"))
}

/// The client of a request: its address (after trusted-proxy resolution) and whether it came
/// over HTTPS according to a trusted proxy. Handlers take it as an extractor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr {
    /// The client's address: the TCP peer's, or the one a trusted proxy forwarded.
    pub ip: IpAddr,
    /// A trusted proxy said the client used HTTPS (`X-Forwarded-Proto: https`).
    pub https: bool,
    /// The TCP peer (a trusted proxy when `ip` differs from `peer.ip()`).
    pub peer: SocketAddr,
}

impl ClientAddr {
    /// The client as seen on the wire, with no proxy in between.
    pub fn direct(peer: SocketAddr) -> ClientAddr {
        ClientAddr { ip: peer.ip().to_canonical(), https: false, peer }
    }

    /// Resolves the client of a request that arrived from `peer` with `headers`.
    pub fn resolve(peer: SocketAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> ClientAddr {
        let direct = ClientAddr::direct(peer);
        if !trusted.contains(direct.ip) {
            return direct;
        }
        let hops =
            if headers.contains_key(&X_FORWARDED_FOR) { forwarded_for_hops(headers) } else { forwarded_hops(headers) };
        let mut client = direct.ip;
        for hop in hops.iter().rev() {
            match hop {
                // Written by a trusted proxy but unreadable: keep the nearest trusted hop.
                None => break,
                Some(ip) => {
                    client = *ip;
                    if !trusted.contains(*ip) {
                        break;
                    }
                }
            }
        }
        ClientAddr { ip: client, https: forwarded_https(headers), peer }
    }
}

/// The access log's form: `ip:port` for a direct client (the tutorial's console shape), the
/// bare address for one behind a proxy.
impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ip == self.peer.ip().to_canonical() {
            write!(f, "{}", self.peer)
        } else {
            write!(f, "{}", self.ip)
        }
    }
}

/// The hops of every `X-Forwarded-For` header, in order; `None` for one that does not parse.
fn forwarded_for_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .flat_map(|v| match v.to_str() {
            Ok(s) => s.split(',').map(|hop| parse_node(hop.trim())).collect::<Vec<_>>(),
            Err(_) => vec![None],
        })
        .collect()
}

/// The `for=` of every element of every `Forwarded` header (RFC 7239), in order; `None` for an
/// element without a readable address (`unknown`, an obfuscated name, garbage).
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all(&FORWARDED)
        .iter()
        .flat_map(|v| match v.to_str() {
            Ok(s) => s
                .split(',')
                .map(|element| {
                    element
                        .split(';')
                        .filter_map(|pair| pair.split_once('='))
                        .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                        .and_then(|(_, v)| parse_node(v.trim().trim_matches('"')))
                })
                .collect::<Vec<_>>(),
            Err(_) => vec![None],
        })
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:4711`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(|p| p.parse::<u16>().is_ok())) {
            return None;
        }
        return inside.parse::<std::net::Ipv6Addr>().ok().map(|ip| IpAddr::V6(ip).to_canonical());
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    s.parse::<SocketAddr>().ok().map(|a| a.ip().to_canonical())
}

/// `X-Forwarded-Proto`'s first value is `https`.
fn forwarded_https(headers: &HeaderMap) -> bool {
    headers
        .get(&X_FORWARDED_PROTO)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

/// Middleware: resolves the request's [`ClientAddr`] once and stores it as an extension.
pub async fn resolve_client(trusted: std::sync::Arc<TrustedProxies>, mut req: Request, next: Next) -> Response {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        let client = ClientAddr::resolve(peer, req.headers(), &trusted);
        req.extensions_mut().insert(client);
    }
    next.run(req).await
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(client_of(&parts.extensions))
    }
}

/// The request's client: the resolved extension, else the bare TCP peer (a request that did not
/// pass the middleware), else the unspecified address.
pub fn client_of(extensions: &axum::http::Extensions) -> ClientAddr {
    if let Some(c) = extensions.get::<ClientAddr>() {
        return *c;
    }
    let peer = extensions.get::<ConnectInfo<SocketAddr>>().map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
    ClientAddr::direct(peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|s| parse_trusted_proxy(s).expect("valid")).collect())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    fn peer(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn headers_are_ignored_from_an_untrusted_peer() {
        let h =
            headers(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-proto", "https"), ("forwarded", "for=5.6.7.8")]);
        let c = ClientAddr::resolve(peer("192.0.2.9:5000"), &h, &trusted(&["10.0.0.0/8"]));
        assert_eq!(c, ClientAddr { ip: ip("192.0.2.9"), https: false, peer: peer("192.0.2.9:5000") });
        assert_eq!(c.to_string(), "192.0.2.9:5000");
        let c = ClientAddr::resolve(peer("192.0.2.9:5000"), &h, &TrustedProxies::default());
        assert_eq!(c.ip, ip("192.0.2.9"));
    }

    #[test]
    fn x_forwarded_for_is_walked_from_the_right_skipping_trusted_hops() {
        let t = trusted(&["10.0.0.0/8", "192.0.2.1"]);
        let p = peer("10.0.0.5:40000");
        // The client forged "6.6.6.6"; the edge proxy appended the real address.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.1.1.1"), ("x-forwarded-proto", "https, http")]);
        let c = ClientAddr::resolve(p, &h, &t);
        assert_eq!(c.ip, ip("203.0.113.7"));
        assert!(c.https, "the first X-Forwarded-Proto value counts");
        assert_eq!(c.to_string(), "203.0.113.7");
        // Several headers are one list, in order.
        let h = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "203.0.113.8")]);
        assert_eq!(ClientAddr::resolve(p, &h, &t).ip, ip("203.0.113.8"));
        // Every hop trusted: the leftmost one.
        let h = headers(&[("x-forwarded-for", "192.0.2.1, 10.2.2.2")]);
        assert_eq!(ClientAddr::resolve(p, &h, &t).ip, ip("192.0.2.1"));
        // No header: the proxy itself.
        assert_eq!(ClientAddr::resolve(p, &HeaderMap::new(), &t).ip, ip("10.0.0.5"));
    }

    #[test]
    fn a_malformed_hop_stops_the_walk_at_the_nearest_trusted_hop() {
        let t = trusted(&["10.0.0.0/8"]);
        let p = peer("10.0.0.5:40000");
        let h = headers(&[("x-forwarded-for", "203.0.113.7, garbage, 10.1.1.1")]);
        assert_eq!(ClientAddr::resolve(p, &h, &t).ip, ip("10.1.1.1"));
        let h = headers(&[("x-forwarded-for", "203.0.113.7, not an ip")]);
        assert_eq!(ClientAddr::resolve(p, &h, &t).ip, ip("10.0.0.5"));
        let h = headers(&[("x-forwarded-for", "")]);
        assert_eq!(ClientAddr::resolve(p, &h, &t).ip, ip("10.0.0.5"));
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_bytes(b"1.2.3.4\xff").expect("obs-text"));
        assert_eq!(ClientAddr::resolve(p, &h, &t).ip, ip("10.0.0.5"));
    }

    #[test]
    fn forwarded_is_read_when_there_is_no_x_forwarded_for() {
        let t = trusted(&["10.0.0.0/8"]);
        let p = peer("10.0.0.5:40000");
        let h = headers(&[("forwarded", r#"for=6.6.6.6, For="[2001:db8:cafe::17]:4711";proto=https, for=10.3.3.3"#)]);
        assert_eq!(ClientAddr::resolve(p, &h, &t).ip, ip("2001:db8:cafe::17"));
        let h = headers(&[("forwarded", "for=203.0.113.7:8080;by=10.0.0.5")]);
        assert_eq!(ClientAddr::resolve(p, &h, &t).ip, ip("203.0.113.7"));
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(ClientAddr::resolve(p, &h, &t).ip, ip("10.0.0.5"));
        // With both, X-Forwarded-For wins (the header proxies commonly set).
        let h = headers(&[("forwarded", "for=6.6.6.6"), ("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(ClientAddr::resolve(p, &h, &t).ip, ip("203.0.113.9"));
    }

    #[test]
    fn mapped_ipv4_addresses_match_ipv4_networks() {
        let t = trusted(&["127.0.0.1"]);
        let p = peer("[::ffff:127.0.0.1]:40000");
        let h = headers(&[("x-forwarded-for", "::ffff:203.0.113.7")]);
        assert_eq!(ClientAddr::resolve(p, &h, &t).ip, ip("203.0.113.7"));
    }

    #[test]
    fn proxy_entries_parse() {
        assert!(parse_trusted_proxy("10.0.0.1").is_ok());
        assert!(parse_trusted_proxy(" 10.0.0.0/8 ").is_ok());
        assert!(parse_trusted_proxy("fd00::/8").is_ok());
        assert!(parse_trusted_proxy("::1").is_ok());
        assert!(parse_trusted_proxy("10.0.0.0/33").is_err());
        assert!(parse_trusted_proxy("proxy.local").is_err());
        assert!(parse_trusted_proxy("").is_err());
    }

    #[test]
    fn nodes_parse() {
        assert_eq!(parse_node("[::1]:80"), Some(ip("::1")));
        assert_eq!(parse_node("[::1]x"), None);
        assert_eq!(parse_node("[::1"), None);
        assert_eq!(parse_node("1.2.3.4:99999"), None);
        assert_eq!(parse_node("_hidden"), None);
    }
}
