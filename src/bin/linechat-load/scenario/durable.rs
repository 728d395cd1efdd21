//! Durable throughput: N rooms of K members, every member a publisher into
//! its own room as fast as its answers come back (at most W unanswered).
//! Counts answers, deliveries and, on linechat, the messages the storage
//! thread committed in the window (STATS `messages_stored`), with the CPU
//! each server thread used: the storage thread's share per message is the
//! cost of durability.

use super::measured::Measured;
use super::rooms::{Receiver, room_members};
use super::{Progress, Settings, Window, drain, timeout_until, traffic_metrics};
use crate::clock::Clock;
use crate::engine::{Engine, OUT_HIGH_WATER, Status};
use crate::payload;
use crate::proto::{Protocol, Target, linechat};
use crate::report::{CpuSample, Report};
use serde_json::Map;
use std::io;
use std::time::{Duration, Instant};

pub fn run<P: Protocol>(
    s: &Settings,
    clock: Clock,
    rooms: usize,
    room_size: usize,
    window_size: u64,
) -> io::Result<Report> {
    let (mut engine, k) = room_members::<P>(s, clock, rooms, room_size, false, "durable", 1)?;
    let n = engine.clients.len();
    let mut params = Map::new();
    params.insert("rooms".into(), rooms.into());
    params.insert("room_size".into(), k.into());
    params.insert("window".into(), window_size.into());
    let mut report = s.report(P::NAME, "durable", params);
    let room_names: Vec<String> = (0..rooms.max(1)).map(|r| s.room(r)).collect();
    // Recipients per room: the ready members but the sender.
    let ready_in = |e: &Engine<P>, room: usize| {
        e.clients[room * k..(room + 1) * k]
            .iter()
            .filter(|c| c.status == Status::Ready)
            .count() as u64
    };
    let recipients: Vec<u64> = (0..rooms.max(1))
        .map(|r| ready_in(&engine, r).saturating_sub(1))
        .collect();

    let mut rx = Receiver {
        m: Measured::new(n, P::ACKS),
    };
    let mut window = Window::new(s);
    let mut progress = Progress::new();
    let mut scratch = Vec::with_capacity(s.bytes);
    let mut at_open = None;
    loop {
        let now = Instant::now();
        if now >= window.end {
            break;
        }
        if window.warmup_done(now) {
            rx.m.open();
            at_open = Some(Sample::take::<P>(s));
        }
        for p in 0..n {
            let c = &engine.clients[p];
            if c.status != Status::Ready || c.pending_out() >= OUT_HIGH_WATER {
                continue;
            }
            let mut budget = window_size.saturating_sub(rx.m.unanswered(p));
            if !P::ACKS {
                // Without answers there is nothing to wait for: one a turn.
                budget = budget.min(1);
            }
            let ts = clock.now_ns();
            let m = &mut rx.m;
            let room = p / k;
            engine.send(p, |out| {
                while budget > 0 && out.len() < OUT_HIGH_WATER {
                    let seq = m.publish(p, recipients[room]);
                    scratch.clear();
                    payload::write(&mut scratch, s.bytes, p as u64, seq, ts);
                    P::publish(out, Target::Room(&room_names[room]), &scratch);
                    budget -= 1;
                }
            });
        }
        let timeout = timeout_until(window.end, Duration::from_millis(10));
        engine.poll_once(timeout, &mut |i, note, t| rx.on(i, note, t))?;
        progress.tick("durable", &rx.m.arrived);
    }
    let at_close = Sample::take::<P>(s);
    rx.m.close();
    let settled = drain(&mut engine, &mut rx, Receiver::on, |rx| rx.m.settled())?;
    progress.done();
    engine.close_all();
    let secs = window.secs();
    traffic_metrics(&mut report, P::ACKS, &rx.m.counts, secs, settled);
    if let Some(open) = at_open {
        at_close.report_since(&open, secs, &mut report);
    }
    report.latency(&rx.m.hist);
    Ok(report)
}

/// What the server says of itself at one moment: messages committed so
/// far (linechat's STATS), and CPU seconds by thread.
struct Sample {
    stored: Option<u64>,
    cpu: CpuSample,
}

impl Sample {
    fn take<P: Protocol>(s: &Settings) -> Sample {
        let stored = if P::NAME == "linechat" {
            let user = s.client(0, Vec::new(), false, false);
            linechat::fetch_stats(s.stats_addr, &user.name, &user.password).and_then(|stats| {
                let (_, v) = stats.into_iter().find(|(k, _)| k == "messages_stored")?;
                v.parse().ok()
            })
        } else {
            None
        };
        Sample {
            stored,
            cpu: CpuSample::take(s.server_pid),
        }
    }

    /// Committed messages per second, each thread's share of a core, and
    /// the storage thread's CPU per committed message.
    fn report_since(&self, open: &Sample, secs: f64, r: &mut Report) {
        let committed = self
            .stored
            .zip(open.stored)
            .map(|(b, a)| b.saturating_sub(a));
        if let Some(c) = committed {
            r.metric("committed", c);
            r.rate("committed_per_s", c, secs);
        }
        let used_by = self.cpu.report_since(&open.cpu, secs, r);
        let storage = used_by.iter().find(|(name, _)| name == "storage");
        if let Some(((_, used), c)) = storage.zip(committed.filter(|&c| c > 0)) {
            let us = used * 1e6 / c as f64;
            r.metric("storage_cpu_us_per_message", (us * 100.0).round() / 100.0);
        }
    }
}
