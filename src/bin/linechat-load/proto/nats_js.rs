//! NATS JetStream with file storage, NATS' durable way to fan out. A room
//! is a stream of that name on the subject of that name.
//!
//! Every client first creates the streams of its rooms
//! (`$JS.API.STREAM.CREATE.<room>`, `storage: file`): creating a stream
//! that exists with the same configuration succeeds, so who comes first
//! does not matter. A subscriber then creates one push consumer per room
//! (`$JS.API.CONSUMER.CREATE.<room>`: ack policy none, deliver policy new)
//! delivering to a subject of its own that it has subscribed to, so every
//! subscriber gets every message; the consumer's reply makes it ready. A
//! publisher PUBs with a reply subject, on which the stream answers with a
//! PubAck (`{"stream":..,"seq":..}`) once the message is stored, or an
//! error: that is the ack. API requests are answered on the client's own
//! inbox subject. Only the broadcast scenarios run: a client is a
//! publisher (it joins the room only to create its stream) or a
//! subscriber, never both.

use super::nats::{CONNECT, Frame, Framing, write_pub};
use super::{ClientSpec, Event, Protocol, Target};

/// Subscription ids: JetStream API replies, PubAcks, and from the last on
/// one per room for its consumer's deliveries (a push consumer does not
/// deliver to a wildcard subscription that matches its deliver subject).
const SID_API: u64 = 1;
const SID_ACKS: u64 = 2;
const SID_FIRST_DELIVER: u64 = 3;

/// PubAcks go to `_INBOX.ack.<publisher>.<subject>`: a publish knows its
/// publisher only from its payload, which starts with that number.
const ACK_PREFIX: &[u8] = b"_INBOX.ack.";

#[derive(Default)]
pub struct State {
    phase: Phase,
    framing: Framing,
}

#[derive(Default, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the server's INFO.
    #[default]
    Connecting,
    /// This many stream creations not answered yet.
    Streams(usize),
    /// This many consumer creations not answered yet.
    Consumers(usize),
    Ready,
}

pub struct NatsJs;

/// The client's subject for JetStream API replies.
fn api_inbox(spec: &ClientSpec) -> String {
    format!("_INBOX.{}.api", spec.name)
}

/// The subject the consumer for `room` delivers to.
fn deliver_subject(spec: &ClientSpec, room: &str) -> String {
    format!("_INBOX.{}.dlv.{room}", spec.name)
}

/// Appends a JetStream API request.
fn api_request(out: &mut Vec<u8>, spec: &ClientSpec, subject: &str, body: &str) {
    let reply = api_inbox(spec);
    write_pub(
        out,
        &[subject.as_bytes()],
        &[reply.as_bytes()],
        body.as_bytes(),
    );
}

/// The JSON of a JetStream reply that reports an error.
fn is_error(json: &[u8]) -> bool {
    json.windows(8).any(|w| w == b"\"error\":")
}

impl Protocol for NatsJs {
    type State = State;
    const NAME: &'static str = "nats-js";
    const TLS_AFTER_GREETING: bool = true;
    const ACKS: bool = true;
    /// A publisher needs its room's stream, so it creates it.
    const PUBLISHER_JOINS: bool = true;
    const BROADCAST_ONLY: bool = true;

    fn on_connect(_st: &mut State, _spec: &ClientSpec, _out: &mut Vec<u8>) {}

