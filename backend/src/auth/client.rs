//! Who is at the other end of a connection: the client's address and whether it came over TLS.
//! Forwarding headers (`X-Forwarded-For`, `X-Forwarded-Proto`) are believed only from the
//! proxies an operator named (`--trusted-proxy`); from anyone else they are ignored, since any
//! client can send them (and would otherwise choose the address its sign-in failures count
//! against).

use std::net::IpAddr;

use actix_web::HttpRequest;

/// Addresses or networks (`10.0.0.0/8`, `::1`) whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Reads addresses and CIDR networks, e.g. `["127.0.0.1", "10.0.0.0/8"]`.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut nets = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                continue;
            }
            let (ip, bits) = match entry.split_once('/') {
                Some((ip, bits)) => (ip, Some(bits)),
                None => (entry, None),
            };
            let ip: IpAddr = ip.parse().map_err(|_| {
                format!("trusted proxy {entry:?} is not an IP address or network (a.b.c.d/n)")
            })?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                None => max,
                Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(|| {
                    format!("trusted proxy {entry:?}: the prefix length must be 0 to {max}")
                })?,
            };
            nets.push((ip, bits));
        }
        Ok(Self(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `addr` is one of the trusted proxies.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        self.0
            .iter()
            .any(|(net, bits)| in_network(addr, canonical(*net), *bits))
    }
}

/// An IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`) as the IPv4 address it is.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn in_network(addr: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the nearest address
/// in `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_addr(req: &HttpRequest, trusted: &TrustedProxies) -> Option<IpAddr> {
    let peer = req.peer_addr().map(|a| canonical(a.ip()))?;
    if !trusted.contains(peer) {
        return Some(peer);
    }
    // Read as bytes: a client may send any bytes, and a proxy passes them on before the hop it
    // appends itself; a hop that cannot be read (as text or as an address) makes everything
    // before it unbelievable, never the whole header (which would pin the client's failures on
    // the proxy's own address).
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in req.headers().get_all("x-forwarded-for") {
        for part in value.as_bytes().split(|b| *b == b',') {
            match std::str::from_utf8(part)
                .ok()
                .and_then(|text| text.trim().parse::<IpAddr>().ok())
            {
                Some(ip) => hops.push(canonical(ip)),
                None => hops.clear(),
            }
        }
    }
    Some(
        hops.iter()
            .rev()
            .find(|ip| !trusted.contains(**ip))
            .or(hops.first())
            .copied()
            .unwrap_or(peer),
    )
}

/// Whether the request reached a trusted proxy over TLS (`X-Forwarded-Proto: https` from a
/// trusted proxy). The server itself speaks plain HTTP.
pub fn is_tls(req: &HttpRequest, trusted: &TrustedProxies) -> bool {
    let from_proxy = req.peer_addr().is_some_and(|a| trusted.contains(a.ip()));
    from_proxy
        && req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn request(peer: &str, forwarded: Option<&str>) -> HttpRequest {
        let mut req = TestRequest::default().peer_addr(peer.parse().expect("peer"));
        if let Some(f) = forwarded {
            req = req.insert_header(("X-Forwarded-For", f));
        }
        req.to_http_request()
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let none = TrustedProxies::default();
        let proxy = TrustedProxies::parse(&["10.0.0.0/8", "::1"]).expect("valid");
        let cases = [
            // (peer, X-Forwarded-For, trusted, client)
            ("203.0.113.5:1", Some("198.51.100.1"), &none, "203.0.113.5"),
            ("10.1.2.3:1", Some("198.51.100.1"), &proxy, "198.51.100.1"),
            (
                "10.1.2.3:1",
                Some("1.1.1.1, 198.51.100.1, 10.9.9.9"),
                &proxy,
                "198.51.100.1",
            ),
            ("10.1.2.3:1", None, &proxy, "10.1.2.3"),
            ("10.1.2.3:1", Some("not-an-ip"), &proxy, "10.1.2.3"),
            ("10.1.2.3:1", Some("10.0.0.1"), &proxy, "10.0.0.1"),
            ("[::1]:1", Some("2001:db8::7"), &proxy, "2001:db8::7"),
            (
                "[::ffff:10.0.0.2]:1",
                Some("192.0.2.1"),
                &proxy,
                "192.0.2.1",
            ),
        ];
        for (peer, forwarded, trusted, want) in cases {
            let got = client_addr(&request(peer, forwarded), trusted);
            assert_eq!(got, want.parse().ok(), "{peer} {forwarded:?}");
        }
        // A client's unreadable bytes before the proxy's own hop: the hop the proxy added
        // counts, not the proxy.
        let req = TestRequest::default()
            .peer_addr("10.1.2.3:1".parse().expect("peer"))
            .insert_header((
                "X-Forwarded-For",
                actix_web::http::header::HeaderValue::from_bytes(b"\xff\xfe, 198.51.100.9")
                    .expect("a header value"),
            ))
            .to_http_request();
        assert_eq!(
            client_addr(&req, &proxy),
            "198.51.100.9".parse().ok(),
            "unreadable bytes"
        );
    }

    #[test]
    fn networks_parse_and_match() {
        let t = TrustedProxies::parse(&["192.168.0.0/16", "127.0.0.1"]).expect("valid");
        assert!(t.contains("192.168.44.1".parse().expect("ip")));
        assert!(!t.contains("192.169.0.1".parse().expect("ip")));
        assert!(t.contains("127.0.0.1".parse().expect("ip")));
        assert!(!t.contains("127.0.0.2".parse().expect("ip")));
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::parse(&["proxy.local"]).is_err());
        assert!(TrustedProxies::parse(&["0.0.0.0/0"]).is_ok());
    }

    #[test]
    fn tls_is_believed_only_from_a_trusted_proxy() {
        let proxy = TrustedProxies::parse(&["127.0.0.1"]).expect("valid");
        let req = TestRequest::default()
            .peer_addr("127.0.0.1:9".parse().expect("peer"))
            .insert_header(("X-Forwarded-Proto", "https"))
            .to_http_request();
        assert!(is_tls(&req, &proxy));
        assert!(!is_tls(&req, &TrustedProxies::default()));
    }
}
