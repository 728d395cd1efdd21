//! Durable state in SQLite, owned by one storage thread.
//!
//! The event loop never touches the disk. It sends [`Request`]s over a channel;
//! the storage thread takes everything queued, commits all the writes in one
//! transaction (group commit: one fsync for many messages), and sends back each
//! request's opaque `done` token, in order, once that transaction is durable.
//! The in-memory tables in the chat layer stay the hot path; this is their log.

mod api;
mod sqlite;
mod thread;

use thiserror::Error;

pub use crate::chat::types::{ConvId, ConvKind, MsgState, RequestState, UserId};

pub use api::{
    Answer, Committed, ConvRow, MemberRow, Query, Request, RequestRow, Snapshot, StoredMessage,
    UserRow, Write,
};
pub use sqlite::open;
pub use sqlite::schema::SCHEMA_VERSION;
pub use thread::{Storage, run_batch};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("data dir: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "data dir was written by a newer linechat (schema {0}, this build knows {SCHEMA_VERSION})"
    )]
    TooNew(i64),
}