    fn on_line<'a>(
        st: &mut State,
        spec: &ClientSpec,
        line: &'a [u8],
        out: &mut Vec<u8>,
    ) -> Event<'a> {
        let (sid, payload) = match st.framing.read(line, out) {
            Frame::Payload(sid, payload) => (sid, payload),
            Frame::Handled => return Event::Ignore,
            Frame::Line(l) if l.starts_with(b"-ERR") && st.phase == Phase::Ready => {
                return Event::Err(l);
            }
            Frame::Line(l) if l.starts_with(b"-ERR") => return Event::Fatal(l),
            Frame::Line(l) if l.starts_with(b"INFO ") && st.phase == Phase::Connecting => {
                start(st, spec, out);
                return Event::Ignore;
            }
            Frame::Line(_) => return Event::Ignore,
        };
        match (sid, &mut st.phase) {
            (SID_FIRST_DELIVER.., Phase::Ready) => Event::Delivered(payload),
            (SID_ACKS, Phase::Ready) if is_error(payload) => Event::Err(payload),
            (SID_ACKS, Phase::Ready) => Event::Accepted,
            (SID_API, _) if is_error(payload) => Event::Fatal(payload),
            (SID_API, Phase::Streams(left)) => {
                *left -= 1;
                if *left == 0 {
                    create_consumers(st, spec, out);
                }
                if st.phase == Phase::Ready {
                    Event::Ready
                } else {
                    Event::Ignore
                }
            }
            (SID_API, Phase::Consumers(left)) => {
                *left -= 1;
                if *left > 0 {
                    return Event::Ignore;
                }
                st.phase = Phase::Ready;
                Event::Ready
            }
            _ => Event::Ignore,
        }
    }

    fn publish(out: &mut Vec<u8>, target: Target<'_>, payload: &[u8]) {
        let publisher = payload.split(|&b| b == b'.').next().unwrap_or_default();
        let [a, b] = super::subject_parts(target);
        write_pub(out, &[a, b], &[ACK_PREFIX, publisher, b".", a, b], payload);
    }
}

