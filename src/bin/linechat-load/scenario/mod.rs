//! Scenarios: who connects as what, what they send, what is measured.

mod broadcast;
mod connections;
mod durable;
mod measured;
mod rooms;

use crate::Scenario;
use crate::clock::Clock;
use crate::engine::{Engine, Note};
use crate::proto::{ClientSpec, Protocol, linechat};
use crate::report::{self, Report, Target};
use crate::wire::Wire;
use serde_json::{Map, Value};
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

pub struct Settings {
    pub addr: SocketAddr,
    /// More nodes of the same cluster: clients are shared out over `addr`
    /// and these, round robin.
    pub also_addrs: Vec<SocketAddr>,
    /// What every connection travels in (TCP, TLS, WebSocket).
    pub wire: Wire,
    /// Where STATS is asked, over plain TCP.
    pub stats_addr: SocketAddr,
    pub duration: Duration,
    pub warmup: Duration,
    pub handshake_timeout: Duration,
    pub concurrency: usize,
    pub bytes: usize,
    pub server_pid: Option<u32>,
    pub tag: String,
    pub irc_oper: Option<String>,
}

impl Settings {
    /// Every address clients connect to, `addr` first.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        std::iter::once(self.addr)
            .chain(self.also_addrs.iter().copied())
            .collect()
    }

    pub fn client(
        &self,
        idx: usize,
        rooms: Vec<String>,
        publishes: bool,
        inbox: bool,
    ) -> ClientSpec {
        ClientSpec {
            index: idx,
            name: format!("u{}_{idx}", self.tag),
            password: format!("pw-{}-load", self.tag),
            rooms,
            inbox,
            publishes,
            irc_oper: if publishes {
                self.irc_oper.clone()
            } else {
                None
            },
        }
    }

    /// Room names carry the run tag so a new run never sees old history.
    pub fn room(&self, n: usize) -> String {
        format!("r{}_{n}", self.tag)
    }

    fn report(&self, proto: &str, scenario: &str, params: Map<String, Value>) -> Report {
        let mut params = params;
        params.insert("bytes".into(), self.bytes.into());
        params.insert("duration_s".into(), self.duration.as_secs_f64().into());
        params.insert("warmup_s".into(), self.warmup.as_secs_f64().into());
        params.insert("wire".into(), self.wire.name().into());
        Report {
            scenario: scenario.to_string(),
            target: Target {
                proto: proto.to_string(),
                addr: self.addr.to_string(),
            },
            params,
            metrics: Vec::new(),
        }
    }

    /// Connects and handshakes the clients of `engine` in `range`; fails if
    /// fewer than `need` made it.
    fn establish<P: Protocol>(
        &self,
        engine: &mut Engine<P>,
        range: Range<usize>,
        label: &str,
        need: usize,
    ) -> io::Result<usize> {
        let deadline = Instant::now() + self.handshake_timeout;
        let ready = engine.establish(range, label, self.concurrency, deadline)?;
        if ready < need {
            return Err(io::Error::other(format!(
                "only {ready} clients ready, need {need}"
            )));
        }
        Ok(ready)
    }
}

pub fn run<P: Protocol>(s: &Settings, sc: &Scenario) -> io::Result<Report> {
    let clock = Clock::new();
    let rss_before = s.server_pid.and_then(report::vm_rss_kib);
    let broadcast = matches!(sc, Scenario::Fanout { .. } | Scenario::Latency { .. });
    if P::BROADCAST_ONLY && !broadcast {
        return Err(io::Error::other(format!(
            "--proto {} runs only the fanout and latency scenarios",
            P::NAME
        )));
    }
    let mut report = match *sc {
        Scenario::Fanout {
            subscribers,
            publishers,
            window,
        } => {
            let pace = broadcast::Pace::Window(window);
            broadcast::run::<P>(s, clock, "fanout", subscribers, publishers, pace)?
        }
        Scenario::Latency {
            subscribers,
            publishers,
            rate,
        } => {
            let pace = broadcast::Pace::Rate(rate);
            broadcast::run::<P>(s, clock, "latency", subscribers, publishers, pace)?
        }
        Scenario::Rooms {
            rooms,
            room_size,
            rate,
            direct_ratio,
        } => rooms::run::<P>(s, clock, rooms, room_size, rate, direct_ratio)?,
        Scenario::Durable {
            rooms,
            room_size,
            window,
        } => durable::run::<P>(s, clock, rooms, room_size, window)?,
        Scenario::Connections {
            connections,
            room_size,
            hold,
        } => connections::run::<P>(s, clock, connections, room_size, hold, rss_before)?,
    };
    if let Some(pid) = s.server_pid {
        report.metric("server_rss_before_kib", rss_before);
        report.metric("server_rss_end_kib", report::vm_rss_kib(pid));
    }
    if P::NAME == "linechat" {
        let user = s.client(0, Vec::new(), false, false);
        match linechat::fetch_stats(s.stats_addr, &user.name, &user.password) {
            Some(stats) => {
                for (k, v) in stats {
                    let v = match (v.parse::<i64>(), v.parse::<f64>()) {
                        (Ok(i), _) => Value::from(i),
                        (_, Ok(f)) => Value::from(f),
                        _ => Value::String(v),
                    };
                    report.metric(&format!("server.{k}"), v);
                }
            }
            None => log::info!("server has no STATS"),
        }
    }
    Ok(report)
}

