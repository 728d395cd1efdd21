//! Durable state, owned by one storage thread.
//!
//! The event loop never touches the disk. It sends [`Request`]s over a channel;
//! the storage thread takes everything queued, commits all the writes in one
//! transaction (group commit: one fsync for many messages), and sends back each
//! request's opaque `done` token, in order, once that transaction is durable.
//! The in-memory tables in the chat layer stay the hot path; this is their log.
//!
//! - `api`: the requests, queries, answers and the startup snapshot.
//! - `thread`: the storage thread and its group commit, over any [`Backend`].
//! - `backend`: the [`Backend`] trait a database implements.
//! - `sqlite`: [`SqliteBackend`], the server's (schema and migrations, open
//!   and load, reads, writes, blob reference counting, WAL checkpoints).
//! - `postgres`: [`PostgresBackend`], for several nodes on one database
//!   (seqs from a counter row and rights checked inside each transaction,
//!   full-text search, reconnection with a bounded backoff).
//! - `change_log`: the change log that node-wide changes are appended to, for
//!   nodes that missed them on the bus.
//! - `memory`: [`MemoryBackend`], the same rules without a database, for the
//!   hub's unit tests. `tests` runs each store case on every backend
//!   (PostgreSQL when `LINECHAT_TEST_POSTGRES` names a server).

mod api;
mod backend;
pub mod change_log;
mod memory;
mod postgres;
mod sqlite;
mod thread;

use thiserror::Error;

pub use crate::chat::types::{AuditAction, ConvId, ConvKind, MsgState, RequestState, Seq, UserId};

pub use self::postgres::PostgresBackend;
pub use api::{
    Answer, Assigned, AuditRow, Committed, ConvEnd, ConvRow, LogEntry, MemberRow, NewConv,
    NewMember, Post, PushRow, Query, Request, RequestRow, Snapshot, StoredMessage, UserRow, Write,
};
pub use backend::{Backend, InDoubtCounts, WalSync};
pub use memory::MemoryBackend;
pub use sqlite::SqliteBackend;
pub use sqlite::schema::SCHEMA_VERSION;
pub use thread::{Storage, run_batch, run_round};

/// Why the store did not do what it was asked: at open, or for one request.
/// The hub turns each into the command's ERR (chat's `storage_error`).
#[derive(Debug, Error)]
pub enum StoreError {
    /// A uniqueness rule or a compare-and-set refused the change.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A user or room name that another writer of a shared database took
    /// first (its unique constraint refused this one).
    #[error("name taken: {0}")]
    NameTaken(String),
    /// The row the request needs is not there.
    #[error("not found")]
    NotFound,
    /// The database cannot be written or read now (disk full, I/O error,
    /// locked, cannot be opened); the same request may succeed later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The database refused the request for a reason no retry fixes (a
    /// corrupt file, or a statement this build got wrong).
    #[error("internal: {0}")]
    Internal(String),
    /// The database server cannot be reached (PostgreSQL): the backend
    /// reconnects on a later request, after a bounded backoff. Nothing of
    /// the request is acknowledged.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The connection broke during COMMIT and the database did not come
    /// back in time to say whether the commit took effect (PostgreSQL).
    #[error("in doubt: {0}")]
    InDoubt(String),
    /// The writer's right to the change ended in a commit this node has not
    /// applied yet: a SAY from a member another node has just kicked.
    #[error("not a member of conversation {0}")]
    NotMember(ConvId),
    /// (the version found, the newest this build knows)
    #[error("the database was written by a newer linechat (schema {0}, this build knows {1})")]
    TooNew(i64, i64),
}

impl StoreError {
    /// A refusal is an answer to the request; a failure is worth a log line.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_)
                | StoreError::Unreachable(_)
                | StoreError::InDoubt(_)
                | StoreError::Internal(_)
        )
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Unavailable(format!("data dir: {e}"))
    }
}

#[cfg(test)]
mod tests;
