//! Writes: each row-level change, and the checked change of EDIT and DELETE.

use std::path::Path;

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use super::blobs::unref_blob;
use super::{MESSAGE_COLUMNS, clamp, fts_rowid, message_row};
use crate::store::{Answer, Assigned, ConvId, MsgState, RequestState, Seq, StoreError, Write};

pub(super) fn change(
    tx: &rusqlite::Transaction<'_>,
    conv: ConvId,
    seq: Seq,
    text: Option<&str>,
    blob_dir: &Path,
    indexed: bool,
) -> Result<Answer, StoreError> {
    let found = {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conv = ?1 AND seq = ?2"
        ))?;
        let mut rows = stmt.query_map(params![conv, seq], |r| message_row(conv, r))?;
        rows.next().transpose()?
    };
    let mut msg = found.ok_or(StoreError::NotFound)?;
    if msg.state == MsgState::Deleted {
        return Err(StoreError::Conflict(format!("message {seq} is deleted")));
    }
    // A message the indexer has not reached yet is indexed as it is then.
    // One it has is taken out with the text it was indexed with, which is
    // the stored text: the indexer reads the row, and edits replace both.
    let rowid = fts_rowid(conv, seq);
    if indexed {
        tx.prepare_cached(
            "INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', ?1, ?2)",
        )?
        .execute(params![rowid, msg.text])?;
    }
    match text {
        Some(t) => {
            msg.text = t.to_string();
            msg.state = MsgState::Edited;
            if indexed {
                tx.prepare_cached("INSERT INTO messages_fts (rowid, text) VALUES (?1, ?2)")?
                    .execute(params![rowid, t])?;
            }
        }
        None => {
            msg.text.clear();
            msg.state = MsgState::Deleted;
            unref_blob(tx, conv, seq, blob_dir)?;
        }
    }
    tx.prepare_cached("UPDATE messages SET text = ?3, state = ?4 WHERE conv = ?1 AND seq = ?2")?
        .execute(params![conv, seq, msg.text, msg.state as i64])?;
    Ok(Answer::Changed { msg, logged: None })
}

/// The last seq of each conversation, so that a commit need not read it
/// back for every message. SQLite has one writer, this backend, so what it
/// has seen stays true.
#[derive(Debug, Default)]
pub(super) struct LastSeqs(HashMap<ConvId, Seq>);

/// What one transaction sees: the committed last seqs, plus the seqs it
/// wrote itself, which join them only if it commits.
pub(super) struct TxSeqs<'a> {
    committed: &'a LastSeqs,
    own: HashMap<ConvId, Seq>,
}

impl<'a> TxSeqs<'a> {
    pub(super) fn new(committed: &'a LastSeqs) -> Self {
        TxSeqs {
            committed,
            own: HashMap::new(),
        }
    }

    /// The transaction committed: its seqs are the last ones now.
    pub(super) fn into_committed(self) -> HashMap<ConvId, Seq> {
        self.own
    }

    /// The next seq of `conv`, taken by this transaction.
    fn take_next(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        conv: ConvId,
    ) -> Result<Seq, rusqlite::Error> {
        // One seek down the primary key, the first time only.
        let seq = self.last(tx, conv)?.next();
        self.own.insert(conv, seq);
        Ok(seq)
    }

    /// The last seq of `conv` as this transaction sees it.
    fn last(&self, tx: &rusqlite::Transaction<'_>, conv: ConvId) -> Result<Seq, rusqlite::Error> {
        match self.own.get(&conv).or(self.committed.0.get(&conv)) {
            Some(&last) => Ok(last),
            None => Ok(tx
                .prepare_cached(
                    "SELECT seq FROM messages WHERE conv = ?1 ORDER BY seq DESC LIMIT 1",
                )?
                .query_row([conv], |r| r.get(0))
                .optional()?
                .unwrap_or(Seq::ZERO)),
        }
    }

    /// A message with a seq chosen elsewhere (`--durability async`).
    fn saw(&mut self, conv: ConvId, seq: Seq) {
        let last = self.own.entry(conv).or_default();
        *last = (*last).max(seq);
    }
}

impl LastSeqs {
    pub(super) fn extend(&mut self, committed: HashMap<ConvId, Seq>) {
        for (conv, seq) in committed {
            let last = self.0.entry(conv).or_default();
            *last = (*last).max(seq);
        }
    }
}

