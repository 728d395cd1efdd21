//! Slow consumers: the hard outbox limit (`--max-outbox`, checked as lines
//! are queued) and the soft one (`--outbox-soft-limit` for
//! `--outbox-soft-seconds`, checked from the turn's end).

use std::io;
use std::time::{Duration, Instant};

use crate::protocol::driver_lines;

use super::Server;
use super::close::CloseReason;

/// How often sessions over the soft outbox limit are checked; the soft
/// deadline is kept to within this much.
const SOFT_LIMIT_CHECK: Duration = Duration::from_millis(250);

/// The soft outbox limit: which sessions are over it, and since when.
///
/// Each session keeps its own [`SoftClock`]; this keeps the list of
/// sessions whose clock may be running. A flush that leaves an outbox above
/// the limit starts its clock (and lists it, once), one that leaves it below
/// stops the clock: both O(1), so readers crossing the line back and forth
/// cost nothing more. Stopped clocks leave the list at the next check. Only
/// slow readers are ever listed, so the list is short.
#[derive(Debug)]
pub(super) struct SoftLimit {
    /// Outboxes above this many bytes are on the clock (`usize::MAX`: off).
    bytes: usize,
    /// How long an outbox may stay above `bytes`, in milliseconds.
    allowed_ms: u32,
    /// Slots of the connections whose `SoftClock` is not `NOT_LISTED`.
    listed: Vec<usize>,
    last_check: Instant,
}

/// A session's time over the soft limit, in 4 bytes (every idle session
/// carries one): `NOT_LISTED`, `UNDER_LISTED` (back under, still in the
/// list until the next check), or the time (ms since start) the outbox went
/// over, which is larger than both.
#[derive(Debug, Default, Clone, Copy)]
pub struct SoftClock(u32);

const NOT_LISTED: u32 = 0;
const UNDER_LISTED: u32 = 1;

impl SoftLimit {
    /// `bytes` or `seconds` of 0 turns the limit off.
    pub(super) fn new(bytes: usize, seconds: u64) -> Self {
        let on = bytes > 0 && seconds > 0;
        SoftLimit {
            bytes: if on { bytes } else { usize::MAX },
            allowed_ms: u32::try_from(seconds.saturating_mul(1000)).unwrap_or(u32::MAX),
            listed: Vec::new(),
            last_check: Instant::now(),
        }
    }

    /// The limit in bytes (`usize::MAX` when off).
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// After a flush of connection `i`, whose outbox now holds `queued`
    /// bytes: starts or stops its clock.
    pub(super) fn track(&mut self, i: usize, clock: &mut SoftClock, queued: usize, now_ms: u32) {
        if queued <= self.bytes {
            if clock.0 > UNDER_LISTED {
                clock.0 = UNDER_LISTED;
            }
        } else if clock.0 <= UNDER_LISTED {
            if clock.0 == NOT_LISTED {
                self.listed.push(i);
            }
            clock.0 = now_ms.max(UNDER_LISTED + 1);
        }
    }

    /// Connection `i` is closing; its slot may be reused.
    pub(super) fn forget(&mut self, i: usize, clock: &SoftClock) {
        if clock.0 != NOT_LISTED {
            self.listed.retain(|&o| o != i);
        }
    }

    /// How long the loop may sleep: short while anyone is listed.
    pub(super) fn poll_cap(&self) -> Option<Duration> {
        (!self.listed.is_empty()).then_some(SOFT_LIMIT_CHECK)
    }
}

impl Server {
    /// Drops connection `i` as a slow consumer, for `reason`.
    pub(super) fn drop_slow(&mut self, i: usize, reason: CloseReason) {
        let Some(conn) = self.conns.get_mut(i) else {
            return;
        };
        if conn.session.dropped {
            return;
        }
        conn.session.close_as(reason);
        self.counters.slow_consumer_drops += 1;
        // Best effort: the client may be mid-line, hence the leading CRLF.
        conn.session.outbox.clear();
        conn.session.waiting = Vec::new();
        let _ = io::Write::write(&mut conn.transport, driver_lines::SLOW_CONSUMER);
        conn.session.closing = true;
        conn.session.dropped = true;
        self.dead.push(i);
    }

    /// Drops the sessions whose outbox has stayed above the soft limit for
    /// longer than allowed, and unlists those back under it. Looks at most
    /// once per `SOFT_LIMIT_CHECK`.
    pub(super) fn drop_over_soft_too_long(&mut self) {
        if self.soft.listed.is_empty() || self.soft.last_check.elapsed() < SOFT_LIMIT_CHECK {
            return;
        }
        self.soft.last_check = Instant::now();
        let now = self.now_ms();
        let soft = &mut self.soft;
        let mut expired = Vec::new();
        let conns = &mut self.conns;
        let allowed_ms = soft.allowed_ms;
        soft.listed.retain(|&i| {
            let Some(clock) = conns.get_mut(i).map(|c| &mut c.session.soft_clock) else {
                return false;
            };
            if clock.0 == UNDER_LISTED {
                clock.0 = NOT_LISTED;
                return false;
            }
            if now.saturating_sub(clock.0) > allowed_ms {
                expired.push(i);
            }
            true
        });
        for i in expired {
            self.drop_slow(i, CloseReason::SlowConsumerSoft);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader crossing the line back and forth is listed once, and its
    /// clock restarts each time it goes over again.
    #[test]
    fn a_session_is_listed_once_and_its_clock_restarts_over_the_line() {
        let mut soft = SoftLimit::new(100, 10);
        let mut clock = SoftClock::default();
        soft.track(3, &mut clock, 100, 5);
        assert_eq!(
            (clock.0, soft.listed.len()),
            (NOT_LISTED, 0),
            "at the limit is not over it"
        );
        soft.track(3, &mut clock, 101, 5);
        assert_eq!((clock.0, &soft.listed[..]), (5, &[3][..]));
        soft.track(3, &mut clock, 150, 9);
        assert_eq!(clock.0, 5, "still over: the clock keeps running");
        soft.track(3, &mut clock, 0, 12);
        assert_eq!(clock.0, UNDER_LISTED);
        soft.track(3, &mut clock, 101, 20);
        assert_eq!((clock.0, &soft.listed[..]), (20, &[3][..]));
        soft.forget(3, &clock);
        assert!(soft.listed.is_empty());
        assert_eq!(SoftLimit::new(0, 10).bytes(), usize::MAX, "0 turns it off");
        assert_eq!(SoftLimit::new(100, 0).bytes(), usize::MAX, "0 turns it off");
    }
}
