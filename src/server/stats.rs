//! Connection counters, per-second rates and the STATS reply.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::chat::{ConvId, IdMap, Seq};
use crate::protocol::driver_lines;

use super::Server;
use super::close::CloseReason;

/// Connection-level counters, read by STATS.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) accepted: u64,
    pub(super) refused: u64,
    pub(super) slow_consumer_drops: u64,
    pub(super) login_timeouts: u64,
    pub(super) bytes_out: u64,
    /// HTTP requests on the WebSocket listeners answered without an
    /// upgrade (pages, `/healthz`, `/metrics`, 404s and refusals).
    pub(super) http_requests: u64,
    /// Flushes that wrote something (one or more writev calls each).
    pub(super) flushes: u64,
    /// Closed sessions and refused connections, per [`CloseReason`].
    pub(super) closed: [u64; CloseReason::ALL.len()],
    /// Storage round times the hub was told of (`Committed::took`).
    pub(super) commit_latency: LatencyBuckets,
    /// From a message's publish to the loop to each write that took it.
    pub(super) delivery_latency: LatencyBuckets,
}

/// How long a message's publish time is kept for the delivery histogram:
/// a delivery later than this is not measured (it shows as a slow
/// consumer's drop or in the outbox gauges instead).
const PUBLISH_KEPT: Duration = Duration::from_secs(10);

/// Publish times of recent messages, for the delivery latency histogram.
/// Bounded by `--metrics-tracked-messages`; past it, new messages are not
/// measured until old ones age out.
#[derive(Debug, Default)]
pub(super) struct PublishTimes {
    at: IdMap<(ConvId, Seq), Instant>,
}

impl PublishTimes {
    /// Notes that `conv`'s messages up to `seq` went out to their sessions
    /// `now`; the first fan-out of a message counts.
    pub(super) fn publish(&mut self, conv: ConvId, seq: Seq, now: Instant, limit: usize) {
        if self.at.len() < limit {
            self.at.entry((conv, seq)).or_insert(now);
        }
    }

    /// When `conv`'s message `seq` was published, if it is tracked.
    pub(super) fn get(&self, conv: ConvId, seq: Seq) -> Option<Instant> {
        self.at.get(&(conv, seq)).copied()
    }

    /// Forgets messages published longer ago than [`PUBLISH_KEPT`].
    fn expire(&mut self, now: Instant) {
        self.at
            .retain(|_, at| now.duration_since(*at) < PUBLISH_KEPT);
    }
}

/// A latency histogram with fixed bounds, as Prometheus wants it: counts
/// per upper bound, the sum and the count. Each observation lands in one
/// bucket; the cumulative counts are summed when the page is written, not
/// on every delivery.
#[derive(Debug, Default)]
pub(super) struct LatencyBuckets {
    /// Observations above the previous bound and at or under each of
    /// [`LATENCY_BOUNDS_US`].
    in_bucket: [u64; LATENCY_BOUNDS_US.len()],
    pub(super) count: u64,
    pub(super) sum_us: u64,
}

/// Bucket upper bounds in microseconds: 100 us to 10 s.
const LATENCY_BOUNDS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 500_000, 1_000_000, 10_000_000,
];

impl LatencyBuckets {
    pub(super) fn record(&mut self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_US.partition_point(|&bound| bound < us);
        if let Some(n) = self.in_bucket.get_mut(bucket) {
            *n += 1;
        }
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// Observations at or under each of [`LATENCY_BOUNDS_US`] (cumulative).
    pub(super) fn at_most(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        LATENCY_BOUNDS_US
            .iter()
            .zip(&self.in_bucket)
            .scan(0, |sum, (&bound, &n)| {
                *sum += n;
                Some((bound, *sum))
            })
    }
}

/// Per-second rates computed once a second from the hub's counters.
#[derive(Debug, Default)]
pub(super) struct Rates {
    at: Option<Instant>,
    messages_in: u64,
    deliveries_out: u64,
    messages_per_sec: u64,
    deliveries_per_sec: u64,
}

impl Server {
    pub(super) fn tick_rates(&mut self) {
        let now = Instant::now();
        if self
            .rates
            .at
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            self.published.expire(now);
        }
        let r = &mut self.rates;
        let c = &self.hub.counters;
        match r.at {
            Some(at) if now.duration_since(at) < Duration::from_secs(1) => {}
            Some(at) => {
                let secs = now.duration_since(at).as_secs_f64();
                r.messages_per_sec = ((c.messages_in - r.messages_in) as f64 / secs) as u64;
                r.deliveries_per_sec = ((c.deliveries_out - r.deliveries_out) as f64 / secs) as u64;
                *r = Rates {
                    at: Some(now),
                    messages_in: c.messages_in,
                    deliveries_out: c.deliveries_out,
                    ..*r
                };
            }
            None => {
                r.at = Some(now);
                r.messages_in = c.messages_in;
                r.deliveries_out = c.deliveries_out;
            }
        }
    }

