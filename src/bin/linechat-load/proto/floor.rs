//! The floor protocol: the least a fan-out server can do, spoken by the load
//! tool's own `floor-server` (see `floor_server.rs`). `SUB <subject>` and
//! `PING` to get ready, `PUB <subject> <payload>` to publish, deliveries as
//! `MSG <subject> <payload>`. It has no accounts, no storage and no acks, so
//! a run against it measures the machine and the load tool, not a server.

use super::{ClientSpec, Event, Protocol, Target};

pub struct Floor;

impl Protocol for Floor {
    type State = ();
    const NAME: &'static str = "floor";
    const ACKS: bool = false;
    const PUBLISHER_JOINS: bool = false;

    fn on_connect(_st: &mut (), spec: &ClientSpec, out: &mut Vec<u8>) {
        for subject in spec.subjects() {
            out.extend_from_slice(b"SUB ");
            out.extend_from_slice(subject.as_bytes());
            out.push(b'\n');
        }
        // Answered after the SUBs, so PONG means they are in effect.
        out.extend_from_slice(b"PING\n");
    }

    fn on_line<'a>(
        _st: &mut (),
        _spec: &ClientSpec,
        line: &'a [u8],
        _out: &mut Vec<u8>,
    ) -> Event<'a> {
        if line.starts_with(b"MSG ") {
            return Event::Delivered(super::last_word(line));
        }
        if line == b"PONG" {
            return Event::Ready;
        }
        Event::Ignore
    }

    fn publish(out: &mut Vec<u8>, target: Target<'_>, payload: &[u8]) {
        out.extend_from_slice(b"PUB ");
        super::write_subject(out, target);
        out.push(b' ');
        out.extend_from_slice(payload);
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_and_delivery() {
        let spec = ClientSpec::for_test("u1", &["room"], true, false);
        let mut out = Vec::new();
        Floor::on_connect(&mut (), &spec, &mut out);
        assert_eq!(out, b"SUB room\nSUB u.u1\nPING\n");
        assert_eq!(
            Floor::on_line(&mut (), &spec, b"PONG", &mut out),
            Event::Ready
        );
        assert_eq!(
            Floor::on_line(&mut (), &spec, b"MSG room 1.2.3", &mut out),
            Event::Delivered(b"1.2.3")
        );
        out.clear();
        Floor::publish(&mut out, Target::User("bob"), b"abc");
        assert_eq!(out, b"PUB u.bob abc\n");
    }
}
