//! The seam between the storage thread and a database.

use super::{Answer, Assigned, Query, Snapshot, StoreError, Write};

/// A database the storage thread drives: SQLite ([`super::SqliteBackend`])
/// for the server, an in-memory one ([`super::MemoryBackend`]) for hub tests,
/// and a shared server database next. Each call is one transaction: it
/// happens whole or not at all, and once it returns `Ok` it is durable as far
/// as the backend can make it, or, for a backend with a [`WalSync`], once a
/// sync started after it has returned.
pub trait Backend: Send {
    /// Everything the hub rebuilds its tables from, with the newest `recent`
    /// messages of each conversation.
    fn load(&mut self, recent: usize) -> Result<Snapshot, StoreError>;

    /// Applies `writes` in order, in one transaction; returns what it
    /// assigned, one per write that [`Write::assigns`].
    fn commit(&mut self, writes: &[&Write]) -> Result<Vec<Assigned>, StoreError>;

    /// Applies `writes`, then answers `query`, in one transaction (writes
    /// that come with a query assign nothing the asker needs back).
    fn query(&mut self, writes: &[&Write], query: &Query) -> Result<Answer, StoreError>;

    /// Does up to `max_rows` rows of work left behind by commits (SQLite:
    /// its full-text index), in a transaction of its own; returns whether
    /// more is left. The storage thread calls it when idle, and at least
    /// every [`super::thread::BACKGROUND_EVERY`] when busy.
    fn background(&mut self, _max_rows: usize) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// For a backend whose commits return once written to the OS and are
    /// made durable by a sync of their log (SQLite at `--durability sync`):
    /// that sync, which the storage thread runs on a thread of its own
    /// while it commits the next round, releasing a round's answers only
    /// after a sync that started after its commit. Taken once, at start.
    fn take_wal_sync(&mut self) -> Option<Box<dyn WalSync>> {
        None
    }

    /// How the commits whose connection broke during COMMIT were settled
    /// (a database server only), shared with the STATS reader.
    fn in_doubt_counts(&self) -> std::sync::Arc<InDoubtCounts> {
        std::sync::Arc::default()
    }
}

/// Commits whose connection broke during COMMIT, by what the database said
/// of them afterwards: committed (answered OK), aborted (answered
/// UNAVAILABLE), or no answer in time (UNAVAILABLE, "may be saved").
#[derive(Debug, Default)]
pub struct InDoubtCounts {
    pub committed: std::sync::atomic::AtomicU64,
    pub aborted: std::sync::atomic::AtomicU64,
    pub unknown: std::sync::atomic::AtomicU64,
}

/// Makes every commit that returned before the call durable.
pub trait WalSync: Send {
    fn sync(&mut self) -> std::io::Result<()>;
}

/// Drops a blob's file once no message holds it. The row goes with the
/// transaction; a file left behind by a crash right here is unreachable and
/// harmless.
pub(super) fn remove_blob_file(blob_dir: &std::path::Path, blob: &str) {
    if let Err(e) = std::fs::remove_file(crate::blob::path(blob_dir, blob)) {
        log::warn!("removing blob {blob}: {e}");
    }
}
