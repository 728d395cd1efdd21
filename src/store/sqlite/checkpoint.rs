//! WAL checkpoints on a thread of their own.
//!
//! Checkpoints copy the WAL into the database and fsync it; done inline they
//! stall the commit that every `OK SAY` waits for by tens of milliseconds.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use rusqlite::Connection;

/// How often the background thread moves the WAL into the database (and,
/// where commits are not fsynced themselves, fsyncs the WAL first).
pub(super) const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// The checkpoint thread; dropping this runs a last TRUNCATE checkpoint,
/// which also empties the WAL, and waits for it.
pub(super) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// `None` if the thread cannot be spawned: the WAL then grows until the
    /// next start, which is wasteful but loses nothing.
    /// `wal_fsync`: commits are not fsynced, so each round fsyncs the WAL
    /// first; that bounds what a power loss can take to one round.
    pub(super) fn start(path: String, wal_fsync: bool) -> Option<Checkpointer> {
        let (stop, stop_rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || checkpoint_loop(path, wal_fsync, stop_rx))
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
fn checkpoint_loop(path: String, wal_fsync: bool, stop: mpsc::Receiver<()>) {
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
        if wal_fsync {
            sync_wal(&path);
        }
        let mode = if last { "TRUNCATE" } else { "PASSIVE" };
        if let Err(e) = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())) {
            log::warn!("WAL checkpoint failed: {e}");
        }
        if last {
            return;
        }
    }
}

/// Fsyncs the WAL beside the database at `path`: every commit written to it
/// so far is on disk when this returns. A checkpoint would fsync it too, but
/// only when it can copy frames, which a long read can hold off; this does
/// not depend on that.
fn sync_wal(path: &str) {
    let wal = format!("{path}-wal");
    match std::fs::File::open(&wal).and_then(|f| f.sync_data()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("fsync of {wal} failed: {e}"),
    }
}
