//! Where a remote model may be called, and who may receive the API key: the one form base URLs
//! are compared in, the operator's allow-lists, and the addresses a worker refuses to reach
//! unless allowed (loopback, private, link-local where cloud metadata services answer, shared,
//! reserved — and IPv6 forms carrying such an IPv4 address).

use super::RemoteSpec;

/// A base URL in the one form it is compared and called in: `http(s)://host[:port]/path`
/// without a trailing slash, the host in lower case. Refused: other schemes, a user or password
/// part (a key put there would be stored, shown and logged), a query string or fragment, and
/// anything but `http://` or `https://` written out (`http:host` is a URL too, to a parser).
pub fn allowed_base_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(format!(
            "remote model: {url:?} must start with http:// or https://"
        ));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| format!("remote model: {url:?} is not a URL ({e})"))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "remote model: put no credentials in the URL; the API key is read from the \
             environment (--api-key-env)"
                .to_owned(),
        );
    }
    if parsed.query().is_some() || parsed.fragment().is_some() || url.contains(['?', '#']) {
        return Err(format!(
            "remote model: {url:?} must have no query string (?…) or fragment (#…)"
        ));
    }
    let Some(host) = parsed.host_str() else {
        return Err(format!("remote model: {url:?} names no host"));
    };
    let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
    Ok(format!(
        "{}://{host}{port}{}",
        parsed.scheme(),
        parsed.path().trim_end_matches('/')
    ))
}

/// Whether `base_url` (as [`allowed_base_url`] writes it) is one of `allow` or below one.
pub fn is_allowed(allow: &[String], base_url: &str) -> bool {
    allow.iter().any(|a| {
        let a = a.trim_end_matches('/');
        base_url == a
            || base_url
                .strip_prefix(a)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// Where a remote client may connect, and where the API key may go.
#[derive(Debug, Clone, Default)]
pub struct RemotePolicy {
    /// Base URLs (as [`allowed_base_url`] writes them) the operator allows: the API key is
    /// sent to these alone, and they may be at any address.
    pub allow: Vec<String>,
    /// Allow hosts at loopback, private, link-local and other non-public addresses for every
    /// base URL (a worker refuses them otherwise: a job must not reach the worker's own
    /// network, a cloud's metadata service, or the database).
    pub allow_private: bool,
}

impl RemotePolicy {
    /// What someone who typed the URL themselves gets (`kokushi eval`): that server, wherever
    /// it is, with the key.
    pub fn trusting(spec: &RemoteSpec) -> Self {
        Self {
            allow: vec![spec.base_url.clone()],
            allow_private: true,
        }
    }
}

/// Whether an address is outside the public internet: loopback, private (RFC 1918, unique
/// local), link-local (cloud metadata services live there), shared (CGNAT), unspecified,
/// multicast, broadcast, reserved or documentation ranges — and an IPv6 address that carries
/// one of those IPv4 addresses inside it (mapped, compatible, NAT64, 6to4).
pub fn is_non_public(ip: std::net::IpAddr) -> bool {
    use std::net::{IpAddr, Ipv4Addr};
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 198 && (b == 18 || b == 19))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_non_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let low32 = Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7]));
            // IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96, 64:ff9b:1::/48): the last 32
            // bits; 6to4 (2002::/16): bits 16 to 48.
            let embedded = if (s[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified())
                || (s[0] == 0x0064 && s[1] == 0xff9b)
            {
                Some(low32)
            } else if s[0] == 0x2002 {
                Some(Ipv4Addr::from((u32::from(s[1]) << 16) | u32::from(s[2])))
            } else {
                None
            };
            if let Some(v4) = embedded {
                return is_non_public(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                // Site-local (deprecated, still routed inside some networks).
                || (s[0] & 0xffc0) == 0xfec0
                || (s[0] == 0x2001 && s[1] == 0x0db8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists_match_whole_base_urls_and_paths_below_them() {
        let allow = vec!["https://api.example.org/v1".to_owned()];
        assert!(is_allowed(&allow, "https://api.example.org/v1"));
        assert!(is_allowed(&allow, "https://api.example.org/v1/extra"));
        assert!(!is_allowed(&allow, "https://api.example.org/v10"));
        assert!(!is_allowed(&allow, "https://api.example.org.evil.test/v1"));
        assert!(!is_allowed(&allow, "http://api.example.org/v1"));
        assert!(!is_allowed(&[], "https://api.example.org/v1"));
    }

    #[test]
    fn addresses_outside_the_public_internet_are_told_apart() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::10.0.0.1",
            "2002:a9fe:a9fe::1",
            "2002:7f00:1::",
            "fec0::1",
        ] {
            assert!(is_non_public(ip.parse().expect("ip")), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!is_non_public(ip.parse().expect("ip")), "{ip}");
        }
    }
}
