//! Durable state in SQLite, owned by one storage thread.
//!
//! The event loop never touches the disk. It sends [`Request`]s over a channel;
//! the storage thread takes everything queued, commits all the writes in one
//! transaction (group commit: one fsync for many messages), and sends back each
//! request's opaque `done` token, in order, once that transaction is durable.
//! The in-memory tables in the chat layer stay the hot path; this is their log.

mod schema;

use std::path::Path;
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::types::{FromSql, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, params};
use thiserror::Error;

pub use crate::chat::types::{ConvId, ConvKind, MsgState, RequestState, UserId};

pub use schema::SCHEMA_VERSION;

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

/// One row-level change. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    User {
        id: UserId,
        name: String,
        phc: String,
        created: i64,
    },
    LastSeen {
        user: UserId,
        at: i64,
    },
    Conv {
        id: ConvId,
        kind: ConvKind,
        name: String,
        created: i64,
    },
    Member {
        conv: ConvId,
        user: UserId,
        admin: bool,
        joined: i64,
    },
    RemoveMember {
        conv: ConvId,
        user: UserId,
    },
    Message(StoredMessage),
    Friendship {
        a: UserId,
        b: UserId,
        since: i64,
    },
    Unfriend {
        a: UserId,
        b: UserId,
    },
    /// Where a user's delivery and read cursors stand in a conversation.
    Cursor {
        user: UserId,
        conv: ConvId,
        delivered: u64,
        read: u64,
    },
    /// An attachment body now on disk.
    Blob {
        id: String,
        size: u64,
        mime: String,
    },
    /// Message `seq` of `conv` carries blob `blob`.
    BlobRef {
        conv: ConvId,
        seq: u64,
        blob: String,
    },
    /// Inserts or updates the request from `from` to `to`.
    Request {
        from: UserId,
        to: UserId,
        state: RequestState,
        at: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub conv: ConvId,
    pub seq: u64,
    pub id: uuid::Uuid,
    pub sender: UserId,
    pub at: i64,
    pub text: String,
    pub state: MsgState,
}

/// The full-text index row of a message: conversation and seq packed into
/// the rowid, so one conversation's hits are one rowid range.
fn fts_rowid(conv: ConvId, seq: u64) -> i64 {
    (i64::from(conv.0) << 40) | (seq as i64 & ((1 << 40) - 1))
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

/// Everything the chat layer rebuilds its tables from at startup.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub users: Vec<UserRow>,
    pub convs: Vec<ConvRow>,
    pub members: Vec<MemberRow>,
    pub friendships: Vec<(UserId, UserId, i64)>,
    pub requests: Vec<RequestRow>,
    /// (user, conv, delivered, read)
    pub cursors: Vec<(UserId, ConvId, u64, u64)>,
}

#[derive(Debug)]
pub struct UserRow {
    pub id: UserId,
    pub name: String,
    pub phc: String,
    pub last_seen: Option<i64>,
}

#[derive(Debug)]
pub struct ConvRow {
    pub id: ConvId,
    pub kind: ConvKind,
    pub name: String,
    pub last_seq: u64,
    /// The newest messages, oldest first, at most the recent-buffer size.
    pub recent: Vec<StoredMessage>,
}

#[derive(Debug)]
pub struct MemberRow {
    pub conv: ConvId,
    pub user: UserId,
    pub admin: bool,
    pub joined: i64,
}

#[derive(Debug)]
pub struct RequestRow {
    pub from: UserId,
    pub to: UserId,
    pub state: RequestState,
    pub at: i64,
}

/// A read (or a checked change) that needs an answer from the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Newest first: messages with seq below `before`.
    Before {
        conv: ConvId,
        before: u64,
        limit: usize,
    },
    /// Oldest first: messages with seq above `after`.
    After {
        conv: ConvId,
        after: u64,
        limit: usize,
    },
    /// Newest first: messages below `before` matching every word.
    Search {
        conv: ConvId,
        words: Vec<String>,
        before: u64,
        limit: usize,
    },
    /// May `user` fetch blob `blob`: is it in a conversation they belong to?
    BlobAccess { blob: String, user: UserId },
    /// Replaces the text (`Some`) or deletes (`None`) a message, if it exists,
    /// is not deleted, and (with `only_sender`) was sent by that user.
    Change {
        conv: ConvId,
        seq: u64,
        only_sender: Option<UserId>,
        text: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Writes only.
    Done,
    Messages(Vec<StoredMessage>),
    /// The message as it now is.
    Changed(StoredMessage),
    NotFound,
    NotYours,
    /// The message carries an attachment, which cannot be edited.
    Attachment,
    /// A blob the asker may fetch.
    Blob {
        size: u64,
        mime: String,
    },
}