/// Rows waiting to be inserted: a commit inserts its messages and its
/// cursor moves [`ROWS_PER_INSERT`] to a statement, which runs the
/// statement's program once for all of them. Row by row, a cursor upsert
/// cost about 5,000 instructions, much of it rusqlite's statement cache
/// (hashing the SQL, resetting the statement) rather than SQLite's b-tree.
/// Cursors merge by maximum, so moving their upserts to the end of the
/// transaction changes nothing that it stores.
#[derive(Default)]
pub(super) struct PendingRows<'a> {
    messages: Vec<MessageRow<'a>>,
    cursors: Vec<CursorRow>,
}

struct MessageRow<'a> {
    conv: ConvId,
    seq: Seq,
    id: &'a uuid::Uuid,
    sender: crate::store::UserId,
    at: i64,
    text: &'a str,
    reply_to: Option<Seq>,
}

struct CursorRow {
    user: crate::store::UserId,
    conv: ConvId,
    delivered: Seq,
    read: Seq,
}

/// Rows per multi-row INSERT; the rest of a commit's rows go one by one.
const ROWS_PER_INSERT: usize = 16;

/// A row kind that [`PendingRows`] inserts several to a statement.
trait BatchedRow {
    /// Parameters per row.
    const COLUMNS: usize;
    /// The statement inserting `values` (one `(?, ...)` per row).
    fn insert(values: &str) -> String;
    /// Binds this row to the parameters after the first `from`.
    fn bind(&self, stmt: &mut rusqlite::CachedStatement<'_>, from: usize) -> rusqlite::Result<()>;
}

impl BatchedRow for MessageRow<'_> {
    const COLUMNS: usize = 7;

    fn insert(values: &str) -> String {
        format!(
            "INSERT INTO messages (conv, seq, msgid, sender, at, text, reply_to) VALUES {values}"
        )
    }

    fn bind(&self, stmt: &mut rusqlite::CachedStatement<'_>, from: usize) -> rusqlite::Result<()> {
        stmt.raw_bind_parameter(from + 1, self.conv)?;
        stmt.raw_bind_parameter(from + 2, self.seq)?;
        stmt.raw_bind_parameter(from + 3, &self.id.as_bytes()[..])?;
        stmt.raw_bind_parameter(from + 4, self.sender)?;
        stmt.raw_bind_parameter(from + 5, self.at)?;
        stmt.raw_bind_parameter(from + 6, self.text)?;
        stmt.raw_bind_parameter(from + 7, self.reply_to)
    }
}

impl BatchedRow for CursorRow {
    const COLUMNS: usize = 4;

    fn insert(values: &str) -> String {
        format!(
            "INSERT INTO cursors (user, conv, delivered, read) VALUES {values}
             ON CONFLICT (user, conv) DO UPDATE SET
             delivered = MAX(delivered, excluded.delivered), read = MAX(read, excluded.read)"
        )
    }

    fn bind(&self, stmt: &mut rusqlite::CachedStatement<'_>, from: usize) -> rusqlite::Result<()> {
        stmt.raw_bind_parameter(from + 1, self.user)?;
        stmt.raw_bind_parameter(from + 2, self.conv)?;
        stmt.raw_bind_parameter(from + 3, self.delivered)?;
        stmt.raw_bind_parameter(from + 4, self.read)
    }
}

/// The INSERT of `rows` rows of kind `R`.
fn insert_sql<R: BatchedRow>(rows: usize) -> String {
    let row = format!("({})", vec!["?"; R::COLUMNS].join(", "));
    R::insert(&vec![row.as_str(); rows].join(", "))
}

