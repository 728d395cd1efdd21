//! linechat: LF-terminated text lines, server greets first, argon2-hashed
//! REGISTER (falls back to LOGIN when the user exists), `SAY` acked by `OK SAY`.

use super::{ClientSpec, Event, Protocol, Target, last_word};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Default)]
pub enum State {
    #[default]
    Greeting,
    Registering,
    LoggingIn,
    Joining(usize),
    Ready,
}

pub struct Linechat;

fn send_joins(spec: &ClientSpec, out: &mut Vec<u8>) -> State {
    for r in &spec.rooms {
        out.extend_from_slice(b"JOIN #");
        out.extend_from_slice(r.as_bytes());
        out.push(b'\n');
    }
    if spec.rooms.is_empty() {
        State::Ready
    } else {
        State::Joining(spec.rooms.len())
    }
}

fn line_cmd(out: &mut Vec<u8>, words: &[&str]) {
    out.extend_from_slice(words.join(" ").as_bytes());
    out.push(b'\n');
}

impl Protocol for Linechat {
    type State = State;
    const NAME: &'static str = "linechat";
    const ACKS: bool = true;
    const PUBLISHER_JOINS: bool = true;

    fn on_connect(_st: &mut State, _spec: &ClientSpec, _out: &mut Vec<u8>) {}

    fn on_line<'a>(
        st: &mut State,
        spec: &ClientSpec,
        line: &'a [u8],
        out: &mut Vec<u8>,
    ) -> Event<'a> {
        if line.starts_with(b"MSG ") {
            // Before Ready these can only be room history: not ours to count.
            return match st {
                State::Ready => Event::Delivered(last_word(line)),
                _ => Event::Ignore,
            };
        }
        if line.starts_with(b"OK SAY ") {
            return Event::Accepted;
        }
        let is_ok = line.starts_with(b"OK ");
        let is_err = line.starts_with(b"ERR ");
        match st {
            State::Ready => {
                if is_ok {
                    Event::Ok(line)
                } else if is_err {
                    Event::Err(line)
                } else {
                    Event::Ignore
                }
            }
            State::Greeting if line.starts_with(b"HELLO ") => {
                line_cmd(out, &["REGISTER", &spec.name, &spec.password]);
                *st = State::Registering;
                Event::Ignore
            }
            State::Registering if line.starts_with(b"ERR USER_EXISTS") => {
                line_cmd(out, &["LOGIN", &spec.name, &spec.password]);
                *st = State::LoggingIn;
                Event::Ignore
            }
            State::Registering | State::LoggingIn if is_ok => {
                *st = send_joins(spec, out);
                ready_if(st)
            }
            // Membership outlives sessions, so a re-used user may be in already.
            State::Joining(n)
                if line.starts_with(b"OK JOIN ") || line.starts_with(b"ERR ALREADY_MEMBER") =>
            {
                *n -= 1;
                if *n == 0 {
                    *st = State::Ready;
                }
                ready_if(st)
            }
            _ if is_err => Event::Fatal(line),
            _ => Event::Ignore,
        }
    }

    fn publish(out: &mut Vec<u8>, target: Target<'_>, payload: &[u8]) {
        match target {
            Target::Room(r) => {
                out.extend_from_slice(b"SAY #");
                out.extend_from_slice(r.as_bytes());
            }
            Target::User(u) => {
                out.extend_from_slice(b"SAY @");
                out.extend_from_slice(u.as_bytes());
            }
        }
        out.push(b' ');
        out.extend_from_slice(payload);
        out.push(b'\n');
    }

    fn friend_add(out: &mut Vec<u8>, user: &str) -> bool {
        line_cmd(out, &["FRIEND", "ADD", user]);
        true
    }

    fn friend_accept(out: &mut Vec<u8>, user: &str) -> bool {
        line_cmd(out, &["FRIEND", "ACCEPT", user]);
        true
    }
}

fn ready_if<'a>(st: &State) -> Event<'a> {
    match st {
        State::Ready => Event::Ready,
        _ => Event::Ignore,
    }
}

/// Asks the server for its `STATS` counters over a short blocking side
/// connection (logging in first if anonymous STATS is refused). Returns None
/// when the server has no STATS command.
pub fn fetch_stats(addr: SocketAddr, user: &str, password: &str) -> Option<Vec<(String, String)>> {
    let timeout = Duration::from_secs(5);
    let stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    let mut w = stream.try_clone().ok()?;
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).ok()?; // greeting
    let mut logged_in = false;
    w.write_all(b"STATS\n").ok()?;
    let mut stats = Vec::new();
    // Bounded: a STATS answer is a few dozen lines.
    for _ in 0..10_000 {
        line.clear();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end();
        if let Some(kv) = l.strip_prefix("STAT ") {
            let (k, v) = kv.split_once(' ').unwrap_or((kv, ""));
            stats.push((k.to_string(), v.to_string()));
        } else if l.starts_with("OK STATS") {
            return Some(stats);
        } else if l.starts_with("ERR UNKNOWN_COMMAND") {
            return None;
        } else if l.starts_with("ERR ") && !logged_in {
            logged_in = true;
            writeln!(w, "LOGIN {user} {password}\nSTATS").ok()?;
        } else if l.starts_with("ERR ") {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ClientSpec {
        ClientSpec {
            index: 2,
            name: "u1_2".into(),
            password: "secret-pass".into(),
            rooms: vec!["r1".into()],
            inbox: false,
            publishes: true,
            irc_oper: None,
        }
    }

    #[test]
    fn handshake_with_existing_user() {
        let (spec, mut st, mut out) = (spec(), State::default(), Vec::new());
        assert_eq!(
            Linechat::on_line(&mut st, &spec, b"HELLO linechat 0.1", &mut out),
            Event::Ignore
        );
        assert_eq!(out, b"REGISTER u1_2 secret-pass\n");
        out.clear();
        Linechat::on_line(&mut st, &spec, b"ERR USER_EXISTS u1_2", &mut out);
        assert_eq!(out, b"LOGIN u1_2 secret-pass\n");
        out.clear();
        Linechat::on_line(&mut st, &spec, b"OK LOGIN u1_2", &mut out);
        assert_eq!(out, b"JOIN #r1\n");
        assert_eq!(
            Linechat::on_line(&mut st, &spec, b"OK SYNC 0", &mut out),
            Event::Ignore
        );
        let hist = b"MSG #r1 1 m1 bob 2024-01-01T00:00:00Z old";
        assert_eq!(
            Linechat::on_line(&mut st, &spec, hist, &mut out),
            Event::Ignore
        );
        let ev = Linechat::on_line(&mut st, &spec, b"ERR ALREADY_MEMBER #r1", &mut out);
        assert_eq!(ev, Event::Ready);
        let msg = b"MSG #r1 2 m2 bob 2024-01-01T00:00:00Z 1.2.3.xx";
        let ev = Linechat::on_line(&mut st, &spec, msg, &mut out);
        assert_eq!(ev, Event::Delivered(b"1.2.3.xx"));
        let ev = Linechat::on_line(&mut st, &spec, b"OK SAY #r1 5 m5", &mut out);
        assert_eq!(ev, Event::Accepted);
    }
}