/// Writes from one command, an optional query, and what to hand back.
pub struct Request<C> {
    pub writes: Vec<Write>,
    pub query: Option<Query>,
    pub done: Option<C>,
}

impl<C> Request<C> {
    pub fn write(writes: Vec<Write>, done: Option<C>) -> Self {
        Request {
            writes,
            query: None,
            done,
        }
    }

    pub fn query(query: Query, done: C) -> Self {
        Request {
            writes: Vec::new(),
            query: Some(query),
            done: Some(done),
        }
    }
}

/// Each token of one storage round, in submission order, with its answer;
/// `Err` means its writes are not durable.
pub struct Committed<C> {
    pub done: Vec<(C, Result<Answer, ()>)>,
    pub took: Duration,
}

/// Opens (creating or migrating) the database in `dir` and loads the snapshot.
pub fn open(dir: &Path, recent: usize) -> Result<(Connection, Snapshot), StoreError> {
    std::fs::create_dir_all(dir)?;
    let mut conn = Connection::open(dir.join("linechat.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk when it returns, which `--durability sync` promises.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    // Hot data lives in the chat layer's tables; SQLite's own cache mostly
    // serves old history, which the OS page cache holds as well.
    conn.pragma_update(None, "cache_size", -1024)?;
    // Checkpoints copy the WAL into the database and fsync it; done inline
    // they stall the commit that every `OK SAY` waits for by tens of
    // milliseconds. A background thread does them instead (see `Storage`).
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    schema::migrate(&mut conn)?;
    let snapshot = load(&conn, recent)?;
    Ok((conn, snapshot))
}

fn load(conn: &Connection, recent: usize) -> Result<Snapshot, StoreError> {
    let mut snap = Snapshot::default();
    let mut stmt = conn.prepare("SELECT id, name, phc, last_seen FROM users ORDER BY id")?;
    snap.users = stmt
        .query_map([], |r| {
            Ok(UserRow {
                id: r.get(0)?,
                name: r.get(1)?,
                phc: r.get(2)?,
                last_seen: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare(
        "SELECT id, kind, name, (SELECT COALESCE(MAX(seq), 0) FROM messages m WHERE m.conv = c.id)
         FROM convs c ORDER BY id",
    )?;
    let convs: Vec<(ConvId, i64, String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    for (id, kind, name, last_seq) in convs {
        let kind = ConvKind::from_code(kind);
        let mut recent_msgs = messages_before(conn, id, u64::MAX, recent)?;
        recent_msgs.reverse();
        snap.convs.push(ConvRow {
            id,
            kind,
            name,
            last_seq: u64::try_from(last_seq).unwrap_or(0),
            recent: recent_msgs,
        });
    }
    let mut stmt =
        conn.prepare("SELECT conv, user, admin, joined FROM members ORDER BY joined, rowid")?;
    snap.members = stmt
        .query_map([], |r| {
            Ok(MemberRow {
                conv: r.get(0)?,
                user: r.get(1)?,
                admin: r.get(2)?,
                joined: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare("SELECT a, b, since FROM friendships")?;
    snap.friendships = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare("SELECT sender, recipient, state, at FROM requests ORDER BY at")?;
    snap.requests = stmt
        .query_map([], |r| {
            let state: i64 = r.get(2)?;
            Ok(RequestRow {
                from: r.get(0)?,
                to: r.get(1)?,
                state: RequestState::from_code(state),
                at: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare("SELECT user, conv, delivered, read FROM cursors")?;
    snap.cursors = stmt
        .query_map([], |r| {
            let d: i64 = r.get(2)?;
            let rd: i64 = r.get(3)?;
            Ok((r.get(0)?, r.get(1)?, d as u64, rd as u64))
        })?
        .collect::<Result<_, _>>()?;
    Ok(snap)
}

const MESSAGE_COLUMNS: &str = "seq, msgid, sender, at, text, state";

fn message_row(conv: ConvId, r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    let id: [u8; 16] = r.get(1)?;
    let seq: i64 = r.get(0)?;
    let state: i64 = r.get(5)?;
    Ok(StoredMessage {
        conv,
        seq: u64::try_from(seq).unwrap_or(0),
        id: uuid::Uuid::from_bytes(id),
        sender: r.get(2)?,
        at: r.get(3)?,
        text: r.get(4)?,
        state: MsgState::from_code(state),
    })
}

fn clamp(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// Newest first: up to `limit` messages of `conv` with seq below `before`.
pub fn messages_before(
    conn: &Connection,
    conv: ConvId,
    before: u64,
    limit: usize,
) -> Result<Vec<StoredMessage>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages
         WHERE conv = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
    ))?;
    stmt.query_map(params![conv, clamp(before), limit as i64], |r| {
        message_row(conv, r)
    })?
    .collect()
}

/// Oldest first: up to `limit` messages of `conv` with seq above `after`.
fn messages_after(
    conn: &Connection,
    conv: ConvId,
    after: u64,
    limit: usize,
) -> Result<Vec<StoredMessage>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages
         WHERE conv = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
    ))?;
    stmt.query_map(params![conv, clamp(after), limit as i64], |r| {
        message_row(conv, r)
    })?
    .collect()
}

/// Each word becomes a quoted FTS5 term, so user input is never FTS syntax.
fn fts_query(words: &[String]) -> String {
    words
        .iter()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn search(
    conn: &Connection,
    conv: ConvId,
    words: &[String],
    before: u64,
    limit: usize,
) -> Result<Vec<StoredMessage>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conv = ?1 AND seq IN (
            SELECT rowid & ((1 << 40) - 1) FROM messages_fts
            WHERE messages_fts MATCH ?2 AND rowid >= ?3 AND rowid < ?4
            ORDER BY rowid DESC LIMIT ?5)
         ORDER BY seq DESC"
    ))?;
    let lo = fts_rowid(conv, 0);
    let hi = fts_rowid(conv, 0) + clamp(before).min(1 << 40);
    stmt.query_map(params![conv, fts_query(words), lo, hi, limit as i64], |r| {
        message_row(conv, r)
    })?
    .collect()
}

/// Drops message (conv, seq)'s hold on its blob; a blob nothing holds any
/// more is deleted, row and file.
fn unref_blob(
    tx: &rusqlite::Transaction<'_>,
    conv: ConvId,
    seq: u64,
    blob_dir: &Path,
) -> Result<(), rusqlite::Error> {
    let blob: Option<String> = tx
        .prepare_cached("DELETE FROM blob_refs WHERE conv = ?1 AND seq = ?2 RETURNING blob")?
        .query_map(params![conv, clamp(seq)], |r| r.get(0))?
        .next()
        .transpose()?;
    let Some(blob) = blob else {
        return Ok(());
    };
    let still: i64 = tx
        .prepare_cached("SELECT COUNT(*) FROM blob_refs WHERE blob = ?1")?
        .query_row([&blob], |r| r.get(0))?;
    if still == 0 && crate::blob::is_blob_id(&blob) {
        tx.prepare_cached("DELETE FROM blobs WHERE id = ?1")?
            .execute([&blob])?;
        // The row goes with the transaction; a file left by a crash right
        // here is unreachable and harmless.
        if let Err(e) = std::fs::remove_file(crate::blob::path(blob_dir, &blob)) {
            log::warn!("removing blob {blob}: {e}");
        }
    }
    Ok(())
}

fn blob_access(
    tx: &rusqlite::Transaction<'_>,
    blob: &str,
    user: UserId,
) -> Result<Answer, rusqlite::Error> {
    let row: Option<(i64, String)> = tx
        .prepare_cached(
            "SELECT b.size, b.mime FROM blobs b WHERE b.id = ?1 AND EXISTS (
                SELECT 1 FROM blob_refs r JOIN members m ON m.conv = r.conv
                WHERE r.blob = b.id AND m.user = ?2)",
        )?
        .query_map(params![blob, user], |r| Ok((r.get(0)?, r.get(1)?)))?
        .next()
        .transpose()?;
    Ok(match row {
        Some((size, mime)) => Answer::Blob {
            size: size as u64,
            mime,
        },
        None => Answer::NotFound,
    })
}

fn change(
    tx: &rusqlite::Transaction<'_>,
    conv: ConvId,
    seq: u64,
    only_sender: Option<UserId>,
    text: Option<&str>,
    blob_dir: &Path,
) -> Result<Answer, rusqlite::Error> {
    let found = {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conv = ?1 AND seq = ?2"
        ))?;
        let mut rows = stmt.query_map(params![conv, clamp(seq)], |r| message_row(conv, r))?;
        rows.next().transpose()?
    };
    let Some(mut msg) = found.filter(|m| m.state != MsgState::Deleted) else {
        return Ok(Answer::NotFound);
    };
    if only_sender.is_some_and(|s| s != msg.sender) {
        return Ok(Answer::NotYours);
    }
    let has_blob: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM blob_refs WHERE conv = ?1 AND seq = ?2)")?
        .query_row(params![conv, clamp(seq)], |r| r.get(0))?;
    if has_blob && text.is_some() {
        return Ok(Answer::Attachment);
    }
    let rowid = fts_rowid(conv, seq);
    tx.prepare_cached("DELETE FROM messages_fts WHERE rowid = ?1")?
        .execute([rowid])?;
    match text {
        Some(t) => {
            msg.text = t.to_string();
            msg.state = MsgState::Edited;
            tx.prepare_cached("INSERT INTO messages_fts (rowid, text) VALUES (?1, ?2)")?
                .execute(params![rowid, t])?;
        }
        None => {
            msg.text.clear();
            msg.state = MsgState::Deleted;
            unref_blob(tx, conv, seq, blob_dir)?;
        }
    }
    tx.prepare_cached("UPDATE messages SET text = ?3, state = ?4 WHERE conv = ?1 AND seq = ?2")?
        .execute(params![conv, clamp(seq), msg.text, msg.state as i64])?;
    Ok(Answer::Changed(msg))
}

fn apply(tx: &rusqlite::Transaction<'_>, w: &Write) -> Result<(), rusqlite::Error> {
    match w {
        Write::User {
            id,
            name,
            phc,
            created,
        } => {
            tx.prepare_cached(
                "INSERT INTO users (id, name, phc, created) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![id, name, phc, created])?;
        }
        Write::LastSeen { user, at } => {
            tx.prepare_cached("UPDATE users SET last_seen = ?2 WHERE id = ?1")?
                .execute(params![user, at])?;
        }
        Write::Conv {
            id,
            kind,
            name,
            created,
        } => {
            tx.prepare_cached(
                "INSERT INTO convs (id, kind, name, created) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![id, *kind as i64, name, created])?;
        }
        Write::Member {
            conv,
            user,
            admin,
            joined,
        } => {
            tx.prepare_cached(
                "INSERT INTO members (conv, user, admin, joined) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (conv, user) DO UPDATE SET admin = excluded.admin",
            )?
            .execute(params![conv, user, admin, joined])?;
        }
        Write::RemoveMember { conv, user } => {
            tx.prepare_cached("DELETE FROM members WHERE conv = ?1 AND user = ?2")?
                .execute(params![conv, user])?;
        }
        Write::Message(m) => {
            tx.prepare_cached(
                "INSERT INTO messages (conv, seq, msgid, sender, at, text)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                m.conv,
                clamp(m.seq),
                m.id.as_bytes(),
                m.sender,
                m.at,
                m.text
            ])?;
            tx.prepare_cached("INSERT INTO messages_fts (rowid, text) VALUES (?1, ?2)")?
                .execute(params![fts_rowid(m.conv, m.seq), m.text])?;
        }
        Write::Blob { id, size, mime } => {
            tx.prepare_cached("INSERT OR IGNORE INTO blobs (id, size, mime) VALUES (?1, ?2, ?3)")?
                .execute(params![id, clamp(*size), mime])?;
        }
        Write::BlobRef { conv, seq, blob } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO blob_refs (conv, seq, blob) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![conv, clamp(*seq), blob])?;
        }
        Write::Cursor {
            user,
            conv,
            delivered,
            read,
        } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO cursors (user, conv, delivered, read) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![user, conv, clamp(*delivered), clamp(*read)])?;
        }
        Write::Friendship { a, b, since } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO friendships (a, b, since) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![a.min(b), a.max(b), since])?;
        }
        Write::Unfriend { a, b } => {
            tx.prepare_cached("DELETE FROM friendships WHERE a = ?1 AND b = ?2")?
                .execute(params![a.min(b), a.max(b)])?;
            tx.prepare_cached(
                "DELETE FROM requests WHERE state = ?3
                 AND ((sender = ?1 AND recipient = ?2) OR (sender = ?2 AND recipient = ?1))",
            )?
            .execute(params![a, b, RequestState::Accepted as i64])?;
        }
        Write::Request {
            from,
            to,
            state,
            at,
        } => {
            tx.prepare_cached(
                "INSERT INTO requests (sender, recipient, state, at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (sender, recipient) DO UPDATE SET state = excluded.state, at = excluded.at",
            )?
            .execute(params![from, to, *state as i64, at])?;
        }
    }
    Ok(())
}

