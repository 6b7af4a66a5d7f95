//! The client's source address: the peer, or the `X-Forwarded-For` hop
//! written by a proxy we trust. Addresses are normalised so that an
//! IPv4-mapped IPv6 peer (`::ffff:192.0.2.1`) counts as the IPv4 address.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The address a request comes from, for throttling and logs.
///
/// An untrusted peer is the source, whatever it wrote in `X-Forwarded-For`.
/// A trusted peer's list (all header values, in order, comma-separated) is
/// walked from the right, skipping trusted proxies, and the first untrusted
/// address is the source. A malformed entry (not an IP address, an empty
/// item, `unknown`) ends the walk: everything left of it was written by a
/// party we cannot vouch for, so the source is the last trusted hop seen,
/// which is the peer itself when the malformed entry is the rightmost one.
/// When every entry is trusted, the leftmost one is the source.
pub(crate) fn source_address(peer: IpAddr, x_forwarded_for: &[&[u8]], trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let mut last_trusted = peer;
    for header in x_forwarded_for.iter().rev() {
        for entry in header.rsplit(|&b| b == b',') {
            let Some(addr) = parse_hop(entry) else {
                return last_trusted;
            };
            if !is_trusted(addr, trusted) {
                return addr;
            }
            last_trusted = addr;
        }
    }
    last_trusted
}

fn is_trusted(addr: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&addr))
}

/// One `X-Forwarded-For` item: an address, optionally `[v6]`, `[v6]:port`
/// or `v4:port` as some proxies write them.
fn parse_hop(entry: &[u8]) -> Option<IpAddr> {
    let entry = std::str::from_utf8(entry).ok()?.trim_matches([' ', '\t']);
    if let Ok(addr) = entry.parse::<IpAddr>() {
        return Some(addr.to_canonical());
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || is_port(after.strip_prefix(':')?)) {
            return None;
        }
        return inside
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|a| IpAddr::V6(a).to_canonical());
    }
    let (host, port) = entry.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(s: &str) -> bool {
    (1..=5).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// Parses `proxy.trusted_proxies`: CIDRs, or bare addresses meaning /32 or
/// /128. Host bits are cleared; an IPv4-mapped IPv6 network becomes the
/// IPv4 network it denotes, because addresses are compared canonicalised.
pub(crate) fn parse_cidrs(items: &[String]) -> Result<Vec<IpNet>, String> {
    items.iter().map(|item| parse_cidr(item)).collect()
}

fn parse_cidr(item: &str) -> Result<IpNet, String> {
    let text = item.trim();
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => match text.parse::<IpAddr>() {
            Ok(addr) => IpNet::from(addr),
            Err(_) => {
                return Err(format!(
                    "{:?} is neither a CIDR (10.0.0.0/8, fd00::/8) nor an IP address",
                    item.chars().take(64).collect::<String>()
                ))
            }
        },
    };
    Ok(canonical_net(net.trunc()))
}

fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let (Some(v4), true) = (v6.addr().to_ipv4_mapped(), v6.prefix_len() >= 96) {
            if let Ok(v4net) = Ipv4Net::new(v4, v6.prefix_len() - 96) {
                return IpNet::V4(v4net);
            }
        }
    }
    net
}

