//! WAL checkpoints on a thread of their own.
//!
//! Checkpoints copy the WAL into the database and fsync it; done inline they
//! stall the commit that every `OK SAY` waits for by tens of milliseconds.
//! [`WalFile`] is the WAL's own fsync: the checkpointer's every round under
//! `write`, and the storage thread's after each commit under `sync`.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use rusqlite::Connection;

use crate::store::WalSync;

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
    /// `wal_fsync`: nothing else fsyncs the commits (`--durability write`),
    /// so each round fsyncs the WAL first; that bounds what a power loss can
    /// take to one round. (Under `sync` the storage thread's WAL sync thread
    /// fsyncs every commit before it is answered.)
    ///
    /// Every descriptor the thread will use is opened here, before the
    /// server takes clients: opened later, they would compete with accepts
    /// when descriptors run out, and keep two of those freed for clients.
    pub(super) fn start(path: &str, wal_fsync: bool) -> Option<Checkpointer> {
        let conn = Connection::open(path)
            .and_then(|conn| {
                // A checkpoint fsyncs the WAL before it copies frames into
                // the database, and the database before it lets writers
                // restart the WAL over them, only at NORMAL or FULL: under
                // `sync` the commits are not fsynced themselves (the WAL
                // sync thread does it), so a checkpoint at OFF could move
                // a commit that is not on disk yet, and a restart could
                // overwrite one.
                conn.pragma_update(None, "synchronous", "FULL")?;
                conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
                Ok(conn)
            })
            .map_err(|e| log::error!("checkpointer cannot open {path}: {e}"))
            .ok()?;
        let wal = wal_fsync.then(|| WalFile::open(path));
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
        if let Some(wal) = &mut wal
            && let Err(e) = wal.sync()
        {
            log::warn!("{e}");
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
/// descriptor. SQLite keeps the file (truncating or restarting it, never
/// deleting it) while a connection is open, and the checkpointer's, which
/// is the last to close, outlives every user of this.
pub(super) struct WalFile {
    path: String,
    file: Option<std::fs::File>,
}

impl WalFile {
    /// The WAL of the database at `db_path`; opened again at the next sync
    /// if it cannot be opened now.
    pub(super) fn open(db_path: &str) -> WalFile {
        let path = format!("{db_path}-wal");
        let file = std::fs::File::open(&path)
            .map_err(|e| log::warn!("cannot open {path} to fsync it: {e}"))
            .ok();
        WalFile { path, file }
    }
}

impl WalSync for WalFile {
    /// Every commit written to the WAL so far is on disk when this returns
    /// `Ok`. A checkpoint would fsync it too, but only when it can copy
    /// frames, which a long read can hold off; this does not depend on that.
    /// A write that runs meanwhile is in a later sync: the storage thread
    /// hands a round over only once its commit has returned.
    fn sync(&mut self) -> std::io::Result<()> {
        let with_path = |e: std::io::Error| {
            std::io::Error::new(e.kind(), format!("fsync of {}: {e}", self.path))
        };
        let file = match &self.file {
            Some(file) => file,
            None => self
                .file
                .insert(std::fs::File::open(&self.path).map_err(with_path)?),
        };
        file.sync_data().map_err(with_path)
    }
}