/// Most requests a single transaction takes, so one commit stays short.
const MAX_BATCH: usize = 4096;

/// Handle to the storage thread; dropping it makes the thread finish its
/// queue, commit, and exit.
pub struct Storage<C> {
    tx: mpsc::Sender<Request<C>>,
    thread: Option<thread::JoinHandle<()>>,
    /// Dropping it stops the checkpointer.
    checkpoint_stop: Option<mpsc::Sender<()>>,
    checkpointer: Option<thread::JoinHandle<()>>,
}

/// How often the background thread moves the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Runs PASSIVE checkpoints on a connection of its own: they never block the
/// storage thread's commits, and they keep the WAL from growing unbounded.
fn checkpointer(path: String, stop: mpsc::Receiver<()>) {
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

impl<C: Send + 'static> Storage<C> {
    pub fn start(
        mut conn: Connection,
        blob_dir: std::path::PathBuf,
        done: mpsc::Sender<Committed<C>>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> Self {
        let (stop_tx, stop_rx) = mpsc::channel();
        let checkpoint = conn.path().map(str::to_string).and_then(|path| {
            thread::Builder::new()
                .name("checkpoint".into())
                .spawn(move || checkpointer(path, stop_rx))
                .ok()
        });
        let (tx, rx) = mpsc::channel::<Request<C>>();
        let thread = thread::Builder::new()
            .name("storage".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    let started = Instant::now();
                    let done_tokens = run_batch(&mut conn, &blob_dir, batch);
                    if done_tokens.is_empty() {
                        continue;
                    }
                    let committed = Committed {
                        done: done_tokens,
                        took: started.elapsed(),
                    };
                    if done.send(committed).is_err() {
                        return;
                    }
                    wake();
                }
            })
            .expect("spawning the storage thread");
        Storage {
            tx,
            thread: Some(thread),
            checkpoint_stop: Some(stop_tx),
            checkpointer: checkpoint,
        }
    }

    pub fn submit(&self, req: Request<C>) {
        if self.tx.send(req).is_err() {
            log::error!("storage thread is gone; write dropped");
        }
    }
}

