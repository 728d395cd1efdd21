//! One notification to one Matrix push gateway: `POST
//! <url>` (the pusher's URL, ending in `/_matrix/push/v1/notify`) with the
//! push gateway API's JSON, and the pushkeys it rejects.

use std::time::Duration;

use serde_json::json;

use super::guard;
use super::queue::{Device, Queued};

/// How long one gateway may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a notification did not go through, and whether to try again.
#[derive(Debug)]
pub struct Failure {
    pub retry: bool,
    pub reason: String,
}

/// The host and port of a pusher URL (`http://` or `https://`), if it has
/// the shape PUSHER ADD accepts.
pub fn host_port(url: &str) -> Option<(&str, u16)> {
    let (rest, default_port) = if let Some(r) = url.strip_prefix("https://") {
        (r, 443)
    } else {
        (url.strip_prefix("http://")?, 80)
    };
    let authority = rest.split('/').next()?;
    // No user info: `http://x@10.0.0.1/` would name one host and reach another.
    if authority.contains('@') {
        return None;
    }
    let (host, port) = match authority.strip_prefix('[') {
        // An IPv6 literal, with or without a port after it.
        Some(bracketed) => match bracketed.split_once(']')? {
            (h, "") => (h, default_port),
            (h, after) => (h, after.strip_prefix(':')?.parse().ok()?),
        },
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (authority, default_port),
        },
    };
    (!host.is_empty()).then_some((host, port))
}

/// The request body for `q` to `devices` (all on one gateway).
pub fn body(q: &Queued, devices: &[Device]) -> serde_json::Value {
    let devices: Vec<_> = devices
        .iter()
        .map(|d| json!({"app_id": d.app_id, "pushkey": d.pushkey, "data": {}}))
        .collect();
    json!({
        "notification": {
            "event_id": q.msgid,
            "room_id": q.room,
            "type": "m.room.message",
            "sender": q.sender,
            "prio": q.prio,
            "counts": {"unread": q.unread},
            "devices": devices,
        }
    })
}

/// Sends `q` to the gateway at `url` for `devices` with `agent` (from
/// [`guard::agent`]); returns the pushkeys it rejected.
pub fn send(
    agent: &ureq::Agent,
    url: &str,
    q: &Queued,
    devices: &[Device],
) -> Result<Vec<String>, Failure> {
    let refuse = |reason: String| Failure {
        retry: false,
        reason,
    };
    if host_port(url).is_none() {
        return Err(refuse(format!("bad URL {url}")));
    }
    let answer = agent
        .post(url)
        .config()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .build()
        .send_json(body(q, devices));
    // A name that cannot be resolved now may resolve later; a private one
    // (the agent's resolver checks what it connects to) is refused for good.
    let mut answer = answer.map_err(|e| Failure {
        retry: !guard::PrivateAddress::is(&e),
        reason: format!("{url}: {e}"),
    })?;
    let status = answer.status().as_u16();
    match status {
        200..=299 => {
            let value: serde_json::Value = answer.body_mut().read_json().unwrap_or_default();
            Ok(value["rejected"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect())
        }
        // Overloaded or failing: later. Any other refusal will not change.
        429 | 500..=599 => Err(Failure {
            retry: true,
            reason: format!("{url}: HTTP {status}"),
        }),
        _ => Err(refuse(format!("{url}: HTTP {status}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_come_from_the_url() {
        let notify = "/_matrix/push/v1/notify";
        assert_eq!(
            host_port(&format!("http://127.0.0.1:9000{notify}")),
            Some(("127.0.0.1", 9000))
        );
        assert_eq!(
            host_port(&format!("https://push.example.org{notify}")),
            Some(("push.example.org", 443))
        );
        assert_eq!(
            host_port(&format!("http://[::1]:8080{notify}")),
            Some(("::1", 8080))
        );
        assert_eq!(
            host_port(&format!("http://[::1]{notify}")),
            Some(("::1", 80))
        );
        assert_eq!(host_port(&format!("http://x@10.0.0.1{notify}")), None);
        assert_eq!(host_port(&format!("http://[::1]x{notify}")), None);
        assert_eq!(host_port("ftp://x/y"), None);
        assert_eq!(host_port("http:///x"), None);
    }

    /// A gateway at a private address is refused for good; one that does
    /// not answer is tried again.
    #[test]
    fn a_private_gateway_is_not_retried_and_a_silent_one_is() {
        let q = Queued {
            id: 1,
            user: 1,
            room: "#r".into(),
            sender: "alice".into(),
            msgid: "m".into(),
            prio: "low".into(),
            unread: 1,
            attempts: 0,
        };
        let url = "http://127.0.0.1:9/_matrix/push/v1/notify";
        let refused = send(&guard::agent(false), url, &q, &[]).expect_err("private");
        assert!(!refused.retry, "{}", refused.reason);
        let silent = send(&guard::agent(true), url, &q, &[]).expect_err("nothing listens");
        assert!(silent.retry, "{}", silent.reason);
        let bad = send(&guard::agent(true), "ftp://x/y", &q, &[]).expect_err("bad URL");
        assert!(!bad.retry, "{}", bad.reason);
    }
}