/// Inserts `rows`, [`ROWS_PER_INSERT`] to a statement and the rest alone.
fn insert_rows<R: BatchedRow>(tx: &rusqlite::Transaction<'_>, rows: &[R]) -> rusqlite::Result<()> {
    let mut chunks = rows.chunks_exact(ROWS_PER_INSERT);
    if chunks.len() > 0 {
        let mut many = tx.prepare_cached(&insert_sql::<R>(ROWS_PER_INSERT))?;
        for chunk in chunks.by_ref() {
            for (i, r) in chunk.iter().enumerate() {
                r.bind(&mut many, i * R::COLUMNS)?;
            }
            many.raw_execute()?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut one = tx.prepare_cached(&insert_sql::<R>(1))?;
        for r in rest {
            r.bind(&mut one, 0)?;
            one.raw_execute()?;
        }
    }
    Ok(())
}

impl PendingRows<'_> {
    /// Inserts every waiting row.
    pub(super) fn flush(&mut self, tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
        insert_rows(tx, &self.messages)?;
        insert_rows(tx, &self.cursors)?;
        self.messages.clear();
        self.cursors.clear();
        Ok(())
    }
}

/// Applies one write (a message or cursor row joins `rows`, which the
/// caller flushes before the transaction commits or reads); returns what it assigned, if
/// it [`Write::assigns`].
pub(super) fn apply<'a>(
    tx: &rusqlite::Transaction<'_>,
    w: &'a Write,
    seqs: &mut TxSeqs<'_>,
    rows: &mut PendingRows<'a>,
) -> Result<Option<Assigned>, rusqlite::Error> {
    match w {
        Write::Register { name, phc, created } => {
            // The rowid SQLite picks is the largest plus one: a rolled-back
            // registration leaves no hole.
            let id = tx
                .prepare_cached(
                    "INSERT INTO users (name, phc, created) VALUES (?1, ?2, ?3) RETURNING id",
                )?
                .query_row(params![name, phc, created], |r| r.get(0))?;
            Ok(Some(Assigned::User(id)))
        }
        Write::NewConv(nc) => {
            let id = tx
                .prepare_cached(
                    "INSERT INTO convs (kind, name, created) VALUES (?1, ?2, ?3) RETURNING id",
                )?
                .query_row(params![nc.kind as i64, nc.name, nc.created], |r| r.get(0))?;
            for m in &nc.members {
                apply_row(tx, &m.write(id))?;
            }
            Ok(Some(Assigned::Conv(id)))
        }
        Write::Post(p) => {
            // The next seq, taken inside the transaction that writes it;
            // SQLite has one writer at a time, so no other commit can take it.
            let seq = seqs.take_next(tx, p.conv)?;
            rows.messages.push(MessageRow {
                conv: p.conv,
                seq,
                id: &p.id,
                sender: p.sender,
                at: p.at,
                text: &p.text,
                reply_to: p.reply_to,
            });
            if let Some(blob) = &p.blob {
                let conv = p.conv;
                let blob = blob.clone();
                apply_row(tx, &Write::BlobRef { conv, seq, blob })?;
            }
            Ok(Some(Assigned::Seq(seq)))
        }
        Write::Message(m) => {
            seqs.saw(m.conv, m.seq);
            rows.messages.push(MessageRow {
                conv: m.conv,
                seq: m.seq,
                id: &m.id,
                sender: m.sender,
                at: m.at,
                text: &m.text,
                reply_to: m.reply_to,
            });
            Ok(None)
        }
        &Write::Cursor {
            user,
            conv,
            delivered,
            read,
        } => {
            rows.cursors.push(CursorRow {
                user,
                conv,
                delivered,
                read,
            });
            Ok(None)
        }
        &Write::JoinCursor { user, conv } => {
            let last = seqs.last(tx, conv)?;
            rows.cursors.push(CursorRow {
                user,
                conv,
                delivered: last,
                read: last,
            });
            Ok(None)
        }
        other => apply_row(tx, other).map(|()| None),
    }
}

