//! WAL checkpoints on a thread of their own.
//!
//! Checkpoints copy the WAL into the database and fsync it; done inline they
//! stall the commit that every `OK SAY` waits for by tens of milliseconds.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use rusqlite::Connection;

/// How often the background thread moves the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// The checkpoint thread; dropping this runs a last TRUNCATE checkpoint,
/// which also empties the WAL, and waits for it.
pub(super) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// `None` if the thread cannot be spawned: the WAL then grows until the
    /// next start, which is wasteful but loses nothing.
    pub(super) fn start(path: String) -> Option<Checkpointer> {
        let (stop, stop_rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || checkpoint_loop(path, stop_rx))
            .map_err(|e| log::error!("cannot start the checkpointer: {e}"))
            .ok()?;
        Some(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs PASSIVE checkpoints on a connection of its own: they never block the
/// storage thread's commits, and they keep the WAL from growing unbounded.
fn checkpoint_loop(path: String, stop: mpsc::Receiver<()>) {
    let conn = match Connection::open(&path) {
        Ok(c) => c,
        Err(e) => {
            log::error!("checkpointer cannot open {path}: {e}");
            return;
        }
    };
    loop {
        let last = matches!(
            stop.recv_timeout(CHECKPOINT_EVERY),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
        let mode = if last { "TRUNCATE" } else { "PASSIVE" };
        if let Err(e) = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())) {
            log::warn!("WAL checkpoint failed: {e}");
        }
        if last {
            return;
        }
    }
}
