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
    let rowid = fts_rowid(conv, seq);
    if indexed {
        tx.prepare_cached("DELETE FROM messages_fts WHERE rowid = ?1")?
            .execute([rowid])?;
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
    Ok(Answer::Changed(msg))
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
        let last = match self.own.get(&conv).or(self.committed.0.get(&conv)) {
            Some(&last) => last,
            // One seek down the primary key, the first time only.
            None => tx
                .prepare_cached(
                    "SELECT seq FROM messages WHERE conv = ?1 ORDER BY seq DESC LIMIT 1",
                )?
                .query_row([conv], |r| r.get(0))
                .optional()?
                .unwrap_or(Seq::ZERO),
        };
        let seq = last.next();
        self.own.insert(conv, seq);
        Ok(seq)
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

/// Applies one write; returns what it assigned, if it [`Write::assigns`].
pub(super) fn apply(
    tx: &rusqlite::Transaction<'_>,
    w: &Write,
    seqs: &mut TxSeqs<'_>,
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
            return Ok(Some(Assigned::User(id)));
        }
        Write::NewConv(nc) => {
            let id = tx
                .prepare_cached(
                    "INSERT INTO convs (kind, name, created) VALUES (?1, ?2, ?3) RETURNING id",
                )?
                .query_row(params![nc.kind as i64, nc.name, nc.created], |r| r.get(0))?;
            for m in &nc.members {
                apply(tx, &m.write(id), seqs)?;
            }
            return Ok(Some(Assigned::Conv(id)));
        }
        Write::Post(p) => {
            // The next seq, taken inside the transaction that writes it;
            // SQLite has one writer at a time, so no other commit can take it.
            let seq = seqs.take_next(tx, p.conv)?;
            for w in p.writes(seq) {
                apply(tx, &w, seqs)?;
            }
            return Ok(Some(Assigned::Seq(seq)));
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
        Write::Message(m) => {
            seqs.saw(m.conv, m.seq);
            tx.prepare_cached(
                "INSERT INTO messages (conv, seq, msgid, sender, at, text)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                m.conv,
                m.seq,
                m.id.as_bytes(),
                m.sender,
                m.at,
                m.text
            ])?;
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
        Write::Cursor {
            user,
            conv,
            delivered,
            read,
        } => {
            tx.prepare_cached(
                "INSERT INTO cursors (user, conv, delivered, read) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user, conv) DO UPDATE SET
                 delivered = MAX(delivered, excluded.delivered), read = MAX(read, excluded.read)",
            )?
            .execute(params![user, conv, delivered, read])?;
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
    Ok(None)
}
