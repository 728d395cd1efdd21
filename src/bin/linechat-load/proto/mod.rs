//! Protocol adapters. Each turns the same abstract client (log in, join
//! rooms, publish, receive) into one server's wire protocol. All of them are
//! line based on the receive side, so the engine splits lines and the adapter
//! only looks at one line at a time, without allocating.

use std::borrow::Cow;

pub mod floor;
pub mod irc;
pub mod linechat;
pub mod nats;
pub mod nats_js;
pub mod redis;
pub mod redis_streams;
mod resp;

/// What one client is: its name, the rooms it joins and whether it publishes.
#[derive(Clone, Debug)]
pub struct ClientSpec {
    /// The client's number in the run, which is also the publisher number
    /// in the payloads it writes (NATS JetStream acks are addressed by it).
    pub index: usize,
    pub name: String,
    pub password: String,
    /// Rooms to be a member of (bare names; adapters add `#` where needed).
    pub rooms: Vec<String>,
    /// Also receive direct messages (NATS/Redis need a per-user subject).
    pub inbox: bool,
    /// Publishes (Redis needs RESP3 to publish on a subscribed connection).
    pub publishes: bool,
    /// IRC operator "name password" to OPER with and set user mode +F
    /// (ngIRCd's relaxed flood protection) before joining.
    pub irc_oper: Option<String>,
}

#[cfg(test)]
impl ClientSpec {
    /// A client for adapter unit tests: no password, no IRC operator.
    pub fn for_test(name: &str, rooms: &[&str], inbox: bool, publishes: bool) -> Self {
        ClientSpec {
            index: 0,
            name: name.into(),
            password: String::new(),
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            inbox,
            publishes,
            irc_oper: None,
        }
    }
}

pub enum Target<'a> {
    Room(&'a str),
    User(&'a str),
}

/// Brokers (NATS, Redis, the floor server) route on subjects only: a room is
/// its bare name, a user's inbox this prefix and the user's name.
const INBOX_PREFIX: &str = "u.";

/// The broker subject for `target`.
pub fn subject(target: Target<'_>) -> Cow<'_, str> {
    match target {
        Target::Room(r) => Cow::Borrowed(r),
        Target::User(u) => Cow::Owned(format!("{INBOX_PREFIX}{u}")),
    }
}

/// The broker subject for `target` as two pieces to write one after the
/// other, without building a string: it is on the publish path.
pub fn subject_parts(target: Target<'_>) -> [&[u8]; 2] {
    match target {
        Target::Room(r) => [b"", r.as_bytes()],
        Target::User(u) => [INBOX_PREFIX.as_bytes(), u.as_bytes()],
    }
}

/// Appends the broker subject for `target`.
pub fn write_subject(out: &mut Vec<u8>, target: Target<'_>) {
    subject_parts(target)
        .iter()
        .for_each(|p| out.extend_from_slice(p));
}

impl ClientSpec {
    /// What a broker client subscribes to: its rooms, then its inbox.
    pub fn subjects(&self) -> impl Iterator<Item = Cow<'_, str>> {
        let inbox = self.inbox.then(|| subject(Target::User(&self.name)));
        self.rooms
            .iter()
            .map(|r| subject(Target::Room(r)))
            .chain(inbox)
    }
}

/// What a received line meant, as far as the load tool cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// Nothing of interest (numerics, presence, history, pings answered...).
    Ignore,
    /// Handshake done: logged in and member of every room.
    Ready,
    /// A message from a room or a direct conversation; the payload only.
    Delivered(&'a [u8]),
    /// The server acknowledged one publish (only for protocols with acks).
    Accepted,
    /// Success reply to some other command (e.g. FRIEND ADD).
    Ok(&'a [u8]),
    /// Error reply; during the run phase this is a rejected publish.
    Err(&'a [u8]),
    /// The connection can't continue (handshake failed, server said bye).
    Fatal(&'a [u8]),
}

pub trait Protocol {
    type State: Default;
    const NAME: &'static str;
    /// Whether each publish gets a reply; otherwise "published" counts sends.
    const ACKS: bool;
    /// Whether a publisher must be a room member to publish into it.
    const PUBLISHER_JOINS: bool;
    /// Whether only the one-room broadcast scenarios (fanout, latency) work:
    /// the durable adapters give each client one role, publisher or
    /// subscriber, and make each subscriber a server-side reader.
    const BROADCAST_ONLY: bool = false;
    /// Whether the server greets in plaintext and then expects TLS (NATS
    /// before 2.10's `handshake_first`): with a TLS wire, the client starts
    /// TLS once it has handled the greeting line.
    const TLS_AFTER_GREETING: bool = false;

    /// Bytes to send as soon as the TCP connection is up.
    fn on_connect(st: &mut Self::State, spec: &ClientSpec, out: &mut Vec<u8>);
    /// Handles one received line (without its line terminator).
    fn on_line<'a>(
        st: &mut Self::State,
        spec: &ClientSpec,
        line: &'a [u8],
        out: &mut Vec<u8>,
    ) -> Event<'a>;
    /// Appends one publish of `payload` to `target`.
    fn publish(out: &mut Vec<u8>, target: Target<'_>, payload: &[u8]);
    /// Appends a friendship request (linechat only gates direct messages on
    /// friendship); returns false when the protocol needs none.
    fn friend_add(_out: &mut Vec<u8>, _user: &str) -> bool {
        false
    }
    fn friend_accept(_out: &mut Vec<u8>, _user: &str) -> bool {
        false
    }
}

/// The last space-separated word of a line: every adapter's payload position.
/// It runs once per delivered line, millions of times a second: a byte-wise
/// backward scan over the payload took 40 % of the tool's core at 3.7M
/// deliveries/s (perf), so this uses glibc's vectorised `memrchr`.
pub fn last_word(line: &[u8]) -> &[u8] {
    // SAFETY: pointer and length come from a valid slice.
    let p = unsafe { libc::memrchr(line.as_ptr().cast(), i32::from(b' '), line.len()) };
    if p.is_null() {
        line
    } else {
        &line[p as usize - line.as_ptr() as usize + 1..]
    }
}

#[cfg(test)]
mod tests {
    use super::last_word;

    #[test]
    fn last_word_is_after_the_last_space() {
        assert_eq!(last_word(b"MSG #r 1 m1 bob t 1.2.3.xx"), b"1.2.3.xx");
        assert_eq!(last_word(b"payload"), b"payload");
        assert_eq!(last_word(b"ends with "), b"");
        assert_eq!(last_word(b""), b"");
    }
}
