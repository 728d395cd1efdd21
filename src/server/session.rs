//! A session's state, apart from its socket: the read framer, the outbox,
//! the replies held back so that answers leave in command order, the flood
//! bucket and an ATTACH body being read. The byte pipe it runs over is a
//! [`super::transport::Transport`]; this side knows nothing of it.

use std::collections::VecDeque;

use bytes::Bytes;

use super::close::CloseReason;
use super::limits::Bucket;
use super::outbox::{Outbox, Tag};
use super::slow::SoftClock;
use crate::chat::SessionId;
use crate::fanout::Answering;
use crate::protocol::LineFramer;

/// An entry in the held-replies queue.
#[derive(Debug)]
pub enum Held {
    /// The answer to a deferred command, not in yet.
    Slot,
    /// An answer ready to go once everything before it has gone.
    Ready(Bytes, Tag),
    /// QUIT: close once everything before it has gone.
    Close,
}

#[derive(Debug)]
pub struct Session {
    pub sid: SessionId,
    pub framer: LineFramer,
    pub outbox: Outbox,
    /// Non-empty only while a command's answer is deferred.
    pub held: VecDeque<Held>,
    /// The peer closed its side; finish the queued work, then close.
    pub eof: bool,
    /// Close as soon as the outbox is written (after QUIT or EOF).
    pub closing: bool,
    /// Already queued for a flush this turn.
    pub dirty: bool,
    /// Dropped as a slow consumer: nothing more is queued for it.
    pub dropped: bool,
    /// Time over the soft outbox limit.
    pub soft_clock: SoftClock,
    /// Logged in (no longer counted against its address's unauthenticated cap).
    pub authed: bool,
    /// Over its command rate: not read from until this time (ms since start).
    pub throttled_until: Option<u32>,
    pub bucket: Bucket,
    /// A FETCH body is on its way: events wait in `waiting` until it ends.
    pub hold_events: bool,
    pub waiting: Vec<(Bytes, Tag)>,
    /// The body of an ATTACH being read.
    /// Boxed: rare, and every idle connection carries this field.
    pub upload: Option<Box<Upload>>,
    /// Why the session is closing, once that is decided.
    pub reason: Option<CloseReason>,
}

/// Raw bytes still to read after an ATTACH line; kept only if the hub
/// accepted the upload, otherwise read and dropped.
#[derive(Debug)]
pub struct Upload {
    pub remaining: u64,
    pub data: Option<Vec<u8>>,
}

impl Session {
    pub fn new(sid: SessionId, max_line: usize, burst: u32) -> Self {
        Session {
            sid,
            framer: LineFramer::new(max_line),
            outbox: Outbox::default(),
            held: VecDeque::new(),
            eof: false,
            closing: false,
            dirty: false,
            dropped: false,
            soft_clock: SoftClock::default(),
            authed: false,
            throttled_until: None,
            bucket: Bucket::full(burst),
            upload: None,
            hold_events: false,
            waiting: Vec::new(),
            reason: None,
        }
    }

    /// A reply: returned to go straight out, or held while an earlier
    /// command's answer is pending.
    pub fn reply(&mut self, line: Bytes) -> Option<Bytes> {
        if self.held.is_empty() {
            Some(line)
        } else {
            self.held.push_back(Held::Ready(line, None));
            None
        }
    }

    /// Part of the newest deferred answer (a SYNC stream, whose session reads
    /// no further commands meanwhile): it goes just before that answer's slot.
    /// Returns what is now free to go, in order.
    pub fn partial(&mut self, lines: Bytes, tag: Tag) -> Vec<(Bytes, Tag)> {
        let at = self
            .held
            .iter()
            .rposition(|h| matches!(h, Held::Slot))
            .unwrap_or(self.held.len());
        self.held.insert(at, Held::Ready(lines, tag));
        self.release()
    }

    pub fn defer(&mut self) {
        self.held.push_back(Held::Slot);
    }

    pub fn close_after_replies(&mut self) {
        if self.held.is_empty() {
            self.closing = true;
        } else {
            self.held.push_back(Held::Close);
        }
    }

