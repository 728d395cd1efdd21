//! Redis Streams, Redis' durable way to fan out: a room is a stream key.
//! Publishers `XADD <room> * p <payload>`; the reply, the new entry's id,
//! is the ack (under `appendfsync always` Redis sends it only after the
//! AOF write is fsynced). Subscribers loop on
//! `XREAD BLOCK 0 COUNT <n> STREAMS <rooms> <last ids>`, one blocking read
//! in flight each, re-issued with the last id seen once its reply is
//! complete. Room keys carry the run tag, so they are new: reading from id
//! 0 misses nothing and replays nothing of an earlier run, and the PING
//! sent before the first XREAD marks the handshake done. A connection
//! blocked in XREAD cannot publish, so a client publishes or subscribes,
//! never both: only the one-room broadcast scenarios run.

use super::resp::{Kind, Reader, command};
use super::{ClientSpec, Event, Protocol, Target};

/// Entries one XREAD may return: more than a fanout window (1024 by
/// default), so a subscriber that fell behind catches up in one read.
const XREAD_COUNT: &[u8] = b"4096";

/// The stream entry field that holds the payload.
const FIELD: &[u8] = b"p";

#[derive(Default)]
pub struct State {
    ready: bool,
    reader: Reader,
    /// Per subject, in `ClientSpec::subjects` order: the id of the last
    /// entry read, where the next XREAD starts.
    last_ids: Vec<Vec<u8>>,
    /// The subject whose entries the current XREAD reply is listing.
    reading: usize,
}

pub struct RedisStreams;

/// Appends the XREAD that waits for entries after `st.last_ids`.
fn xread(st: &State, spec: &ClientSpec, out: &mut Vec<u8>) {
    let subjects: Vec<_> = spec.subjects().collect();
    let mut args: Vec<&[u8]> = vec![b"XREAD", b"BLOCK", b"0", b"COUNT", XREAD_COUNT, b"STREAMS"];
    args.extend(subjects.iter().map(|s| s.as_bytes()));
    args.extend(st.last_ids.iter().map(Vec::as_slice));
    command(out, &args);
}

impl Protocol for RedisStreams {
    type State = State;
    const NAME: &'static str = "redis-streams";
    const ACKS: bool = true;
    const PUBLISHER_JOINS: bool = false;
    const BROADCAST_ONLY: bool = true;

    fn on_connect(st: &mut State, spec: &ClientSpec, out: &mut Vec<u8>) {
        command(out, &[b"PING"]);
        st.last_ids = spec.subjects().map(|_| b"0".to_vec()).collect();
        if !st.last_ids.is_empty() {
            xread(st, spec, out);
        }
    }

    fn on_line<'a>(
        st: &mut State,
        spec: &ClientSpec,
        line: &'a [u8],
        out: &mut Vec<u8>,
    ) -> Event<'a> {
        let Some(token) = st.reader.next(line) else {
            return Event::Ignore;
        };
        let value = match token.kind {
            Kind::Value(v) => v,
            Kind::Error(e) if st.ready => return Event::Err(e),
            Kind::Error(e) => return Event::Fatal(e),
            Kind::Open => return Event::Ignore,
        };
        if !st.ready {
            st.ready = value == b"+PONG";
            return if st.ready {
                Event::Ready
            } else {
                Event::Ignore
            };
        }
        // An XREAD reply: [[key, [[id, [field, value, ...]], ...]], ...].
        let event = match (token.depth, token.index) {
            // A reply that is one value: the id XADD assigned.
            (0, _) => Event::Accepted,
            (2, 0) => {
                // XREAD only answers with the keys it was given.
                let key = spec.subjects().position(|s| s.as_bytes() == value);
                st.reading = key.unwrap_or(0);
                Event::Ignore
            }
            (4, 0) => {
                if let Some(id) = st.last_ids.get_mut(st.reading) {
                    id.clear();
                    id.extend_from_slice(value);
                }
                Event::Ignore
            }
            (5, i) if i % 2 == 1 => Event::Delivered(value),
            _ => Event::Ignore,
        };
        if token.last && token.depth > 0 {
            xread(st, spec, out);
        }
        event
    }

    fn publish(out: &mut Vec<u8>, target: Target<'_>, payload: &[u8]) {
        let key = super::subject(target);
        command(out, &[b"XADD", key.as_bytes(), b"*", FIELD, payload]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed<'a>(
        st: &mut State,
        spec: &ClientSpec,
        text: &'a [u8],
        out: &mut Vec<u8>,
    ) -> Vec<Event<'a>> {
        text.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .map(|l| RedisStreams::on_line(st, spec, l, out))
            .filter(|e| *e != Event::Ignore)
            .collect()
    }

    #[test]
    fn subscriber_reads_from_the_last_id_it_saw() {
        let spec = ClientSpec::for_test("u1", &["room"], false, false);
        let (mut st, mut out) = (State::default(), Vec::new());
        RedisStreams::on_connect(&mut st, &spec, &mut out);
        let xread_from = |id: &str| {
            let id_len = id.len();
            format!(
                "*8\r\n$5\r\nXREAD\r\n$5\r\nBLOCK\r\n$1\r\n0\r\n$5\r\nCOUNT\r\n$4\r\n4096\r\n\
                 $7\r\nSTREAMS\r\n$4\r\nroom\r\n${id_len}\r\n{id}\r\n"
            )
        };
        let first = format!("*1\r\n$4\r\nPING\r\n{}", xread_from("0"));
        assert_eq!(String::from_utf8_lossy(&out), first);
        out.clear();
        assert_eq!(
            feed(&mut st, &spec, b"+PONG\r\n", &mut out),
            vec![Event::Ready]
        );
        let reply = b"*1\r\n*2\r\n$4\r\nroom\r\n*2\r\n\
            *2\r\n$3\r\n1-0\r\n*2\r\n$1\r\np\r\n$5\r\n0.1.9\r\n\
            *2\r\n$3\r\n1-1\r\n*2\r\n$1\r\np\r\n$5\r\n0.2.9\r\n";
        assert_eq!(
            feed(&mut st, &spec, reply, &mut out),
            vec![Event::Delivered(b"0.1.9"), Event::Delivered(b"0.2.9")]
        );
        // Only the complete reply re-issues the read, from the last id.
        assert_eq!(String::from_utf8_lossy(&out), xread_from("1-1"));
    }

    #[test]
    fn publisher_counts_each_id_reply_as_an_ack() {
        let spec = ClientSpec::for_test("u0", &[], false, true);
        let (mut st, mut out) = (State::default(), Vec::new());
        RedisStreams::on_connect(&mut st, &spec, &mut out);
        assert_eq!(out, b"*1\r\n$4\r\nPING\r\n");
        out.clear();
        RedisStreams::publish(&mut out, Target::Room("r"), b"0.1.9");
        assert_eq!(
            out,
            b"*5\r\n$4\r\nXADD\r\n$1\r\nr\r\n$1\r\n*\r\n$1\r\np\r\n$5\r\n0.1.9\r\n"
        );
        let replies = b"+PONG\r\n$3\r\n1-0\r\n-OOM no\r\n$3\r\n1-2\r\n";
        assert_eq!(
            feed(&mut st, &spec, replies, &mut out),
            vec![
                Event::Ready,
                Event::Accepted,
                Event::Err(b"-OOM no"),
                Event::Accepted
            ]
        );
    }
}