/// Applies a write that assigns nothing and is not a message.
fn apply_row(tx: &rusqlite::Transaction<'_>, w: &Write) -> Result<(), rusqlite::Error> {
    match w {
        // `apply` takes these itself; reaching here is a bug, failed as one.
        Write::Register { .. }
        | Write::NewConv(_)
        | Write::Post(_)
        | Write::Message(_)
        | Write::Cursor { .. }
        | Write::JoinCursor { .. }
        | Write::Log(_) => {
            return Err(rusqlite::Error::ToSqlConversionFailure(
                "a message, a cursor, a log entry or an assigning write outside apply".into(),
            ));
        }
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
        Write::Blob { id, size, mime } => {
            tx.prepare_cached("INSERT OR IGNORE INTO blobs (id, size, mime) VALUES (?1, ?2, ?3)")?
                .execute(params![id, clamp(*size), mime])?;
        }
        Write::BlobRef { conv, seq, blob } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO blob_refs (conv, seq, blob) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![conv, seq, blob])?;
        }
        Write::Friendship { a, b, since } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO friendships (a, b, since) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![a.min(b), a.max(b), since])?;
        }
        Write::Reaction {
            conv,
            seq,
            user,
            reaction,
            added,
        } => {
            let sql = if *added {
                "INSERT OR IGNORE INTO reactions (conv, seq, user, reaction) VALUES (?1, ?2, ?3, ?4)"
            } else {
                "DELETE FROM reactions WHERE conv = ?1 AND seq = ?2 AND user = ?3 AND reaction = ?4"
            };
            tx.prepare_cached(sql)?
                .execute(params![conv, seq, user, reaction])?;
        }
        Write::Ban { conv, user, on } => {
            let sql = if *on {
                "INSERT OR IGNORE INTO bans (conv, user) VALUES (?1, ?2)"
            } else {
                "DELETE FROM bans WHERE conv = ?1 AND user = ?2"
            };
            tx.prepare_cached(sql)?.execute(params![conv, user])?;
        }
        Write::Mute { conv, user, until } => match until {
            Some(until) => {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO mutes (conv, user, until) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![conv, user, until])?;
            }
            None => {
                tx.prepare_cached("DELETE FROM mutes WHERE conv = ?1 AND user = ?2")?
                    .execute(params![conv, user])?;
            }
        },
        Write::Topic { conv, text } => {
            tx.prepare_cached("UPDATE convs SET topic = ?2 WHERE id = ?1")?
                .execute(params![conv, text])?;
        }
        Write::Pusher {
            user,
            app_id,
            pushkey,
            url,
        } => match url {
            Some(url) => {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO pushers (user_id, app_id, pushkey, url)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![user, app_id, pushkey, url])?;
            }
            None => {
                tx.prepare_cached("DELETE FROM pushers WHERE app_id = ?1 AND pushkey = ?2")?
                    .execute(params![app_id, pushkey])?;
            }
        },
        Write::Push(p) => {
            tx.prepare_cached(
                "INSERT INTO push_queue (user_id, room, sender, msgid, prio, unread, next_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                p.user,
                p.room,
                p.sender,
                p.msgid,
                p.prio,
                i64::try_from(p.unread).unwrap_or(i64::MAX),
                p.at
            ])?;
        }
        Write::Audit(row) => {
            tx.prepare_cached(
                "INSERT INTO audit (conv, at, by, action, target, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                row.conv,
                row.at,
                row.by,
                row.action as i64,
                row.target,
                row.detail
            ])?;
        }
        Write::Block { by, user, on } => {
            if *on {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO blocks (blocker, blocked) VALUES (?1, ?2)",
                )?
                .execute(params![by, user])?;
                tx.prepare_cached(
                    "DELETE FROM requests WHERE sender = ?1 AND recipient = ?2 AND state = ?3",
                )?
                .execute(params![by, user, RequestState::Pending as i64])?;
            } else {
                tx.prepare_cached("DELETE FROM blocks WHERE blocker = ?1 AND blocked = ?2")?
                    .execute(params![by, user])?;
            }
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

/// Appends a change log entry; returns its id. SQLite has one writer at a
/// time, so AUTOINCREMENT ids are gapless and in commit order.
pub(super) fn append_log(
    tx: &rusqlite::Transaction<'_>,
    payload: &[u8],
) -> Result<u64, rusqlite::Error> {
    let id: i64 = tx
        .prepare_cached("INSERT INTO change_log (payload) VALUES (?1) RETURNING id")?
        .query_row(params![payload], |r| r.get(0))?;
    Ok(u64::try_from(id).unwrap_or(0))
}

/// Drops the entries no node needs any more, once a transaction's log
/// reaches `head`.
pub(super) fn prune_log(tx: &rusqlite::Transaction<'_>, head: u64) -> Result<(), rusqlite::Error> {
    let keep_from = i64::try_from(crate::store::change_log::keep_from(head)).unwrap_or(0);
    tx.prepare_cached("DELETE FROM change_log WHERE id < ?1")?
        .execute(params![keep_from])?;
    Ok(())
}
