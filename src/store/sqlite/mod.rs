//! The SQLite backend: schema, open and load, reads, writes and changes,
//! blob reference counting, and the background checkpointer.

mod blobs;
mod checkpoint;
mod fts;
mod open;
mod read;
pub(super) mod schema;
mod write;

use std::path::PathBuf;

use rusqlite::Connection;
use rusqlite::types::{FromSql, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use super::change_log;
use super::{
    Answer, Assigned, Backend, ConvId, MsgState, Query, Seq, Snapshot, StoreError, StoredMessage,
    UserId, WalSync, Write,
};
use checkpoint::{Checkpointer, WalFile};
use fts::FtsLag;
use read::{blob_access, conv_ends, messages_after, messages_before, read_log, search};
use write::{LastSeqs, PendingRows, TxSeqs, append_log, apply, change, prune_log};

/// One SQLite database file in the data dir, in WAL mode, its commits
/// written to the OS and fsynced by the WAL sync (`sync`) or the
/// checkpointer (`write`).
pub struct SqliteBackend {
    conn: Connection,
    /// Where attachment bodies live: a blob no message holds is deleted here.
    blob_dir: PathBuf,
    /// Stopped (with a last checkpoint) when the backend is dropped, after
    /// the storage thread's last commit.
    _checkpointer: Option<Checkpointer>,
    /// The fsync of every commit under `sync`, until the storage thread
    /// takes it.
    wal_sync: Option<WalFile>,
    last_seqs: LastSeqs,
    fts: FtsLag,
}

impl Backend for SqliteBackend {
    fn load(&mut self, recent: usize) -> Result<Snapshot, StoreError> {
        open::load(&self.conn, recent)
    }

    fn commit(&mut self, writes: &[&Write]) -> Result<Vec<Assigned>, StoreError> {
        let tx = self.conn.transaction()?;
        let mut seqs = TxSeqs::new(&self.last_seqs);
        let mut assigned = Vec::new();
        let mut rows = PendingRows::default();
        for w in writes {
            match w {
                Write::Log(change) => {
                    change_log::append_committed(change, &mut assigned, |p| append_log(&tx, &p))?
                }
                _ => assigned.extend(apply(&tx, w, &mut seqs, &mut rows)?),
            }
        }
        rows.flush(&tx)?;
        if let Some(head) = assigned.iter().rev().find_map(Assigned::log) {
            prune_log(&tx, head)?;
        }
        tx.commit()?;
        self.committed(seqs.into_committed());
        Ok(assigned)
    }

    fn query(&mut self, writes: &[&Write], query: &Query) -> Result<Answer, StoreError> {
        let tx = self.conn.transaction()?;
        let mut seqs = TxSeqs::new(&self.last_seqs);
        let mut rows = PendingRows::default();
        // An edit's log entry holds the message as the query leaves it.
        let (logs, writes) = change_log::split(writes);
        for w in writes {
            apply(&tx, w, &mut seqs, &mut rows)?;
        }
        rows.flush(&tx)?;
        let mut indexed = Vec::new();
        let mut answer = match *query {
            Query::Before {
                conv,
                before,
                limit,
            } => Answer::Messages(messages_before(&tx, conv, before, limit)?),
            Query::After { conv, after, limit } => {
                Answer::Messages(messages_after(&tx, conv, after, limit)?)
            }
            Query::Search {
                conv,
                ref words,
                before,
                limit,
            } => {
                // The conversation's index is made complete first.
                self.fts.step(&tx, Some(conv), usize::MAX, &mut indexed)?;
                Answer::Messages(search(&tx, conv, words, before, limit)?)
            }
            Query::Change {
                conv,
                seq,
                ref text,
            } => {
                let in_index = self.fts.has(conv, seq);
                change(&tx, conv, seq, text.as_deref(), &self.blob_dir, in_index)?
            }
            Query::BlobAccess { ref blob, user } => blob_access(&tx, blob, user)?,
            Query::Log { after, limit } => Answer::Log(read_log(&tx, after, limit)?),
            Query::Ends { user, ref convs } => Answer::Ends(conv_ends(&tx, user, convs)?),
        };
        let last = change_log::append_answered(&logs, &mut answer, |p| append_log(&tx, &p))?;
        if let Some(head) = last {
            prune_log(&tx, head)?;
        }
        tx.commit()?;
        self.fts.committed(indexed);
        self.committed(seqs.into_committed());
        Ok(answer)
    }

    fn background(&mut self, max_rows: usize) -> Result<bool, StoreError> {
        if !self.fts.is_behind() {
            return Ok(false);
        }
        let tx = self.conn.transaction()?;
        let mut indexed = Vec::new();
        self.fts.step(&tx, None, max_rows, &mut indexed)?;
        tx.commit()?;
        self.fts.committed(indexed);
        Ok(self.fts.is_behind())
    }

    fn take_wal_sync(&mut self) -> Option<Box<dyn WalSync>> {
        self.wal_sync
            .take()
            .map(|wal| Box::new(wal) as Box<dyn WalSync>)
    }
}

impl SqliteBackend {
    /// A transaction committed messages with these last seqs.
    fn committed(&mut self, last: std::collections::HashMap<ConvId, Seq>) {
        for &conv in last.keys() {
            self.fts.wrote(conv);
        }
        self.last_seqs.extend(last);
    }
}

/// The full-text index row of a message: conversation and seq packed into
/// the rowid, so one conversation's hits are one rowid range.
pub(super) fn fts_rowid(conv: ConvId, seq: Seq) -> i64 {
    (i64::from(conv.0) << 40) | (seq.0 as i64 & ((1 << 40) - 1))
}

/// Ids are stored as SQLite integers.
macro_rules! sql_id {
    ($t:ident) => {
        impl ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.0))
            }
        }
        impl FromSql for $t {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
                u32::column_result(v).map($t)
            }
        }
    };
}
sql_id!(UserId);
sql_id!(ConvId);

/// Seqs are SQLite integers too; past `i64::MAX` (only `Seq::MAX`, "no
/// bound") they clamp, and a negative one reads as zero.
impl ToSql for Seq {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(clamp(self.0)))
    }
}
impl FromSql for Seq {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        i64::column_result(v).map(|n| Seq(u64::try_from(n).unwrap_or(0)))
    }
}

pub(super) const MESSAGE_COLUMNS: &str = "seq, msgid, sender, at, text, state, reply_to";

pub(super) fn message_row(conv: ConvId, r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    let id: [u8; 16] = r.get(1)?;
    let state: i64 = r.get(5)?;
    Ok(StoredMessage {
        conv,
        seq: r.get(0)?,
        id: uuid::Uuid::from_bytes(id),
        sender: r.get(2)?,
        at: r.get(3)?,
        text: r.get(4)?,
        state: MsgState::from_code(state),
        reply_to: r.get(6)?,
    })
}

pub(super) fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// SQLite's result codes sorted into what the hub can act on.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as Code;
        let text = format!("sqlite: {e}");
        match e.sqlite_error_code() {
            Some(Code::ConstraintViolation) => StoreError::Conflict(text),
            Some(
                Code::DiskFull
                | Code::SystemIoFailure
                | Code::DatabaseBusy
                | Code::DatabaseLocked
                | Code::CannotOpen
                | Code::ReadOnly
                | Code::OutOfMemory
                | Code::PermissionDenied
                | Code::FileLockingProtocolFailed,
            ) => StoreError::Unavailable(text),
            _ => StoreError::Internal(text),
        }
    }
}
