//! One room, P publishers, S subscribers. `fanout` publishes as fast as the
//! server takes it under a per-publisher window; `latency` at a fixed rate.

use super::measured::Measured;
use super::{Progress, Settings, Window, drain, timeout_until, traffic_metrics};
use crate::clock::Clock;
use crate::engine::{Engine, Note, OUT_HIGH_WATER, Status};
use crate::payload;
use crate::proto::{Event, Protocol, Target};
use crate::report::{CpuSample, Report};
use serde_json::{Map, json};
use std::io;
use std::time::{Duration, Instant};

pub enum Pace {
    /// Max messages a publisher may be ahead of its slowest subscriber.
    Window(u64),
    /// Total messages per second.
    Rate(f64),
}

pub fn run<P: Protocol>(
    s: &Settings,
    clock: Clock,
    label: &str,
    subscribers: usize,
    publishers: usize,
    pace: Pace,
) -> io::Result<Report> {
    let np = publishers.max(1);
    let room = s.room(0);
    let pub_rooms = if P::PUBLISHER_JOINS {
        vec![room.clone()]
    } else {
        Vec::new()
    };
    // Publishers first, so index < np is a publisher and the rest subscribers.
    let specs = (0..np)
        .map(|i| s.client(i, pub_rooms.clone(), true, false))
        .chain((np..np + subscribers).map(|i| s.client(i, vec![room.clone()], false, false)))
        .collect();
    let mut engine = Engine::<P>::new(s.addrs(), s.wire.clone(), specs, clock)?;
    s.establish(&mut engine, 0..np + subscribers, label, np + 1)?;
    let mut params = Map::new();
    params.insert("subscribers".into(), subscribers.into());
    params.insert("publishers".into(), np.into());
    match pace {
        Pace::Window(w) => params.insert("window".into(), w.into()),
        Pace::Rate(r) => params.insert("rate".into(), json!(r)),
    };
    let mut report = s.report(P::NAME, label, params);
    if engine.clients[..np]
        .iter()
        .any(|c| c.status != Status::Ready)
    {
        return Err(io::Error::other("a publisher failed to connect"));
    }
    let live_subs = engine.clients[np..]
        .iter()
        .filter(|c| c.status == Status::Ready)
        .count();
    report.metric("subscribers_ready", live_subs);

    let mut rx = Receiver {
        np,
        seen: vec![0; subscribers * np],
        m: Measured::new(np, P::ACKS),
    };
    let recipients = live_subs as u64;
    let mut min_seen = vec![0u64; np];
    let mut scratch = Vec::with_capacity(s.bytes);
    let mut progress = Progress::new();
    let mut window = Window::new(s);
    let interval = match pace {
        Pace::Rate(r) => Duration::from_secs_f64(1.0 / r.max(0.001)),
        Pace::Window(_) => Duration::ZERO,
    };
    let mut next_due = Instant::now();
    let mut rr = 0usize;
    let mut cpu_at_open = None;

    loop {
        let now = Instant::now();
        if now >= window.end {
            break;
        }
        if window.warmup_done(now) {
            rx.m.open();
            cpu_at_open = Some(CpuSample::take(s.server_pid));
        }
        match pace {
            Pace::Window(w) => {
                let ahead = |m: &Measured, p: usize, min: u64| m.sent(p) - min;
                let limited = (0..np).any(|p| ahead(&rx.m, p, min_seen[p]) >= w);
                if limited {
                    min_seen.fill(u64::MAX);
                    for (sub, row) in rx.seen.chunks(np).enumerate() {
                        if engine.clients[np + sub].status == Status::Ready {
                            for (m, &v) in min_seen.iter_mut().zip(row) {
                                *m = (*m).min(v);
                            }
                        }
                    }
                    if min_seen[0] == u64::MAX {
                        return Err(io::Error::other("all subscribers disconnected"));
                    }
                }
                for (p, &min) in min_seen.iter().enumerate() {
                    let c = &engine.clients[p];
                    if c.status != Status::Ready || c.pending_out() >= OUT_HIGH_WATER {
                        continue;
                    }
                    let mut budget = w.saturating_sub(ahead(&rx.m, p, min));
                    let ts = clock.now_ns();
                    let m = &mut rx.m;
                    engine.send(p, |out| {
                        while budget > 0 && out.len() < OUT_HIGH_WATER {
                            let seq = m.publish(p, recipients);
                            scratch.clear();
                            payload::write(&mut scratch, s.bytes, p as u64, seq, ts);
                            P::publish(out, Target::Room(&room), &scratch);
                            budget -= 1;
                        }
                    });
                }
            }
            Pace::Rate(_) => {
                while next_due <= now {
                    next_due += interval;
                    let p = rr % np;
                    rr += 1;
                    if engine.clients[p].status != Status::Ready {
                        continue;
                    }
                    let (seq, ts) = (rx.m.publish(p, recipients), clock.now_ns());
                    engine.send(p, |out| {
                        scratch.clear();
                        payload::write(&mut scratch, s.bytes, p as u64, seq, ts);
                        P::publish(out, Target::Room(&room), &scratch);
                    });
                }
            }
        }
        let cap = Duration::from_millis(10);
        let timeout = match pace {
            Pace::Rate(_) => timeout_until(next_due.min(window.end), cap),
            Pace::Window(_) => timeout_until(window.end, cap),
        };
        engine.poll_once(timeout, &mut |i, n, t| rx.on(i, n, t))?;
        progress.tick(label, &rx.m.arrived);
    }
    rx.m.close();
    let cpu_at_close = CpuSample::take(s.server_pid);
    let settled = drain(&mut engine, &mut rx, Receiver::on, |rx| rx.m.settled())?;
    progress.done();
    engine.close_all();
    traffic_metrics(&mut report, P::ACKS, &rx.m.counts, window.secs(), settled);
    let deliverable = rx.m.deliverable();
    if deliverable > 0 {
        let fan = rx.m.counts.delivered as f64 / deliverable as f64;
        report.metric("deliveries_per_publish", (fan * 10.0).round() / 10.0);
    }
    if let Some(open) = cpu_at_open {
        // What the server spends per delivery, all threads together: the
        // per-recipient cost of a wire (TLS encryption, WebSocket framing)
        // shows as the difference between runs on two wires.
        let used_by = cpu_at_close.report_since(&open, window.secs(), &mut report);
        let all = used_by.iter().find(|(name, _)| name == "all");
        let delivered = rx.m.counts.delivered;
        if let Some((_, used)) = all.filter(|_| delivered > 0) {
            let ns = used * 1e9 / delivered as f64;
            report.metric("server_cpu_ns_per_delivery", ns.round());
        }
    }
    report.latency(&rx.m.hist);
    Ok(report)
}

/// Receive-side bookkeeping, fed by the engine.
struct Receiver {
    np: usize,
    /// Highest sequence number each subscriber has seen from each publisher.
    seen: Vec<u64>,
    m: Measured,
}

impl Receiver {
    fn on(&mut self, i: usize, note: Note<'_>, now: u64) {
        match note {
            Note::Event(Event::Delivered(p)) if i >= self.np => {
                if let Some((pid, seq, ns)) = payload::parse(p)
                    && (pid as usize) < self.np
                {
                    let slot = &mut self.seen[(i - self.np) * self.np + pid as usize];
                    *slot = (*slot).max(seq);
                    self.m.delivered(pid as usize, seq, now.saturating_sub(ns));
                }
            }
            Note::Event(Event::Accepted) => self.m.accepted(i),
            Note::Event(Event::Err(l)) => self.m.rejected(i, l),
            Note::Closed => self.m.closed(),
            _ => {}
        }
    }
}
