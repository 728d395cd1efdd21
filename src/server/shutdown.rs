//! Graceful shutdown: BYE to everyone, a bounded drain, the last cursors and
//! the final commit.

use std::io;
use std::time::{Duration, Instant};

use mio::{Events, Token};

use crate::protocol::driver_lines;

use super::close::CloseReason;
use super::conn::Conn;
use super::{Server, WAKER};

impl Server {
    /// Stops accepting, says BYE to everyone, drains outboxes for a bounded
    /// time, hands the last cursors to storage and waits for its final commit.
    pub(super) fn shutdown(&mut self, events: &mut Events) -> io::Result<()> {
        log::info!("shutting down: {} sessions", self.conns.len());
        // The turn the signal came in is cut short: what it said goes out
        // before BYE.
        self.flush_posts();
        let _ = self.poll.registry().deregister(&mut self.listener);
        if let Some(tls) = &mut self.tls {
            let _ = self.poll.registry().deregister(&mut tls.listener);
        }
        let bye = driver_lines::bye();
        let all: Vec<usize> = self.conns.iter().map(|(i, _)| i).collect();
        for i in all {
            self.push(i, bye.clone(), None);
            if let Some(c) = self.conns.get_mut(i) {
                c.session.closing = true;
                c.session.close_as(CloseReason::Shutdown);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(self.cfg.shutdown_grace);
        loop {
            self.flush_dirty();
            let pending = self.conns.iter().any(|(_, c)| !c.session.outbox.is_empty());
            let now = Instant::now();
            if !pending || now >= deadline {
                break;
            }
            self.poll.poll(
                events,
                Some((deadline - now).min(Duration::from_millis(50))),
            )?;
            for event in events.iter() {
                match event.token() {
                    WAKER => self.drain_workers(),
                    Token(i) if event.is_writable() => self.mark_dirty(i),
                    _ => {}
                }
            }
        }
        self.hub.flush_cursors(usize::MAX, &mut self.out);
        self.apply_out();
        // Every session still open ends here, drained or not.
        let open: Vec<Box<Conn>> = self.conns.drain().collect();
        for mut conn in open {
            conn.transport.close();
            self.record_close(
                conn.session.sid,
                conn.session.reason.unwrap_or(CloseReason::Shutdown),
            );
        }
        // Dropping the handle makes the storage thread commit what it has and exit.
        drop(self.storage.take());
        log::info!("shutdown complete");
        Ok(())
    }
}
