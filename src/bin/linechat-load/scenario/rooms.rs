//! Many small rooms plus direct conversations at a fixed total rate: the
//! "normal chat" mix. Client i is in room i / K; clients 2j and 2j+1 are a
//! direct-message pair (on linechat they befriend each other first).

use super::measured::Measured;
use super::{Progress, Settings, Window, drain, timeout_until, traffic_metrics};
use crate::clock::Clock;
use crate::engine::{Engine, Note, Status};
use crate::payload;
use crate::proto::{Event, Protocol, Target};
use crate::report::Report;
use serde_json::{Map, json};
use std::io;
use std::time::{Duration, Instant};

pub fn run<P: Protocol>(
    s: &Settings,
    clock: Clock,
    rooms: usize,
    room_size: usize,
    rate: f64,
    direct_ratio: f64,
) -> io::Result<Report> {
    let (mut engine, k) = room_members::<P>(s, clock, rooms, room_size, true, "rooms", 2)?;
    let n = engine.clients.len();
    let direct_ratio = if direct_ratio > 0.0 && !befriend(s, &mut engine)? {
        eprintln!("[rooms] server has no FRIEND command: rooms only");
        0.0
    } else {
        direct_ratio.clamp(0.0, 1.0)
    };
    let mut params = Map::new();
    params.insert("rooms".into(), rooms.into());
    params.insert("room_size".into(), k.into());
    params.insert("rate".into(), json!(rate));
    params.insert("direct_ratio".into(), json!(direct_ratio));
    let mut report = s.report(P::NAME, "rooms", params);

    let names: Vec<String> = engine.clients.iter().map(|c| c.spec.name.clone()).collect();
    let room_names: Vec<String> = (0..rooms.max(1)).map(|r| s.room(r)).collect();
    let mut rx = Receiver {
        m: Measured::new(n, P::ACKS),
    };
    let mut window = Window::new(s);
    let mut progress = Progress::new();
    let mut scratch = Vec::with_capacity(s.bytes);
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut next_due = Instant::now();
    let (mut tick, mut direct_acc) = (0u64, 0.0f64);
    loop {
        let now = Instant::now();
        if now >= window.end {
            break;
        }
        if window.warmup_done(now) {
            rx.m.open();
        }
        while next_due <= now {
            next_due += interval;
            tick += 1;
            let from = (tick as usize) % n;
            if engine.clients[from].status != Status::Ready {
                continue;
            }
            // Spread direct messages evenly instead of drawing randomly.
            direct_acc += direct_ratio;
            let peer = from ^ 1;
            let ready = |c: usize| engine.clients[c].status == Status::Ready;
            let (target, recipients) = if direct_acc >= 1.0 && peer < n {
                direct_acc -= 1.0;
                (Target::User(&names[peer]), u64::from(ready(peer)))
            } else {
                let first = from / k * k;
                let members = (first..first + k)
                    .filter(|&c| c != from && ready(c))
                    .count();
                (Target::Room(&room_names[from / k]), members as u64)
            };
            let (seq, ts) = (rx.m.publish(from, recipients), clock.now_ns());
            engine.send(from, |out| {
                scratch.clear();
                payload::write(&mut scratch, s.bytes, from as u64, seq, ts);
                P::publish(out, target, &scratch);
            });
        }
        let timeout = timeout_until(next_due.min(window.end), Duration::from_millis(10));
        engine.poll_once(timeout, &mut |i, note, t| rx.on(i, note, t))?;
        progress.tick("rooms", &rx.m.arrived);
    }
    rx.m.close();
    let settled = drain(&mut engine, &mut rx, Receiver::on, |rx| rx.m.settled())?;
    progress.done();
    engine.close_all();
    traffic_metrics(&mut report, P::ACKS, &rx.m.counts, window.secs(), settled);
    report.latency(&rx.m.hist);
    Ok(report)
}

/// `rooms` rooms of `room_size` members, every one a publisher, client i
/// in room i / K, connected and logged in (at least `need` of them; with
/// direct-message inboxes if `inbox`); returns the engine and K.
pub(super) fn room_members<P: Protocol>(
    s: &Settings,
    clock: Clock,
    rooms: usize,
    room_size: usize,
    inbox: bool,
    label: &str,
    need: usize,
) -> io::Result<(Engine<P>, usize)> {
    let k = room_size.max(1);
    let n = rooms.max(1) * k;
    let specs = (0..n)
        .map(|i| s.client(i, vec![s.room(i / k)], true, inbox))
        .collect();
    let mut engine = Engine::<P>::new(s.addrs(), s.wire.clone(), specs, clock)?;
    s.establish(&mut engine, 0..n, label, need)?;
    Ok((engine, k))
}

/// Makes each pair (2j, 2j+1) friends where the protocol requires it.
/// Returns false if the server does not know the FRIEND command.
fn befriend<P: Protocol>(s: &Settings, engine: &mut Engine<P>) -> io::Result<bool> {
    let n = engine.clients.len();
    for side in 0..2 {
        let mut pending = 0usize;
        for i in (side..n).step_by(2) {
            let peer = i ^ 1;
            if peer >= n || engine.clients[i].status != Status::Ready {
                continue;
            }
            let name = engine.clients[peer].spec.name.clone();
            let mut needed = false;
            engine.send(i, |out| {
                needed = if side == 0 {
                    P::friend_add(out, &name)
                } else {
                    P::friend_accept(out, &name)
                };
            });
            if !needed {
                return Ok(true);
            }
            pending += 1;
        }
        let (mut unknown, mut failed) = (false, 0usize);
        let deadline = Instant::now() + s.handshake_timeout;
        while pending > 0 && Instant::now() < deadline {
            engine.poll_once(Duration::from_millis(50), &mut |_, note, _| match note {
                Note::Event(Event::Ok(_)) => pending -= 1,
                Note::Event(Event::Err(l)) => {
                    pending -= 1;
                    failed += 1;
                    unknown |= l.windows(15).any(|w| w == b"UNKNOWN_COMMAND");
                    if failed <= 3 {
                        log::warn!("friend setup: {}", String::from_utf8_lossy(l));
                    }
                }
                Note::Closed => pending -= 1,
                _ => {}
            })?;
        }
        if unknown {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Receive-side bookkeeping where every client may publish and receive
/// (rooms, durable): a client's own messages are not deliveries.
pub(super) struct Receiver {
    pub(super) m: Measured,
}

impl Receiver {
    pub(super) fn on(&mut self, i: usize, note: Note<'_>, now: u64) {
        match note {
            Note::Event(Event::Delivered(p)) => {
                // Redis delivers a room message to its own sender too.
                if let Some((from, seq, ns)) = payload::parse(p)
                    && from as usize != i
                {
                    self.m.delivered(from as usize, seq, now.saturating_sub(ns));
                }
            }
            Note::Event(Event::Accepted) => self.m.accepted(i),
            Note::Event(Event::Err(l)) => self.m.rejected(i, l),
            Note::Closed => self.m.closed(),
            _ => {}
        }
    }
}
