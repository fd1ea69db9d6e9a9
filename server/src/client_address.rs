//! The client's real address behind proxies (RFC 7239 `Forwarded`, and `X-Forwarded-For`).
//!
//! Forwarding headers are believed only when the TCP peer is a trusted proxy: anyone else could
//! write any address there. The client is then the right-most address that is not itself a
//! trusted proxy: each proxy appends the address it received the request from, so entries to
//! the left of the first untrusted one were written by whoever sent the request and prove
//! nothing.

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
}

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies { networks }
    }

    pub fn trusts(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.networks.iter().any(|n| n.contains(&address))
    }

    /// The client's address, given the TCP peer and the request's forwarding headers (each a
    /// comma-joined value of every line of that header, in order).
    pub fn client_address(
        &self,
        peer: IpAddr,
        forwarded: Option<&str>,
        x_forwarded_for: Option<&str>,
    ) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        // `Forwarded` is the standard; when a proxy sends it, it is the one to read.
        let hops: Vec<Option<IpAddr>> = match (forwarded, x_forwarded_for) {
            (Some(value), _) => forwarded_for(value),
            (None, Some(value)) => value.split(',').map(|hop| parse_node(hop.trim())).collect(),
            (None, None) => return peer,
        };
        let mut nearest = peer;
        for hop in hops.into_iter().rev() {
            match hop {
                Some(address) if self.trusts(address) => nearest = address,
                Some(address) => return address,
                // `unknown` or an obfuscated name: nothing to the left of it can be placed.
                None => return nearest,
            }
        }
        nearest
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) are the IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The `for` parameter of every element of a `Forwarded` value (RFC 7239 §4, §5.2).
fn forwarded_for(value: &str) -> Vec<Option<IpAddr>> {
    value
        .split(',')
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (name, node) = pair.trim().split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| parse_node(node.trim().trim_matches('"')))
            })
        })
        .collect()
}

/// A node (RFC 7239 §6): `192.0.2.43`, `192.0.2.43:47011`, `[2001:db8::1]`,
/// `[2001:db8::1]:4711`, or a bare IPv6 address as `X-Forwarded-For` writes it.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(address) = node.parse::<IpAddr>() {
        return Some(canonical(address));
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (inside, _port) = rest.split_once(']')?;
        return inside.parse::<IpAddr>().ok().map(canonical);
    }
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_address(ip("203.0.113.9"), None, Some("198.51.100.1")),
            ip("203.0.113.9")
        );
        let some = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            some.client_address(ip("203.0.113.9"), Some("for=198.51.100.1"), None),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted = proxies(&["10.0.0.0/8", "192.168.1.1/32"]);
        // A client forging a first entry cannot choose its address.
        let xff = "1.2.3.4, 198.51.100.7, 10.1.1.1";
        assert_eq!(
            trusted.client_address(ip("192.168.1.1"), None, Some(xff)),
            ip("198.51.100.7")
        );
        let forwarded = r#"for=1.2.3.4, for="198.51.100.7:4711";proto=https, for=10.1.1.1"#;
        assert_eq!(
            trusted.client_address(ip("10.0.0.2"), Some(forwarded), Some("9.9.9.9")),
            ip("198.51.100.7"),
            "Forwarded wins over X-Forwarded-For"
        );
        assert_eq!(
            trusted.client_address(
                ip("10.0.0.2"),
                Some(r#"For="[2001:db8:cafe::17]:4711""#),
                None
            ),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(
            trusted.client_address(ip("::ffff:10.0.0.2"), None, Some("198.51.100.8")),
            ip("198.51.100.8"),
            "an IPv4-mapped peer is its IPv4 address"
        );
    }

    #[test]
    fn unknown_or_all_trusted_hops_stop_at_the_nearest_known_address() {
        let trusted = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            trusted.client_address(ip("10.0.0.2"), Some("for=unknown, for=10.0.0.9"), None),
            ip("10.0.0.9")
        );
        assert_eq!(
            trusted.client_address(ip("10.0.0.2"), None, Some("10.0.0.7, 10.0.0.8")),
            ip("10.0.0.7")
        );
        assert_eq!(
            trusted.client_address(ip("10.0.0.2"), None, Some("not-an-address")),
            ip("10.0.0.2")
        );
    }
}
