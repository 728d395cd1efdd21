//! Routing the hub's output: replies in command order (`Defer`/`Complete`),
//! events held back behind a FETCH body, everything into bounded outboxes,
//! and jobs to the worker threads.

use std::time::Instant;

use bytes::Bytes;

use crate::fanout::{self, Wire};

use super::Server;
use super::close::CloseReason;
use super::outbox::Tag;

impl Server {
    /// Routes everything the hub produced: lines to outboxes, jobs to workers.
    pub(super) fn apply_out(&mut self) {
        let mut out = std::mem::take(&mut self.out);
        let mut wire = std::mem::take(&mut self.wire);
        fanout::route(&mut self.hub, &mut out.emits, &mut wire);
        // One clock read per call: every delivery of it was published now.
        let mut published_at = None;
        let mut last_published = None;
        for (sid, output) in wire.drain(..) {
            let Some(i) = self.index_of(sid) else {
                continue;
            };
            let session = &mut self.conns[i].session;
            match output {
                Wire::Reply(b) => {
                    if let Some(b) = session.reply(b) {
                        self.push(i, b, None);
                    }
                }
                Wire::Event(b) => self.push_event(i, b, None),
                Wire::Deliver { line, conv, seq } => {
                    // A batch's recipients come one after another: its
                    // publish time is noted once, not once per recipient.
                    if last_published != Some((conv, seq)) {
                        last_published = Some((conv, seq));
                        let now = *published_at.get_or_insert_with(Instant::now);
                        let limit = self.cfg.metrics_tracked_messages;
                        self.published.publish(conv, seq, now, limit);
                    }
                    self.push_event(i, line, Some((conv, seq)))
                }
                Wire::Defer => session.defer(),
                Wire::Complete(b, answering) => {
                    if !session.authed && self.hub.user_of(sid).is_some() {
                        session.authed = true;
                        self.unauth.remove(sid);
                    }
                    for (b, tag) in session.complete(b, answering) {
                        self.push(i, b, tag);
                    }
                    if let Some(session) = self.conns.get_mut(i).map(|c| &mut c.session)
                        && session.hold_events
                        && session.held.is_empty()
                    {
                        // The FETCH is over: the events it held back follow it.
                        session.hold_events = false;
                        for (b, tag) in std::mem::take(&mut session.waiting) {
                            self.push(i, b, tag);
                        }
                    }
                    // The session may have been waiting on this to read on.
                    self.again.push(i);
                }
                Wire::Partial { lines, tag } => {
                    for (b, tag) in session.partial(lines, tag) {
                        self.push(i, b, tag);
                    }
                }
                Wire::Body(bytes) => {
                    session.hold_events = true;
                    for (b, tag) in session.partial(bytes, None) {
                        self.push(i, b, tag);
                    }
                }
                Wire::Close => {
                    session.close_as(CloseReason::ChatRequest);
                    session.close_after_replies();
                }
                Wire::Stats => {
                    let stats = self.stats_reply();
                    if let Some(b) = self.conns[i].session.reply(stats) {
                        self.push(i, b, None);
                    }
                }
            }
            self.mark_dirty(i);
        }
        for job in out.auth.drain(..) {
            self.auth.submit(job);
        }
        for job in out.blobs.drain(..) {
            self.blobs.submit(job);
        }
        if let Some(storage) = &self.storage {
            storage.submit_all(std::mem::take(&mut out.store));
        }
        if let Some(bus) = &self.bus {
            for shared in out.bus.drain(..) {
                bus.publish(shared);
            }
        }
        // Hand the (now empty) vectors back so their capacity is reused.
        self.out = out;
        self.wire = wire;
    }

    /// Queues an event, unless a FETCH body is being written: then it waits
    /// (counted against the outbox limit) until the body is done.
    pub(super) fn push_event(&mut self, i: usize, b: Bytes, tag: Tag) {
        let Some(conn) = self.conns.get_mut(i) else {
            return;
        };
        if !conn.session.hold_events {
            return self.push(i, b, tag);
        }
        let waiting: usize = conn.session.waiting.iter().map(|(w, _)| w.len()).sum();
        if waiting + conn.session.outbox.len_bytes() + b.len() > self.cfg.max_outbox {
            self.drop_slow(i, CloseReason::SlowConsumer);
        } else {
            conn.session.waiting.push((b, tag));
        }
    }

    /// Queues `b` for connection `i`, dropping it as a slow consumer if its
    /// outbox would pass the limit.
    pub(super) fn push(&mut self, i: usize, b: Bytes, tag: Tag) {
        let Some(conn) = self.conns.get_mut(i) else {
            return;
        };
        if conn.session.dropped {
            return;
        }
        if conn.session.outbox.len_bytes() + b.len() > self.cfg.max_outbox {
            // Over the limit: first let the kernel take what it will. Only a
            // reader whose socket buffer is full as well is slow.
            if let Ok((_, n)) = conn
                .session
                .outbox
                .flush(&mut conn.transport, &mut self.written)
            {
                self.counters.bytes_out += n as u64;
            }
            self.note_written(i);
        }
        let Some(conn) = self.conns.get_mut(i) else {
            return;
        };
        if conn.session.outbox.push(b, tag, self.cfg.max_outbox) {
            self.mark_dirty(i);
            return;
        }
        self.drop_slow(i, CloseReason::SlowConsumer);
    }
}