    /// The STATS counters (before the close reasons), also served on
    /// `/metrics`.
    pub(super) fn stat_rows(&self) -> [(&'static str, u64); 17] {
        let c = &self.hub.counters;
        let queued: usize = self
            .conns
            .iter()
            .map(|(_, c)| c.session.outbox.len_bytes())
            .sum();
        let avg_commit = c.commit_micros_total.checked_div(c.commits).unwrap_or(0);
        [
            ("sessions", self.session_count() as u64),
            ("users_online", self.hub.users_online() as u64),
            ("rooms", self.hub.room_count() as u64),
            ("connections_accepted", self.counters.accepted),
            ("connections_refused", self.counters.refused),
            ("login_timeouts", self.counters.login_timeouts),
            ("messages_in", c.messages_in),
            ("deliveries_out", c.deliveries_out),
            ("messages_in_per_sec", self.rates.messages_per_sec),
            ("deliveries_out_per_sec", self.rates.deliveries_per_sec),
            ("outbox_bytes_queued", queued as u64),
            ("slow_consumer_drops", self.counters.slow_consumer_drops),
            ("bytes_out", self.counters.bytes_out),
            ("flushes", self.counters.flushes),
            ("storage_commits", c.commits),
            ("storage_commit_avg_us", avg_commit),
            ("storage_commit_last_us", c.commit_micros_last),
        ]
    }

    /// Open connections that are sessions of the line protocol: all but
    /// the WebSocket listeners' HTTP-only ones.
    pub(super) fn session_count(&self) -> usize {
        self.conns.len() - self.http_connection_count()
    }

    /// WebSocket listeners' connections that have not upgraded (reading a
    /// request, or sending an HTTP answer).
    pub(super) fn http_connection_count(&self) -> usize {
        self.conns
            .iter()
            .filter(|(_, c)| c.transport.is_http_only())
            .count()
    }

    /// The STATS rows after the close reasons, in the order they were added.
    pub(super) fn http_rows(&self) -> [(&'static str, u64); 2] {
        [
            ("http_connections", self.http_connection_count() as u64),
            ("http_requests", self.counters.http_requests),
        ]
    }

    pub(super) fn stats_reply(&self) -> Bytes {
        let c = &self.hub.counters;
        let rows = self.stat_rows();
        let count = |r: &CloseReason| (r.name(), self.counters.closed[*r as usize]);
        let (first, added) = CloseReason::ALL.split_at(CloseReason::FIRST_LISTED);
        let added: Vec<(String, u64)> = added
            .iter()
            .map(|r| (format!("closed_{}", r.name()), count(r).1))
            .collect();
        let later = [("messages_stored", c.messages_stored)]
            .into_iter()
            .chain(added.iter().map(|(k, v)| (k.as_str(), *v)))
            .chain(self.bus_rows())
            .chain(self.http_rows())
            .chain(self.in_doubt_rows());
        driver_lines::stats(rows, first.iter().map(count), later)
    }

    /// Commits cut off mid-COMMIT, by how they were settled (PostgreSQL).
    pub(super) fn in_doubt_rows(&self) -> [(&'static str, u64); 3] {
        let read = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        [
            ("storage_in_doubt_committed", read(&self.in_doubt.committed)),
            ("storage_in_doubt_aborted", read(&self.in_doubt.aborted)),
            ("storage_in_doubt_unknown", read(&self.in_doubt.unknown)),
        ]
    }

    /// The bus's counters (all zero without `--bus`).
    fn bus_rows(&self) -> [(&'static str, u64); 13] {
        let read = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        let bus = self.bus.as_ref().map(|b| &*b.counters);
        let bus = |f: fn(&crate::bus::BusCounters) -> &std::sync::atomic::AtomicU64| {
            bus.map_or(0, |b| read(f(b)))
        };
        let (held, duplicates, overflow) = self.hub.sequencer_counts();
        let (log_held, log_duplicates, log_overflow, log_lost) = self.hub.change_log_counts();
        [
            ("bus_published", bus(|b| &b.published)),
            ("bus_publish_dropped", bus(|b| &b.publish_dropped)),
            ("bus_received", bus(|b| &b.received)),
            ("bus_malformed", bus(|b| &b.malformed)),
            ("bus_reconnects", bus(|b| &b.reconnects)),
            ("bus_held", held as u64),
            ("bus_duplicates", duplicates),
            ("bus_held_dropped", overflow),
            ("bus_log_held", log_held as u64),
            ("bus_log_duplicates", log_duplicates),
            ("bus_log_held_dropped", log_overflow),
            ("bus_log_lost", log_lost),
            ("bus_online_elsewhere", self.hub.online_elsewhere() as u64),
        ]
    }
}