impl<C> Drop for Storage<C> {
    fn drop(&mut self) {
        // Closing the channel lets the thread drain and exit; joining makes
        // shutdown wait for the last commit.
        let (dead, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.tx, dead));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Then a last checkpoint, which also empties the WAL.
        drop(self.checkpoint_stop.take());
        if let Some(t) = self.checkpointer.take() {
            let _ = t.join();
        }
    }
}

/// Runs one round: consecutive write-only requests share one transaction
/// (group commit); a request with a query runs in its own, in its place, so
/// answers keep submission order.
pub fn run_batch<C>(
    conn: &mut Connection,
    blob_dir: &Path,
    batch: Vec<Request<C>>,
) -> Vec<(C, Result<Answer, ()>)> {
    let mut out = Vec::with_capacity(batch.len());
    let mut group = Vec::new();
    for req in batch {
        if req.query.is_none() {
            group.push(req);
            continue;
        }
        commit_group(conn, std::mem::take(&mut group), &mut out);
        let answer =
            run_query(conn, blob_dir, &req).map_err(|e| log::error!("storage query failed: {e}"));
        if let Some(token) = req.done {
            out.push((token, answer));
        }
    }
    commit_group(conn, group, &mut out);
    out
}

/// Commits write-only requests in one transaction. Should that fail, each is
/// retried alone, so one bad write cannot fail its neighbours.
fn commit_group<C>(
    conn: &mut Connection,
    group: Vec<Request<C>>,
    out: &mut Vec<(C, Result<Answer, ()>)>,
) {
    if group.is_empty() {
        return;
    }
    let all_ok = match commit(conn, group.iter().flat_map(|r| &r.writes)) {
        Ok(()) => true,
        Err(e) => {
            log::error!(
                "group commit of {} requests failed: {e}; retrying one by one",
                group.len()
            );
            false
        }
    };
    for req in group {
        let ok = all_ok
            || commit(conn, req.writes.iter())
                .map_err(|e| log::error!("storage write failed: {e}"))
                .is_ok();
        if let Some(token) = req.done {
            out.push((token, if ok { Ok(Answer::Done) } else { Err(()) }));
        }
    }
}