/// The per-address bucket used for throttling: an IPv4 address as is, an
/// IPv6 address by its /64, since one host commonly owns a whole /64.
pub(crate) fn throttle_bucket(addr: IpAddr) -> IpNet {
    match addr.to_canonical() {
        IpAddr::V4(v4) => IpNet::from(IpAddr::V4(v4)),
        IpAddr::V6(v6) => IpNet::V6(Ipv6Net::new_assert(v6, 64).trunc()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn nets(items: &[&str]) -> Vec<IpNet> {
        parse_cidrs(&items.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("test cidrs")
    }

    #[test]
    fn untrusted_peer_is_the_source_whatever_it_forwards() {
        let trusted = nets(&["10.0.0.0/8"]);
        let src = source_address(ip("203.0.113.9"), &[b"198.51.100.1"], &trusted);
        assert_eq!(src, ip("203.0.113.9"));
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_source() {
        let src = source_address(ip("10.0.0.1"), &[b"198.51.100.1"], &[]);
        assert_eq!(src, ip("10.0.0.1"));
    }

    #[test]
    fn trusted_peer_yields_the_rightmost_untrusted_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        let xff: &[&[u8]] = &[b"192.0.2.66, 198.51.100.7, 10.1.2.3"];
        let src = source_address(ip("10.0.0.1"), xff, &trusted);
        assert_eq!(src, ip("198.51.100.7"));
    }

    #[test]
    fn several_forwarded_for_headers_form_one_list() {
        let trusted = nets(&["10.0.0.0/8"]);
        let xff: &[&[u8]] = &[b"192.0.2.66", b"198.51.100.7", b"10.9.9.9"];
        let src = source_address(ip("10.0.0.1"), xff, &trusted);
        assert_eq!(src, ip("198.51.100.7"));
    }

    #[test]
    fn trusted_peer_without_forwarded_for_is_the_source() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            source_address(ip("10.0.0.1"), &[], &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn malformed_entry_stops_the_walk_at_the_last_trusted_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        let xff: &[&[u8]] = &[b"198.51.100.7, garbage, 10.1.2.3"];
        assert_eq!(
            source_address(ip("10.0.0.1"), xff, &trusted),
            ip("10.1.2.3")
        );
        let xff: &[&[u8]] = &[b"198.51.100.7, unknown"];
        assert_eq!(
            source_address(ip("10.0.0.1"), xff, &trusted),
            ip("10.0.0.1")
        );
        let xff: &[&[u8]] = &[b"198.51.100.7,,10.1.2.3"];
        assert_eq!(
            source_address(ip("10.0.0.1"), xff, &trusted),
            ip("10.1.2.3")
        );
        let xff: &[&[u8]] = &[b"\xff\xfe"];
        assert_eq!(
            source_address(ip("10.0.0.1"), xff, &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn all_trusted_hops_yield_the_leftmost() {
        let trusted = nets(&["10.0.0.0/8"]);
        let xff: &[&[u8]] = &[b"10.3.3.3, 10.2.2.2"];
        assert_eq!(
            source_address(ip("10.0.0.1"), xff, &trusted),
            ip("10.3.3.3")
        );
    }

    #[test]
    fn ipv4_mapped_addresses_are_normalised() {
        let trusted = nets(&["10.0.0.0/8"]);
        let peer = ip("::ffff:10.0.0.1");
        let xff: &[&[u8]] = &[b"::ffff:198.51.100.7"];
        assert_eq!(source_address(peer, xff, &trusted), ip("198.51.100.7"));
        assert_eq!(
            source_address(ip("::ffff:203.0.113.9"), &[], &[]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn hops_with_ports_and_brackets_are_understood() {
        let trusted = nets(&["10.0.0.0/8", "fd00::/8"]);
        let xff: &[&[u8]] = &[b"198.51.100.7:4711"];
        assert_eq!(
            source_address(ip("10.0.0.1"), xff, &trusted),
            ip("198.51.100.7")
        );
        let xff: &[&[u8]] = &[b"[2001:db8::1]:443, [fd00::2]"];
        assert_eq!(
            source_address(ip("fd00::1"), xff, &trusted),
            ip("2001:db8::1")
        );
        let xff: &[&[u8]] = &[b"[2001:db8::1]x"];
        assert_eq!(source_address(ip("fd00::1"), xff, &trusted), ip("fd00::1"));
    }

    #[test]
    fn bare_addresses_are_single_host_networks() {
        let parsed = nets(&["192.0.2.1", "2001:db8::1", " 10.0.0.0/8 "]);
        assert_eq!(parsed[0].to_string(), "192.0.2.1/32");
        assert_eq!(parsed[1].to_string(), "2001:db8::1/128");
        assert_eq!(parsed[2].to_string(), "10.0.0.0/8");
    }

    #[test]
    fn host_bits_are_cleared_and_mapped_networks_become_ipv4() {
        let parsed = nets(&["10.1.2.3/8", "::ffff:192.0.2.0/120"]);
        assert_eq!(parsed[0].to_string(), "10.0.0.0/8");
        assert_eq!(parsed[1].to_string(), "192.0.2.0/24");
    }

    #[test]
    fn malformed_cidrs_are_rejected_with_the_entry_named() {
        let err = parse_cidrs(&["10.0.0.0/33".to_string()]).expect_err("bad prefix");
        assert!(err.contains("10.0.0.0/33"), "{err}");
        assert!(parse_cidrs(&["example.com".to_string()]).is_err());
        assert!(parse_cidrs(&[String::new()]).is_err());
    }

    #[test]
    fn ipv6_sources_are_throttled_by_their_slash_64() {
        assert_eq!(
            throttle_bucket(ip("2001:db8:1:2:aaaa::1")),
            throttle_bucket(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_eq!(throttle_bucket(ip("192.0.2.1")).to_string(), "192.0.2.1/32");
        assert_eq!(
            throttle_bucket(ip("::ffff:192.0.2.1")).to_string(),
            "192.0.2.1/32"
        );
    }
}
