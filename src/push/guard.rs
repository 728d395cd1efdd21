//! Which gateway addresses push may reach: not this machine or its private
//! networks, unless `--push-allow-private` says so. A client names the
//! gateway, so without this a PUSHER could make the server POST to services
//! only it can reach (SSRF). Host names are resolved and checked at every
//! send, so a name that later points inward is refused then.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// Whether `ip` is on this machine or a network not routed on the internet.
pub fn is_private(ip: IpAddr) -> bool {
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
                // Carrier-grade NAT, 100.64.0.0/10.
                || (a == 100 && (64..128).contains(&b))
                || a == 0
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // Unique local fc00::/7 and link-local fe80::/10.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

/// The addresses `host:port` resolves to, refused (as a reason) if any is
/// private and `allow_private` is off.
pub fn resolve(host: &str, port: u16, allow_private: bool) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    match addrs.iter().find(|a| is_private(a.ip())) {
        Some(a) if !allow_private => Err(format!("{host} is a private address ({})", a.ip())),
        _ if addrs.is_empty() => Err(format!("{host} has no address")),
        _ => Ok(addrs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_told_apart() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_private(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_private(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn loopback_is_refused_unless_allowed() {
        assert!(resolve("127.0.0.1", 80, false).is_err());
        assert_eq!(resolve("127.0.0.1", 80, true).unwrap().len(), 1);
    }
}