fn run_query<C>(
    conn: &mut Connection,
    blob_dir: &Path,
    req: &Request<C>,
) -> Result<Answer, rusqlite::Error> {
    let tx = conn.transaction()?;
    for w in &req.writes {
        apply(&tx, w)?;
    }
    let answer = match req.query.as_ref() {
        None => Answer::Done,
        Some(&Query::Before {
            conv,
            before,
            limit,
        }) => Answer::Messages(messages_before(&tx, conv, before, limit)?),
        Some(&Query::After { conv, after, limit }) => {
            Answer::Messages(messages_after(&tx, conv, after, limit)?)
        }
        Some(Query::Search {
            conv,
            words,
            before,
            limit,
        }) => Answer::Messages(search(&tx, *conv, words, *before, *limit)?),
        Some(Query::Change {
            conv,
            seq,
            only_sender,
            text,
        }) => change(&tx, *conv, *seq, *only_sender, text.as_deref(), blob_dir)?,
        Some(Query::BlobAccess { blob, user }) => blob_access(&tx, blob, *user)?,
    };
    tx.commit()?;
    Ok(answer)
}

fn commit<'a>(
    conn: &mut Connection,
    writes: impl Iterator<Item = &'a Write>,
) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    for w in writes {
        apply(&tx, w)?;
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data dir written by the first schema opens with today's build: it is
    /// migrated forward, and its messages are found by SEARCH.
    #[test]
    fn an_older_data_dir_is_migrated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join("linechat.db")).unwrap();
            conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute_batch(
                "INSERT INTO users VALUES (0, 'alice', 'phc', 0, NULL);
                 INSERT INTO convs VALUES (0, 0, '#old', 0);
                 INSERT INTO members VALUES (0, 0, 1, 0);",
            )
            .unwrap();
            conn.execute(
                "INSERT INTO messages VALUES (0, 1, ?1, 0, 5, 'hello from the past')",
                [uuid::Uuid::now_v7().as_bytes()],
            )
            .unwrap();
        }
        let (mut conn, snap) = open(dir.path(), 10).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(snap.convs[0].last_seq, 1);
        assert_eq!(snap.convs[0].recent[0].text, "hello from the past");
        let found = run_batch(
            &mut conn,
            dir.path(),
            vec![Request::query(
                Query::Search {
                    conv: ConvId(0),
                    words: vec!["past".into()],
                    before: u64::MAX,
                    limit: 5,
                },
                (),
            )],
        );
        match &found[0].1 {
            Ok(Answer::Messages(m)) => assert_eq!(m.len(), 1),
            other => panic!("{other:?}"),
        }
        // A data dir from a newer build is refused rather than misread.
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        assert!(matches!(open(dir.path(), 10), Err(StoreError::TooNew(_))));
    }
}
