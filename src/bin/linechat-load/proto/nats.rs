//! NATS core protocol: INFO, CONNECT, SUB, PUB / MSG with a payload line.
//! A PING after the SUBs makes the PONG mean "subscriptions are active".

use super::{ClientSpec, Event, Protocol, Target};

/// Line framing shared by the NATS adapters: a `MSG` header announces a
/// payload on the next line, and PINGs are answered here.
#[derive(Default)]
pub struct Framing {
    /// The sid of the MSG header whose payload is the next line.
    payload_of: Option<u64>,
}

/// A server line as the framing sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A message payload and the sid of the subscription it came on.
    Payload(u64, &'a [u8]),
    /// Any other line (INFO, PONG, -ERR ...).
    Line(&'a [u8]),
    /// Dealt with here: a MSG header or a PING.
    Handled,
}

impl Framing {
    pub fn read<'a>(&mut self, line: &'a [u8], out: &mut Vec<u8>) -> Frame<'a> {
        if let Some(sid) = self.payload_of.take() {
            return Frame::Payload(sid, line);
        }
        if let Some(args) = line.strip_prefix(b"MSG ") {
            // MSG <subject> <sid> [reply-to] <#bytes>
            let sid = args.split(|&b| b == b' ').nth(1).and_then(parse_u64);
            self.payload_of = Some(sid.unwrap_or(0));
            return Frame::Handled;
        }
        if line == b"PING" {
            out.extend_from_slice(b"PONG\r\n");
            return Frame::Handled;
        }
        Frame::Line(line)
    }
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// What every client sends first, in reply to the server's INFO. Echo is
/// off so a client that both subscribes and publishes (rooms scenario) is
/// not sent its own messages, like the chat servers.
pub const CONNECT: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false}\r\n";

/// Appends `PUB <subject> [<reply>] <#bytes>` and the payload; the subject
/// and the reply subject are given as pieces to join.
pub fn write_pub(out: &mut Vec<u8>, subject: &[&[u8]], reply: &[&[u8]], payload: &[u8]) {
    out.extend_from_slice(b"PUB ");
    subject.iter().for_each(|p| out.extend_from_slice(p));
    if !reply.is_empty() {
        out.push(b' ');
        reply.iter().for_each(|p| out.extend_from_slice(p));
    }
    out.push(b' ');
    crate::payload::write_u64(out, payload.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

#[derive(Default)]
pub struct State {
    ready: bool,
    framing: Framing,
}

pub struct Nats;

impl Protocol for Nats {
    type State = State;
    const NAME: &'static str = "nats";
    const TLS_AFTER_GREETING: bool = true;
    const ACKS: bool = false;
    const PUBLISHER_JOINS: bool = false;

    fn on_connect(_st: &mut State, _spec: &ClientSpec, _out: &mut Vec<u8>) {}

    fn on_line<'a>(
        st: &mut State,
        spec: &ClientSpec,
        line: &'a [u8],
        out: &mut Vec<u8>,
    ) -> Event<'a> {
        let line = match st.framing.read(line, out) {
            Frame::Payload(_, payload) => return Event::Delivered(payload),
            Frame::Handled => return Event::Ignore,
            Frame::Line(line) => line,
        };
        if line.starts_with(b"-ERR") {
            return if st.ready {
                Event::Err(line)
            } else {
                Event::Fatal(line)
            };
        }
        if line.starts_with(b"INFO ") && !st.ready {
            out.extend_from_slice(CONNECT);
            for (sid, subject) in spec.subjects().enumerate() {
                out.extend_from_slice(format!("SUB {subject} {}\r\n", sid + 1).as_bytes());
            }
            out.extend_from_slice(b"PING\r\n");
            return Event::Ignore;
        }
        if line == b"PONG" && !st.ready {
            st.ready = true;
            return Event::Ready;
        }
        Event::Ignore
    }

    fn publish(out: &mut Vec<u8>, target: Target<'_>, payload: &[u8]) {
        write_pub(out, &super::subject_parts(target), &[], payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_and_delivery() {
        let spec = ClientSpec::for_test("u1", &["room"], true, false);
        let (mut st, mut out) = (State::default(), Vec::new());
        Nats::on_line(&mut st, &spec, b"INFO {\"server_id\":\"x\"}", &mut out);
        let sent = String::from_utf8(out.clone()).unwrap();
        assert!(
            sent.contains("SUB room 1\r\nSUB u.u1 2\r\nPING\r\n"),
            "{sent}"
        );
        assert_eq!(
            Nats::on_line(&mut st, &spec, b"PONG", &mut out),
            Event::Ready
        );
        assert_eq!(
            Nats::on_line(&mut st, &spec, b"MSG room 1 5", &mut out),
            Event::Ignore
        );
        assert_eq!(
            Nats::on_line(&mut st, &spec, b"1.2.3", &mut out),
            Event::Delivered(b"1.2.3")
        );
        out.clear();
        Nats::publish(&mut out, Target::Room("room"), b"abc");
        assert_eq!(out, b"PUB room 3\r\nabc\r\n");
    }
}
