//! C idle logged-in sessions in rooms of K: how fast they log in and how
//! much server memory each one costs.

use super::Settings;
use crate::clock::Clock;
use crate::engine::{Engine, Note};
use crate::proto::Protocol;
use crate::report::{self, Report};
use serde_json::{Map, json};
use std::io;
use std::time::{Duration, Instant};

pub fn run<P: Protocol>(
    s: &Settings,
    clock: Clock,
    connections: usize,
    room_size: usize,
    hold: f64,
    rss_before: Option<u64>,
) -> io::Result<Report> {
    let k = room_size.max(1);
    let specs = (0..connections)
        .map(|i| s.client(i, vec![s.room(i / k)], false, false))
        .collect();
    let mut engine = Engine::<P>::new(s.addrs(), s.wire.clone(), specs, clock)?;
    // In two halves: a server's first sessions can carry one-off costs
    // (caches, pools, hashing buffers), so the second half's RSS growth is
    // reported too, as the marginal cost of one more session.
    let half = connections / 2;
    let started = Instant::now();
    let first = s.establish(&mut engine, 0..half, "connections", 0)?;
    let rss_half = s.server_pid.and_then(report::vm_rss_kib);
    let second = s.establish(&mut engine, half..connections, "connections", 1)?;
    let ready = first + second;
    let took = started.elapsed().as_secs_f64();
    let rss_after = s.server_pid.and_then(report::vm_rss_kib);
    let mut params = Map::new();
    params.insert("connections".into(), connections.into());
    params.insert("room_size".into(), k.into());
    params.insert("hold_s".into(), json!(hold));
    let mut r = s.report(P::NAME, "connections", params);
    r.metric("sessions_ready", ready);
    r.metric("establish_s", (took * 100.0).round() / 100.0);
    r.rate("sessions_per_s", ready as u64, took);

    // Stay connected (answering pings) so idle-session behaviour shows.
    let end = Instant::now() + Duration::from_secs_f64(hold.max(0.0));
    let mut lost = 0u64;
    let mut ticker = report::Ticker::new();
    while Instant::now() < end {
        let timeout = super::timeout_until(end, Duration::from_millis(100));
        engine.poll_once(timeout, &mut |_, note, _| {
            if let Note::Closed = note {
                lost += 1;
            }
        })?;
        if ticker.due() {
            eprint!("\r[connections] holding {ready} sessions, {lost} lost   ");
        }
    }
    eprintln!();
    let rss_held = s.server_pid.and_then(report::vm_rss_kib);
    engine.close_all();
    r.metric("sessions_lost_while_idle", lost);
    if let (Some(b), Some(a)) = (rss_before, rss_after) {
        r.metric("server_rss_after_login_kib", a);
        r.metric("server_rss_after_hold_kib", rss_held);
        let per = a.saturating_sub(b) as f64 / ready.max(1) as f64;
        r.metric("server_kib_per_session", (per * 100.0).round() / 100.0);
    }
    if let (Some(h), Some(a)) = (rss_half, rss_after) {
        let per = a.saturating_sub(h) as f64 / second.max(1) as f64;
        r.metric(
            "server_marginal_kib_per_session",
            (per * 100.0).round() / 100.0,
        );
    }
    Ok(r)
}
