//! Writing: flushing dirty outboxes, write interest only while an outbox is
//! blocked, and reporting what reached each socket back to the hub.

use std::time::Instant;

use mio::Token;

use crate::chat::SessionId;

use super::Server;
use super::close::CloseReason;
use super::outbox::Flushed;
use super::transport::Transport;

impl Server {
    pub(super) fn flush_dirty(&mut self) {
        let now = self.now_ms();
        while !self.dirty.is_empty() {
            for i in std::mem::take(&mut self.dirty) {
                let Some(conn) = self.conns.get_mut(i) else {
                    continue;
                };
                conn.session.dirty = false;
                match conn
                    .session
                    .outbox
                    .flush(&mut conn.transport, &mut self.written)
                {
                    Ok((flushed, n)) => {
                        self.counters.bytes_out += n as u64;
                        if n > 0 {
                            self.counters.flushes += 1;
                        }
                        let blocked = flushed == Flushed::Blocked;
                        let interest = conn.transport.interest(blocked);
                        if interest.is_writable() != conn.want_write {
                            conn.want_write = interest.is_writable();
                            let _ = self.poll.registry().reregister(
                                &mut conn.transport,
                                Token(i),
                                interest,
                            );
                        }
                        if !blocked && conn.session.finished() {
                            conn.session.close_as(CloseReason::ClientClosed);
                            self.dead.push(i);
                        }
                        let queued = conn.session.outbox.len_bytes();
                        self.soft
                            .track(i, &mut conn.session.soft_clock, queued, now);
                    }
                    Err(e) => {
                        log::debug!("session {} write error: {e}", conn.session.sid);
                        conn.session.close_as(CloseReason::WriteError);
                        self.dead.push(i);
                    }
                }
                self.note_written(i);
            }
            // Report what reached sockets, and let SYNC streams continue.
            self.report_written();
        }
    }

    /// Keeps what connection `i` just wrote for the hub: per conversation,
    /// only the highest seq (cursors only move forward).
    pub(super) fn note_written(&mut self, i: usize) {
        if self.written.is_empty() {
            return;
        }
        if let Some(conn) = self.conns.get(i) {
            let sid = conn.session.sid;
            let now = Instant::now();
            self.written.sort_unstable();
            for (k, &(conv, seq)) in self.written.iter().enumerate() {
                if let Some(at) = self.published.get(conv, seq) {
                    self.counters
                        .delivery_latency
                        .record(now.duration_since(at));
                }
                if self.written.get(k + 1).is_none_or(|next| next.0 != conv) {
                    self.wrote.push((sid, conv, seq));
                }
            }
        }
        self.written.clear();
    }

    /// Tells the hub which messages reached which sessions, and pulls the
    /// next piece of streams (SYNC, FETCH) whose outbox has drained. New
    /// output marks sessions dirty again; `flush_dirty` loops until none is.
    pub(super) fn report_written(&mut self) {
        let mut wrote = std::mem::take(&mut self.wrote);
        for &(sid, conv, seq) in &wrote {
            self.hub.delivered(sid, conv, seq, &mut self.out);
        }
        wrote.clear();
        // Hand the vector back so its capacity is reused next turn.
        self.wrote = wrote;
        let low_water = self.stream_low_water;
        let pull: Vec<SessionId> = self
            .hub
            .streams_waiting()
            .filter(|&sid| {
                self.index_of(sid).is_some_and(|i| {
                    let c = &self.conns[i];
                    c.session.outbox.len_bytes() < low_water
                        && c.session.held.len() <= 1
                        && !c.session.dropped
                })
            })
            .collect();
        for sid in pull {
            self.hub.stream_more(sid, &mut self.out);
        }
        self.apply_out();
    }
}