/// Measurement window: warm-up, then `duration` of counted traffic.
pub struct Window {
    pub measure_from: Instant,
    pub end: Instant,
    started: bool,
}

impl Window {
    pub fn new(s: &Settings) -> Self {
        let now = Instant::now();
        Window {
            measure_from: now + s.warmup,
            end: now + s.warmup + s.duration,
            started: false,
        }
    }

    /// True exactly once, when the warm-up is over (time to reset counters).
    pub fn warmup_done(&mut self, now: Instant) -> bool {
        if !self.started && now >= self.measure_from {
            self.started = true;
            return true;
        }
        false
    }

    pub fn secs(&self) -> f64 {
        self.end
            .saturating_duration_since(self.measure_from)
            .as_secs_f64()
    }
}

/// Counters shared by the traffic scenarios (see `measured` for what counts).
#[derive(Default, Clone, Copy)]
pub struct Counts {
    pub published: u64,
    pub delivered: u64,
    pub errors: u64,
    pub closed: u64,
}

impl Counts {
    pub fn since(&self, base: &Counts) -> Counts {
        Counts {
            published: self.published - base.published,
            delivered: self.delivered - base.delivered,
            errors: self.errors - base.errors,
            closed: self.closed - base.closed,
        }
    }
}

/// Per-second progress: rates since the last line.
pub struct Progress {
    ticker: report::Ticker,
    start: Instant,
    last: Counts,
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            ticker: report::Ticker::new(),
            start: Instant::now(),
            last: Counts::default(),
        }
    }

    pub fn tick(&mut self, label: &str, c: &Counts) {
        if self.ticker.due() {
            let d = c.since(&self.last);
            let t = self.start.elapsed().as_secs_f64();
            eprint!(
                "\r[{label}] {t:.1}s pub {}/s recv {}/s err {} closed {}   ",
                d.published, d.delivered, c.errors, c.closed
            );
            self.last = *c;
        }
    }

    pub fn done(&self) {
        eprintln!();
    }
}

/// Common traffic metrics for the table; `settled`: the drain saw every
/// measured publish answered and delivered (if not, the server was more
/// than the drain behind, or lost messages).
pub fn traffic_metrics(r: &mut Report, acks: bool, c: &Counts, secs: f64, settled: bool) {
    r.metric(
        "published_counted_as",
        if acks { "server acks" } else { "sent" },
    );
    r.metric("published", c.published);
    r.metric("delivered", c.delivered);
    r.rate("published_per_s", c.published, secs);
    r.rate("delivered_per_s", c.delivered, secs);
    r.metric("errors", c.errors);
    r.metric("disconnects", c.closed);
    r.metric("settled", settled);
}

/// How long a traffic scenario waits after its window for the replies and
/// deliveries of the publishes it measured.
const DRAIN: Duration = Duration::from_secs(2);

/// After the window: feeds `on` until `settled` (every measured publish
/// answered and delivered) or `DRAIN` has passed; returns whether settled.
pub fn drain<P: Protocol, R>(
    engine: &mut Engine<P>,
    rx: &mut R,
    on: impl Fn(&mut R, usize, Note<'_>, u64),
    settled: impl Fn(&R) -> bool,
) -> io::Result<bool> {
    let end = Instant::now() + DRAIN;
    while !settled(rx) {
        if Instant::now() >= end {
            return Ok(false);
        }
        let timeout = timeout_until(end, Duration::from_millis(50));
        engine.poll_once(timeout, &mut |i, n, t| on(rx, i, n, t))?;
    }
    Ok(true)
}

/// Poll timeout that never oversleeps `until`, and never exceeds `cap`.
pub fn timeout_until(until: Instant, cap: Duration) -> Duration {
    until.saturating_duration_since(Instant::now()).min(cap)
}