/// After INFO: subscribes to the inbox subjects and asks for the streams.
fn start(st: &mut State, spec: &ClientSpec, out: &mut Vec<u8>) {
    out.extend_from_slice(CONNECT);
    let mut sub = |subject: String, sid: u64| {
        out.extend_from_slice(format!("SUB {subject} {sid}\r\n").as_bytes());
    };
    sub(api_inbox(spec), SID_API);
    if spec.publishes {
        let acks = String::from_utf8_lossy(ACK_PREFIX);
        sub(format!("{acks}{}.>", spec.index), SID_ACKS);
    } else {
        for (sid, room) in (SID_FIRST_DELIVER..).zip(&spec.rooms) {
            sub(deliver_subject(spec, room), sid);
        }
    }
    for room in &spec.rooms {
        let body = format!(r#"{{"name":"{room}","subjects":["{room}"],"storage":"file"}}"#);
        api_request(out, spec, &format!("$JS.API.STREAM.CREATE.{room}"), &body);
    }
    st.phase = Phase::Streams(spec.rooms.len());
    if spec.rooms.is_empty() {
        create_consumers(st, spec, out);
    }
}

/// The streams exist: a subscriber asks for its consumers, a publisher is
/// ready.
fn create_consumers(st: &mut State, spec: &ClientSpec, out: &mut Vec<u8>) {
    if spec.publishes || spec.rooms.is_empty() {
        st.phase = Phase::Ready;
        return;
    }
    for room in &spec.rooms {
        let deliver = deliver_subject(spec, room);
        let body = format!(
            r#"{{"stream_name":"{room}","config":{{"deliver_subject":"{deliver}","ack_policy":"none","deliver_policy":"new"}}}}"#
        );
        api_request(out, spec, &format!("$JS.API.CONSUMER.CREATE.{room}"), &body);
    }
    st.phase = Phase::Consumers(spec.rooms.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(
        st: &mut State,
        spec: &ClientSpec,
        line: &'static [u8],
        out: &mut Vec<u8>,
    ) -> Event<'static> {
        NatsJs::on_line(st, spec, line, out)
    }

    #[test]
    fn subscriber_creates_stream_then_consumer() {
        let spec = ClientSpec::for_test("u1", &["room"], false, false);
        let (mut st, mut out) = (State::default(), Vec::new());
        assert_eq!(
            on(&mut st, &spec, b"INFO {\"jetstream\":true}", &mut out),
            Event::Ignore
        );
        let stream = r#"{"name":"room","subjects":["room"],"storage":"file"}"#;
        let expected = format!(
            "{}SUB _INBOX.u1.api 1\r\nSUB _INBOX.u1.dlv.room 3\r\n\
             PUB $JS.API.STREAM.CREATE.room _INBOX.u1.api {}\r\n{stream}\r\n",
            String::from_utf8_lossy(CONNECT),
            stream.len()
        );
        assert_eq!(String::from_utf8_lossy(&out), expected);
        out.clear();
        on(&mut st, &spec, b"MSG _INBOX.u1.api 1 40", &mut out);
        let created = br#"{"type":"io.nats.jetstream.api.v1.stream_create_response","config":{}}"#;
        assert_eq!(on(&mut st, &spec, created, &mut out), Event::Ignore);
        let consumer = r#"{"stream_name":"room","config":{"deliver_subject":"_INBOX.u1.dlv.room","ack_policy":"none","deliver_policy":"new"}}"#;
        let expected = format!(
            "PUB $JS.API.CONSUMER.CREATE.room _INBOX.u1.api {}\r\n{consumer}\r\n",
            consumer.len()
        );
        assert_eq!(String::from_utf8_lossy(&out), expected);
        on(&mut st, &spec, b"MSG _INBOX.u1.api 1 40", &mut out);
        assert_eq!(
            on(&mut st, &spec, br#"{"name":"x"}"#, &mut out),
            Event::Ready
        );
        out.clear();
        assert_eq!(on(&mut st, &spec, b"PING", &mut out), Event::Ignore);
        assert_eq!(out, b"PONG\r\n");
        let header = b"MSG room 3 $JS.ACK.room.x.1.1.1.1.0 5";
        assert_eq!(on(&mut st, &spec, header, &mut out), Event::Ignore);
        assert_eq!(
            on(&mut st, &spec, b"0.1.9", &mut out),
            Event::Delivered(b"0.1.9")
        );
    }

    #[test]
    fn publisher_is_acked_on_its_own_subject() {
        let mut spec = ClientSpec::for_test("u7", &["room"], false, true);
        spec.index = 7;
        let (mut st, mut out) = (State::default(), Vec::new());
        on(&mut st, &spec, b"INFO {}", &mut out);
        let sent = String::from_utf8_lossy(&out).into_owned();
        assert!(sent.contains("SUB _INBOX.ack.7.> 2\r\n"), "{sent}");
        on(&mut st, &spec, b"MSG _INBOX.u7.api 1 2", &mut out);
        assert_eq!(on(&mut st, &spec, b"{}", &mut out), Event::Ready);
        out.clear();
        NatsJs::publish(&mut out, Target::Room("room"), b"7.1.9");
        assert_eq!(out, b"PUB room _INBOX.ack.7.room 5\r\n7.1.9\r\n");
        // nats-server 2.9 writes an empty reply subject: two spaces.
        on(&mut st, &spec, b"MSG _INBOX.ack.7.room 2  26", &mut out);
        let ack = br#"{"stream":"room","seq":1}"#;
        assert_eq!(on(&mut st, &spec, ack, &mut out), Event::Accepted);
        on(&mut st, &spec, b"MSG _INBOX.ack.7.room 2 40", &mut out);
        let refused = br#"{"error":{"code":503,"description":"x"}}"#;
        assert_eq!(on(&mut st, &spec, refused, &mut out), Event::Err(refused));
    }

    #[test]
    fn a_refused_stream_ends_the_handshake() {
        let spec = ClientSpec::for_test("u1", &["room"], false, false);
        let (mut st, mut out) = (State::default(), Vec::new());
        on(&mut st, &spec, b"INFO {}", &mut out);
        on(&mut st, &spec, b"MSG _INBOX.u1.api 1 40", &mut out);
        let refused = br#"{"error":{"code":400,"err_code":10058}}"#;
        assert_eq!(on(&mut st, &spec, refused, &mut out), Event::Fatal(refused));
    }
}
