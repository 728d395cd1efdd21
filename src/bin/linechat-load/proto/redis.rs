//! Redis pub/sub over RESP. Subscribers SUBSCRIBE; publishers PUBLISH and
//! get one integer reply each. A client that does both (rooms scenario)
//! switches to RESP3 with HELLO 3, the only way Redis lets a subscribed
//! connection publish. A trailing PING marks the end of the handshake.
//! Aggregate headers are skipped and the values are a flat token stream,
//! which is all pub/sub replies need.

use super::resp::{Kind, Reader, command};
use super::{ClientSpec, Event, Protocol, Target};

#[derive(Default)]
pub struct State {
    ready: bool,
    reader: Reader,
    expect: Expect,
}

/// Where we are inside a pub/sub push, counted in values.
#[derive(Default, Clone, Copy)]
enum Expect {
    #[default]
    Reply,
    /// After "message": channel, then payload.
    MessageChannel,
    MessagePayload,
    /// After "subscribe": channel, then count.
    SubscribeChannel,
    SubscribeCount,
}

pub struct Redis;

impl Protocol for Redis {
    type State = State;
    const NAME: &'static str = "redis";
    const ACKS: bool = true;
    const PUBLISHER_JOINS: bool = false;

    fn on_connect(_st: &mut State, spec: &ClientSpec, out: &mut Vec<u8>) {
        let subjects: Vec<_> = spec.subjects().collect();
        let channels = subjects.iter().map(|s| s.as_bytes());
        if !subjects.is_empty() {
            if spec.publishes {
                command(out, &[b"HELLO", b"3"]);
            }
            let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
            args.extend(channels);
            command(out, &args);
        }
        command(out, &[b"PING"]);
    }

    fn on_line<'a>(
        st: &mut State,
        _spec: &ClientSpec,
        line: &'a [u8],
        _out: &mut Vec<u8>,
    ) -> Event<'a> {
        let value = match st.reader.next(line).map(|t| t.kind) {
            Some(Kind::Value(v)) => v,
            Some(Kind::Error(e)) if st.ready => return Event::Err(e),
            Some(Kind::Error(e)) => return Event::Fatal(e),
            Some(Kind::Open) | None => return Event::Ignore,
        };
        if !st.ready {
            // PONG is "+PONG", or ["pong", ""] while subscribed in RESP2.
            if value == b"+PONG" || value == b"pong" {
                st.ready = true;
                return Event::Ready;
            }
            return Event::Ignore;
        }
        let (next, ev) = match st.expect {
            Expect::Reply => match value {
                b"message" => (Expect::MessageChannel, Event::Ignore),
                b"subscribe" => (Expect::SubscribeChannel, Event::Ignore),
                v if v.first() == Some(&b':') => (Expect::Reply, Event::Accepted),
                _ => (Expect::Reply, Event::Ignore),
            },
            Expect::MessageChannel => (Expect::MessagePayload, Event::Ignore),
            Expect::MessagePayload => (Expect::Reply, Event::Delivered(value)),
            Expect::SubscribeChannel => (Expect::SubscribeCount, Event::Ignore),
            Expect::SubscribeCount => (Expect::Reply, Event::Ignore),
        };
        st.expect = next;
        ev
    }

    fn publish(out: &mut Vec<u8>, target: Target<'_>, payload: &[u8]) {
        let channel = super::subject(target);
        command(out, &[b"PUBLISH", channel.as_bytes(), payload]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed<'a>(st: &mut State, spec: &ClientSpec, text: &'a [u8]) -> Vec<Event<'a>> {
        let mut out = Vec::new();
        text.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .map(|l| Redis::on_line(st, spec, l, &mut out))
            .filter(|e| *e != Event::Ignore)
            .collect()
    }

    #[test]
    fn subscriber_resp2() {
        let spec = ClientSpec::for_test("u1", &["room"], false, false);
        let mut st = State::default();
        let mut out = Vec::new();
        Redis::on_connect(&mut st, &spec, &mut out);
        assert_eq!(
            out,
            b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nroom\r\n*1\r\n$4\r\nPING\r\n"
        );
        let hs = b"*3\r\n$9\r\nsubscribe\r\n$4\r\nroom\r\n:1\r\n*2\r\n$4\r\npong\r\n$0\r\n\r\n";
        assert_eq!(feed(&mut st, &spec, hs), vec![Event::Ready]);
        let msg = b"*3\r\n$7\r\nmessage\r\n$4\r\nroom\r\n$5\r\n1.2.3\r\n";
        assert_eq!(feed(&mut st, &spec, msg), vec![Event::Delivered(b"1.2.3")]);
    }

    #[test]
    fn publisher_and_resp3_pushes() {
        let spec = ClientSpec::for_test("u1", &["r"], false, true);
        let mut st = State::default();
        let hs = b"%1\r\n$5\r\nproto\r\n:3\r\n>3\r\n$9\r\nsubscribe\r\n$1\r\nr\r\n:1\r\n+PONG\r\n";
        assert_eq!(feed(&mut st, &spec, hs), vec![Event::Ready]);
        let mix = b":4\r\n>3\r\n$7\r\nmessage\r\n$1\r\nr\r\n$3\r\n1.2\r\n:0\r\n";
        assert_eq!(
            feed(&mut st, &spec, mix),
            vec![Event::Accepted, Event::Delivered(b"1.2"), Event::Accepted]
        );
    }
}