    /// Fills the oldest slot (or, for a stream's end, the newest, as
    /// [`Session::partial`] does) with `line` and returns the answers now
    /// free to go, in order.
    pub fn complete(&mut self, line: Bytes, answering: Answering) -> Vec<(Bytes, Tag)> {
        let is_slot = |h: &Held| matches!(h, Held::Slot);
        let slot = match answering {
            Answering::Oldest => self.held.iter().position(is_slot),
            Answering::Stream => self.held.iter().rposition(is_slot),
        };
        if let Some(at) = slot {
            self.held[at] = Held::Ready(line, None);
        }
        self.release()
    }

    /// Pops the answers at the front that no longer wait on anything.
    fn release(&mut self) -> Vec<(Bytes, Tag)> {
        let mut ready = Vec::new();
        while let Some(front) = self.held.front() {
            match front {
                Held::Slot => break,
                Held::Ready(..) => {
                    if let Some(Held::Ready(b, tag)) = self.held.pop_front() {
                        ready.push((b, tag));
                    }
                }
                Held::Close => {
                    self.held.pop_front();
                    self.closing = true;
                }
            }
        }
        if self.held.is_empty() {
            self.held = VecDeque::new();
        }
        ready
    }

    /// Records why the session closes; the first cause wins.
    pub fn close_as(&mut self, reason: CloseReason) {
        self.reason.get_or_insert(reason);
    }

    /// Nothing left to do for a connection whose peer has gone or said QUIT.
    pub fn finished(&self) -> bool {
        (self.closing || self.eof) && self.held.is_empty() && self.outbox.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{ConvId, Seq};

    fn session() -> Session {
        Session::new(SessionId(1), 100, 10)
    }

    #[test]
    fn replies_wait_behind_a_deferred_answer() {
        let mut c = session();
        assert!(c.reply(Bytes::from_static(b"a\n")).is_some());
        c.defer();
        c.defer();
        assert!(c.reply(Bytes::from_static(b"c\n")).is_none());
        c.close_after_replies();
        assert!(!c.closing);
        let text = |v: Vec<(Bytes, Tag)>| v.into_iter().map(|(b, _)| b).collect::<Vec<_>>();
        assert_eq!(
            text(c.complete(Bytes::from_static(b"b1\n"), Answering::Oldest)),
            [&b"b1\n"[..]]
        );
        let rest = text(c.complete(Bytes::from_static(b"b2\n"), Answering::Oldest));
        assert_eq!(rest, [&b"b2\n"[..], &b"c\n"[..]]);
        assert!(c.closing);
        assert!(c.held.is_empty());
    }

    #[test]
    fn a_stream_waits_for_earlier_answers_and_precedes_its_own() {
        let mut c = session();
        c.defer(); // an earlier command, say SAY
        c.defer(); // SYNC
        assert!(
            c.partial(Bytes::from_static(b"m1\n"), Some((ConvId(1), Seq(1))))
                .is_empty()
        );
        let out = c.complete(Bytes::from_static(b"ok say\n"), Answering::Oldest);
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[1],
            (Bytes::from_static(b"m1\n"), Some((ConvId(1), Seq(1))))
        );
        assert_eq!(c.partial(Bytes::from_static(b"m2\n"), None).len(), 1);
        assert_eq!(
            c.complete(Bytes::from_static(b"ok sync\n"), Answering::Stream)
                .len(),
            1
        );
        assert!(c.held.is_empty());
    }

    /// A SYNC that ends before the SAY sent ahead of it is committed keeps
    /// its place behind the SAY's answer.
    #[test]
    fn a_stream_that_ends_first_still_answers_after_earlier_commands() {
        let mut c = session();
        c.defer(); // SAY, waiting on the disk
        c.defer(); // SYNC, over at once
        assert!(
            c.complete(Bytes::from_static(b"ok sync\n"), Answering::Stream)
                .is_empty()
        );
        let out: Vec<Bytes> = c
            .complete(Bytes::from_static(b"ok say\n"), Answering::Oldest)
            .into_iter()
            .map(|(b, _)| b)
            .collect();
        assert_eq!(out, [&b"ok say\n"[..], &b"ok sync\n"[..]]);
        assert!(c.held.is_empty());
    }
}
