//! Per-connection flood control and per-address connection accounting.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::chat::SessionId;

/// A token bucket on commands, kept in 8 bytes per connection. Time is in
/// milliseconds since the server started.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f32,
    stamp_ms: u32,
}

impl Bucket {
    pub fn full(burst: u32) -> Self {
        Bucket {
            tokens: burst as f32,
            stamp_ms: 0,
        }
    }

    /// Takes one token, or says how many milliseconds until one is there.
    pub fn take(&mut self, now_ms: u32, rate: u32, burst: u32) -> Result<(), u32> {
        let elapsed = now_ms.saturating_sub(self.stamp_ms) as f32 / 1000.0;
        self.tokens = (self.tokens + elapsed * rate as f32).min(burst as f32);
        self.stamp_ms = now_ms;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / rate as f32 * 1000.0;
            Err((wait.ceil() as u32).max(1))
        }
    }
}

/// Connections not yet logged in, per client address (slowloris and
/// connection-flood guard). The address is kept here, for as long as the
/// connection is not logged in, rather than in every connection.
#[derive(Debug, Default)]
pub struct UnauthCount {
    by_ip: HashMap<IpAddr, u32>,
    ip_of: HashMap<SessionId, IpAddr>,
}

impl UnauthCount {
    /// Counts a new connection from `ip` unless `ip` is at `max`.
    pub fn try_add(&mut self, sid: SessionId, ip: IpAddr, max: u32) -> bool {
        let n = self.by_ip.entry(ip).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        self.ip_of.insert(sid, ip);
        true
    }

    /// The connection logged in or closed.
    pub fn remove(&mut self, sid: SessionId) {
        let Some(ip) = self.ip_of.remove(&sid) else {
            return;
        };
        if let Some(n) = self.by_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.by_ip.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let mut b = Bucket::full(3);
        for _ in 0..3 {
            assert!(b.take(0, 10, 3).is_ok());
        }
        assert_eq!(b.take(0, 10, 3), Err(100));
        assert!(b.take(100, 10, 3).is_ok());
        assert!(b.take(100, 10, 3).is_err());
        // Refill never passes the burst.
        for _ in 0..3 {
            assert!(b.take(10_000, 10, 3).is_ok());
        }
        assert!(b.take(10_000, 10, 3).is_err());
    }

    #[test]
    fn unauthenticated_connections_are_capped_per_address() {
        let mut u = UnauthCount::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(u.try_add(SessionId(1), ip, 2));
        assert!(u.try_add(SessionId(2), ip, 2));
        assert!(!u.try_add(SessionId(3), ip, 2));
        u.remove(SessionId(1));
        u.remove(SessionId(1));
        assert!(u.try_add(SessionId(4), ip, 2));
        assert!(!u.try_add(SessionId(5), ip, 2));
    }
}
