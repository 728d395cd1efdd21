//! Which gateway addresses push may reach: not this machine or its private
//! networks, unless `--push-allow-private` says so. A client names the
//! gateway, so without this a PUSHER could make the server POST to services
//! only it can reach (SSRF). PUSHER ADD refuses private IP literals; names
//! are resolved for each new connection by [`GuardedResolver`], and the
//! addresses it checked are the ones connected to, so a name that points
//! inward later, or answers differently from one lookup to the next (DNS
//! rebinding), is refused then. A refusal is [`PrivateAddress`], which the
//! push thread does not retry.

use std::net::IpAddr;

use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// The push thread's HTTP client: every address it connects to is
/// checked, it follows no redirect (a gateway answers where it was asked),
/// and it uses no proxy from the environment (a proxy would resolve the
/// gateway's name where this check cannot see it).
pub fn agent(allow_private: bool) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .max_idle_connections_per_host(4)
        .max_redirects(0)
        .proxy(None)
        .build();
    ureq::Agent::with_parts(
        config,
        DefaultConnector::default(),
        GuardedResolver { allow_private },
    )
}

/// ureq's resolver with the private-address check applied to what it
/// resolved, the addresses the connection then uses.
#[derive(Debug)]
pub struct GuardedResolver {
    allow_private: bool,
}

/// A gateway whose name resolves to a private address: refused, and
/// refused again however often it is tried.
#[derive(Debug, thiserror::Error)]
#[error("{uri} is a private address ({ip})")]
pub struct PrivateAddress {
    uri: String,
    ip: IpAddr,
}

impl PrivateAddress {
    /// Whether ureq's `e` is this refusal.
    pub fn is(e: &ureq::Error) -> bool {
        matches!(e, ureq::Error::Other(inner) if inner.is::<PrivateAddress>())
    }
}

impl Resolver for GuardedResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let addrs = DefaultResolver::default().resolve(uri, config, timeout)?;
        match addrs.iter().find(|a| is_private(a.ip())) {
            Some(a) if !self.allow_private => Err(ureq::Error::Other(Box::new(PrivateAddress {
                uri: uri.to_string(),
                ip: a.ip(),
            }))),
            _ => Ok(addrs),
        }
    }
}

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
    fn the_agent_connects_to_no_private_address_unless_allowed() {
        // Nothing listens there: refused by the guard, the request never
        // reaches the connect (which would fail differently).
        let url = "http://127.0.0.1:9/_matrix/push/v1/notify";
        let refused = agent(false).post(url).send_json(serde_json::json!({}));
        let e = refused.expect_err("a private address");
        assert!(PrivateAddress::is(&e), "{e}");
        assert!(
            e.to_string().contains("is a private address (127.0.0.1)"),
            "{e}"
        );
        let allowed = agent(true).post(url).send_json(serde_json::json!({}));
        let e = allowed.expect_err("nothing listens");
        assert!(!PrivateAddress::is(&e), "{e}");
        assert!(!e.to_string().contains("private"), "{e}");
    }
}
