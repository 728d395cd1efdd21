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
    ///
    /// Every descriptor the thread will use is opened here, before the
    /// server takes clients: opened later, they would compete with accepts
    /// when descriptors run out, and keep two of those freed for clients.
    pub(super) fn start(path: &str, wal_fsync: bool) -> Option<Checkpointer> {
        let conn = Connection::open(path)
            .and_then(|conn| {
                conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
                Ok(conn)
            })
            .map_err(|e| log::error!("checkpointer cannot open {path}: {e}"))
            .ok()?;
        let wal = wal_fsync.then(|| WalFile::open(format!("{path}-wal")));
        let (stop, stop_rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || checkpoint_loop(conn, wal, stop_rx))
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
fn checkpoint_loop(conn: Connection, mut wal: Option<WalFile>, stop: mpsc::Receiver<()>) {
    loop {
        let last = matches!(
            stop.recv_timeout(CHECKPOINT_EVERY),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
        if let Some(wal) = &mut wal {
            wal.sync();
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

/// The WAL beside the database, held open so that fsyncing it needs no new
/// descriptor. SQLite keeps the file (truncating, never deleting it) while
/// the storage thread's connection is open, which outlives this thread.
struct WalFile {
    path: String,
    file: Option<std::fs::File>,
}

impl WalFile {
    fn open(path: String) -> WalFile {
        let file = std::fs::File::open(&path)
            .map_err(|e| log::warn!("cannot open {path} to fsync it: {e}"))
            .ok();
        WalFile { path, file }
    }

    /// Every commit written to the WAL so far is on disk when this returns.
    /// A checkpoint would fsync it too, but only when it can copy frames,
    /// which a long read can hold off; this does not depend on that.
    fn sync(&mut self) {
        if self.file.is_none() {
            *self = WalFile::open(std::mem::take(&mut self.path));
        }
        if let Some(f) = &self.file
            && let Err(e) = f.sync_data()
        {
            log::warn!("fsync of {} failed: {e}", self.path);
        }
    }
}
