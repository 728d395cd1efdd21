//! IRC (RFC 1459/2812 as spoken by InspIRCd and ngIRCd): register with
//! NICK/USER, wait for 001, JOIN, wait for 366 per channel. PRIVMSG is not
//! echoed to its sender and has no reply, so publishes are counted as sent.

use super::{ClientSpec, Event, Protocol, Target, last_word};

#[derive(Default)]
pub enum State {
    #[default]
    Registering,
    Joining(usize),
    Ready,
}

pub struct Irc;

/// Splits `:prefix COMMAND rest` into (COMMAND, rest); lines without a
/// prefix give (first word, rest).
fn command(line: &[u8]) -> (&[u8], &[u8]) {
    let body = if line.first() == Some(&b':') {
        match line.iter().position(|&b| b == b' ') {
            Some(i) => &line[i + 1..],
            None => &[],
        }
    } else {
        line
    };
    match body.iter().position(|&b| b == b' ') {
        Some(i) => (&body[..i], &body[i + 1..]),
        None => (body, &[]),
    }
}

impl Protocol for Irc {
    type State = State;
    const NAME: &'static str = "irc";
    const ACKS: bool = false;
    const PUBLISHER_JOINS: bool = true;

    fn on_connect(_st: &mut State, spec: &ClientSpec, out: &mut Vec<u8>) {
        let n = &spec.name;
        out.extend_from_slice(format!("NICK {n}\r\nUSER {n} 0 * :{n}\r\n").as_bytes());
    }

    fn on_line<'a>(
        st: &mut State,
        spec: &ClientSpec,
        line: &'a [u8],
        out: &mut Vec<u8>,
    ) -> Event<'a> {
        let (cmd, rest) = command(line);
        match cmd {
            b"PRIVMSG" => {
                return match st {
                    State::Ready => {
                        let w = last_word(rest);
                        Event::Delivered(w.strip_prefix(b":").unwrap_or(w))
                    }
                    _ => Event::Ignore,
                };
            }
            b"PING" => {
                out.extend_from_slice(b"PONG ");
                out.extend_from_slice(rest);
                out.extend_from_slice(b"\r\n");
                return Event::Ignore;
            }
            b"ERROR" => return Event::Fatal(line),
            _ => {}
        }
        match st {
            State::Registering if cmd == b"001" => {
                if spec.rooms.is_empty() {
                    *st = State::Ready;
                    return Event::Ready;
                }
                if let Some(oper) = &spec.irc_oper {
                    let n = &spec.name;
                    out.extend_from_slice(format!("OPER {oper}\r\nMODE {n} +F\r\n").as_bytes());
                }
                let chans: Vec<String> = spec.rooms.iter().map(|r| format!("#{r}")).collect();
                out.extend_from_slice(format!("JOIN {}\r\n", chans.join(",")).as_bytes());
                *st = State::Joining(spec.rooms.len());
                Event::Ignore
            }
            State::Joining(n) if cmd == b"366" => {
                *n -= 1;
                if *n == 0 {
                    *st = State::Ready;
                    return Event::Ready;
                }
                Event::Ignore
            }
            // 4xx/5xx numerics are errors; before Ready they end the client.
            _ if cmd.len() == 3 && matches!(cmd[0], b'4' | b'5') => match st {
                State::Ready => Event::Err(line),
                _ => Event::Fatal(line),
            },
            _ => Event::Ignore,
        }
    }

    fn publish(out: &mut Vec<u8>, target: Target<'_>, payload: &[u8]) {
        out.extend_from_slice(b"PRIVMSG ");
        match target {
            Target::Room(r) => {
                out.push(b'#');
                out.extend_from_slice(r.as_bytes());
            }
            Target::User(u) => out.extend_from_slice(u.as_bytes()),
        }
        out.extend_from_slice(b" :");
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_and_delivery() {
        let spec = ClientSpec::for_test("u7", &["a", "b"], false, false);
        let (mut st, mut out) = (State::default(), Vec::new());
        Irc::on_connect(&mut st, &spec, &mut out);
        assert_eq!(out, b"NICK u7\r\nUSER u7 0 * :u7\r\n");
        out.clear();
        Irc::on_line(&mut st, &spec, b"PING :abc", &mut out);
        assert_eq!(out, b"PONG :abc\r\n");
        out.clear();
        Irc::on_line(&mut st, &spec, b":irc.local 001 u7 :Welcome", &mut out);
        assert_eq!(out, b"JOIN #a,#b\r\n");
        let end = b":irc.local 366 u7 #a :End of /NAMES list.";
        assert_eq!(Irc::on_line(&mut st, &spec, end, &mut out), Event::Ignore);
        assert_eq!(Irc::on_line(&mut st, &spec, end, &mut out), Event::Ready);
        let msg = b":u1!u1@127.0.0.1 PRIVMSG #a :1.2.3.xyz";
        assert_eq!(
            Irc::on_line(&mut st, &spec, msg, &mut out),
            Event::Delivered(b"1.2.3.xyz")
        );
        let err = b":irc.local 404 u7 #c :Cannot send to channel";
        assert_eq!(Irc::on_line(&mut st, &spec, err, &mut out), Event::Err(err));
    }
}
