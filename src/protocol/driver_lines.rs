//! The lines the driver sends on its own, not as the answer to a command:
//! the greeting, refusals at accept, the slow-consumer and login-deadline
//! notices, and BYE. They live here, beside the other encoders, so the
//! server module holds no protocol text.

use bytes::Bytes;

use crate::line;

/// The first line of every accepted connection.
pub fn hello() -> Bytes {
    line!(
        "HELLO linechat {} - type HELP for commands",
        env!("CARGO_PKG_VERSION")
    )
}

/// Instead of the greeting: `--max-connections` reached.
pub const SERVER_FULL: &[u8] = b"ERR SERVER_FULL too many connections; try again later\n";

/// Instead of the greeting: too many unauthenticated connections from the address.
pub const TOO_MANY_CONNECTIONS: &[u8] =
    b"ERR TOO_MANY_CONNECTIONS too many connections from your address are not logged in\n";

/// Written best effort to a dropped slow consumer; the leading CRLF ends
/// whatever partial line the client was reading.
pub const SLOW_CONSUMER: &[u8] =
    b"\r\nERR SLOW_CONSUMER you fell too far behind; reconnect and SYNC\r\n";

/// The session did not log in within `secs` seconds.
pub fn login_timeout(secs: u64) -> Bytes {
    line!("ERR LOGIN_TIMEOUT log in within {secs} seconds of connecting")
}

/// Sent to every session when the server shuts down.
pub fn bye() -> Bytes {
    line!("BYE server shutting down")
}

/// The STATS reply: a `STAT <name> <value>` line per counter, then one
/// `STAT closed_<reason> <n>` per close reason, then `OK STATS <lines>`.
/// The STATS answer: `rows`, the close reasons, then `later` (rows added
/// since: new rows only ever go at the end).
pub fn stats<'a>(
    rows: impl IntoIterator<Item = (&'a str, u64)>,
    closed: impl IntoIterator<Item = (&'a str, u64)>,
    later: impl IntoIterator<Item = (&'a str, u64)>,
) -> Bytes {
    let mut lines: Vec<Bytes> = rows
        .into_iter()
        .map(|(k, v)| line!("STAT {k} {v}"))
        .collect();
    lines.extend(
        closed
            .into_iter()
            .map(|(k, v)| line!("STAT closed_{k} {v}")),
    );
    lines.extend(later.into_iter().map(|(k, v)| line!("STAT {k} {v}")));
    lines.push(line!("OK STATS {}", lines.len()));
    super::encode::join(&lines)
}
