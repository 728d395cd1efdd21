//! NATS core protocol: INFO, CONNECT, SUB, PUB / MSG with a payload line.
//! A PING after the SUBs makes the PONG mean "subscriptions are active".
//! Echo is off so a client that both subscribes and publishes (rooms
//! scenario) is not sent its own messages, like the chat servers.

use super::{ClientSpec, Event, Protocol, Target};

#[derive(Default)]
pub struct State {
    ready: bool,
    /// The next line is the payload of a MSG header.
    payload_next: bool,
}

pub struct Nats;

impl Protocol for Nats {
    type State = State;
    const NAME: &'static str = "nats";
    const ACKS: bool = false;
    const PUBLISHER_JOINS: bool = false;

    fn on_connect(_st: &mut State, _spec: &ClientSpec, _out: &mut Vec<u8>) {}

    fn on_line<'a>(
        st: &mut State,
        spec: &ClientSpec,
        line: &'a [u8],
        out: &mut Vec<u8>,
    ) -> Event<'a> {
        if st.payload_next {
            st.payload_next = false;
            return Event::Delivered(line);
        }
        if line.starts_with(b"MSG ") {
            st.payload_next = true;
            return Event::Ignore;
        }
        if line == b"PING" {
            out.extend_from_slice(b"PONG\r\n");
            return Event::Ignore;
        }
        if line.starts_with(b"-ERR") {
            return if st.ready {
                Event::Err(line)
            } else {
                Event::Fatal(line)
            };
        }
        if line.starts_with(b"INFO ") && !st.ready {
            out.extend_from_slice(
                b"CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false}\r\n",
            );
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
        out.extend_from_slice(b"PUB ");
        super::write_subject(out, target);
        out.push(b' ');
        crate::payload::write_u64(out, payload.len() as u64);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
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
