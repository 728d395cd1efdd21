//! Writes: each row-level change, and the checked change of EDIT and DELETE.

use std::path::Path;

use super::tx::Tx;

use super::read::{MESSAGE_COLUMNS, message_row};
use super::{conv_id, id, seq, seq_param, user_id};
use crate::store::backend::remove_blob_file;
use crate::store::change_log;
use crate::store::{
    Answer, Assigned, ConvId, ConvKind, Post, RequestState, Seq, StoreError, Write,
};

pub(super) fn change(
    db: &mut Tx<'_>,
    conv: ConvId,
    at: Seq,
    text: Option<&str>,
    blob_dir: &Path,
) -> Result<Answer, StoreError> {
    // FOR UPDATE: an EDIT and a DELETE of one message on two nodes take turns.
    let row = db.query_opt(
        &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE conv = $1 AND seq = $2 FOR UPDATE"),
        &[&id(conv.0), &seq_param(at)],
    )?;
    let mut msg = message_row(conv, &row.ok_or(StoreError::NotFound)?);
    msg.change(text)?;
    if text.is_none() {
        unref_blob(db, conv, at, blob_dir)?;
    }
    // The search document is a generated column: it follows the text.
    db.execute(
        "UPDATE messages SET text = $3, state = $4 WHERE conv = $1 AND seq = $2",
        &[&id(conv.0), &seq_param(at), &msg.text, &(msg.state as i16)],
    )?;
    Ok(Answer::Changed { msg, logged: None })
}

/// Drops message (conv, seq)'s hold on its blob; a blob nothing holds any
/// more is deleted, row and file.
fn unref_blob(db: &mut Tx<'_>, conv: ConvId, at: Seq, blob_dir: &Path) -> Result<(), StoreError> {
    let Some(row) = db.query_opt(
        "DELETE FROM blob_refs WHERE conv = $1 AND seq = $2 RETURNING blob",
        &[&id(conv.0), &seq_param(at)],
    )?
    else {
        return Ok(());
    };
    let blob: String = row.get(0);
    // Deleting the row only if no message holds it decides, under the
    // row's lock, which node's DELETE removes the file.
    let gone = db.execute(
        "DELETE FROM blobs WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM blob_refs WHERE blob = $1)",
        &[&blob],
    )?;
    if gone > 0 && crate::blob::is_blob_id(&blob) {
        remove_blob_file(blob_dir, &blob);
    }
    Ok(())
}

/// Message rows waiting to be inserted: a commit inserts all of them with
/// one statement (arrays unnested into rows), one round trip for the batch.
#[derive(Default)]
struct MessageRows {
    conv: Vec<i64>,
    seq: Vec<i64>,
    msgid: Vec<Vec<u8>>,
    sender: Vec<i64>,
    at: Vec<i64>,
    text: Vec<String>,
    reply_to: Vec<Option<i64>>,
}

impl MessageRows {
    fn push(&mut self, m: &crate::store::StoredMessage) {
        self.conv.push(id(m.conv.0));
        self.seq.push(seq_param(m.seq));
        self.msgid.push(m.id.as_bytes().to_vec());
        self.sender.push(id(m.sender.0));
        self.at.push(m.at);
        self.text.push(m.text.clone());
        self.reply_to.push(m.reply_to.map(seq_param));
    }

    /// Inserts every waiting row.
    fn flush(&mut self, db: &mut Tx<'_>) -> Result<(), StoreError> {
        if self.conv.is_empty() {
            return Ok(());
        }
        db.execute(
            "INSERT INTO messages (conv, seq, msgid, sender, at, text, reply_to)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bigint[],
                                  $5::bigint[], $6::text[], $7::bigint[])",
            &[
                &self.conv,
                &self.seq,
                &self.msgid,
                &self.sender,
                &self.at,
                &self.text,
                &self.reply_to,
            ],
        )?;
        *self = MessageRows::default();
        Ok(())
    }
}

/// Applies `writes` in order, in the caller's transaction; returns what
/// they assigned, one per write that [`Write::assigns`].
///
/// Each run of consecutive posts takes its seqs with one statement per
/// conversation, and all the round's new message rows go in with one
/// INSERT. The counter rows the round will take seqs from are locked first,
/// in id order, so two nodes' rounds over the same conversations wait for
/// each other instead of deadlocking.
///
/// Change log entries take their ids from the log's counter row, locked
/// after the conversations' (so in one order everywhere) and held to the
/// commit: the ids are gapless and follow commit order.
pub(super) fn apply_all(db: &mut Tx<'_>, writes: &[&Write]) -> Result<Vec<Assigned>, StoreError> {
    let logs = change_log::count(writes);
    lock_counters(db, writes, logs > 0)?;
    let mut log = LogRows::reserve(db, logs)?;
    let mut rows = MessageRows::default();
    let mut assigned = Vec::new();
    let mut run: Vec<&Post> = Vec::new();
    for w in writes {
        match w {
            Write::Post(p) => {
                run.push(p);
                continue;
            }
            Write::Log(change) => {
                post_run(db, &mut run, &mut rows, &mut assigned)?;
                change_log::append_committed(change, &mut assigned, |p| log.push(p))?;
                continue;
            }
            _ => {}
        }
        post_run(db, &mut run, &mut rows, &mut assigned)?;
        assigned.extend(apply(db, w, &mut rows)?);
    }
    post_run(db, &mut run, &mut rows, &mut assigned)?;
    rows.flush(db)?;
    log.flush(db)?;
    Ok(assigned)
}

/// Change log entries waiting to be inserted, with the ids reserved for
/// them.
pub(super) struct LogRows {
    next: i64,
    end: i64,
    ids: Vec<i64>,
    payloads: Vec<Vec<u8>>,
}

impl LogRows {
    /// Takes `n` ids from the log's counter row (none if `n` is 0).
    pub(super) fn reserve(db: &mut Tx<'_>, n: usize) -> Result<LogRows, StoreError> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let end = if n == 0 {
            0
        } else {
            db.query_one(
                "UPDATE change_log_head SET last = last + $1 RETURNING last",
                &[&n],
            )?
            .get::<_, i64>(0)
                + 1
        };
        Ok(LogRows {
            next: end - n,
            end,
            ids: Vec::new(),
            payloads: Vec::new(),
        })
    }

    /// Queues an entry; returns its id.
    pub(super) fn push(&mut self, payload: Vec<u8>) -> Result<u64, StoreError> {
        if self.next >= self.end {
            return Err(StoreError::Internal(
                "a change log entry without an id".into(),
            ));
        }
        let id = self.next;
        self.next += 1;
        self.ids.push(id);
        self.payloads.push(payload);
        Ok(id as u64)
    }

    /// Inserts the queued entries, and drops those no node needs any more.
    pub(super) fn flush(&mut self, db: &mut Tx<'_>) -> Result<(), StoreError> {
        let Some(&head) = self.ids.last() else {
            return Ok(());
        };
        db.execute(
            "INSERT INTO change_log (id, payload) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
            &[&self.ids, &self.payloads],
        )?;
        let keep_from = change_log::keep_from(head as u64) as i64;
        db.execute("DELETE FROM change_log WHERE id < $1", &[&keep_from])?;
        self.ids.clear();
        self.payloads.clear();
        Ok(())
    }
}

/// Locks the counter rows of the conversations `writes` post to, lowest
/// id first; all before the change log's counter row (`then_log`), so
/// every transaction takes them in one order. (One conversation's row and
/// no log need no order.)
fn lock_counters(db: &mut Tx<'_>, writes: &[&Write], then_log: bool) -> Result<(), StoreError> {
    let mut convs: Vec<i64> = writes
        .iter()
        .filter_map(|w| match w {
            Write::Post(p) => Some(id(p.conv.0)),
            _ => None,
        })
        .collect();
    convs.sort_unstable();
    convs.dedup();
    if convs.len() > 1 || (then_log && !convs.is_empty()) {
        db.query(
            "SELECT id FROM convs WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            &[&convs],
        )?;
    }
    Ok(())
}

/// Gives each post of `run` its seq and queues its rows, emptying `run`.
///
/// The seqs come from the conversation's counter row, moved on by the
/// run's posts to it: the row stays locked until the transaction ends, so
/// writers on any node take turns and a rollback gives the seqs back. The
/// senders' membership is checked in the same statement, against what is
/// committed now, not what this node's memory says; a sender who is no
/// longer a member fails the transaction, and the storage thread's retry
/// of each request alone then refuses just that post.
fn post_run(
    db: &mut Tx<'_>,
    run: &mut Vec<&Post>,
    rows: &mut MessageRows,
    assigned: &mut Vec<Assigned>,
) -> Result<(), StoreError> {
    // (conversation, posts to it, their distinct senders), first come first.
    let mut convs: Vec<(ConvId, i64, Vec<i64>)> = Vec::new();
    for p in run.iter() {
        let sender = id(p.sender.0);
        match convs.iter_mut().find(|(c, ..)| *c == p.conv) {
            Some((_, n, senders)) => {
                *n += 1;
                if !senders.contains(&sender) {
                    senders.push(sender);
                }
            }
            None => convs.push((p.conv, 1, vec![sender])),
        }
    }
    let mut next: Vec<(ConvId, Seq)> = Vec::with_capacity(convs.len());
    for (conv, n, senders) in &convs {
        let row = db.query_opt(
            "UPDATE convs SET last_seq = last_seq + $2 WHERE id = $1
             AND (SELECT count(*) FROM members WHERE conv = $1 AND user_id = ANY($3))
                 = cardinality($3)
             RETURNING last_seq",
            &[&id(conv.0), n, senders],
        )?;
        let last: i64 = row.ok_or(StoreError::NotMember(*conv))?.get(0);
        next.push((*conv, seq(last - n + 1)));
    }
    for p in run.drain(..) {
        let Some((_, taken)) = next.iter_mut().find(|(c, _)| *c == p.conv) else {
            return Err(StoreError::Internal("a post without its seq".into()));
        };
        let seq = *taken;
        *taken = seq.next();
        for w in p.writes(seq) {
            match &w {
                Write::Message(m) => rows.push(m),
                other => apply_row(db, other)?,
            }
        }
        assigned.push(Assigned::Seq(seq));
    }
    Ok(())
}

/// Applies one write that is not a post (a message row joins `rows`);
/// returns what it assigned, if it [`Write::assigns`].
fn apply(
    db: &mut Tx<'_>,
    w: &Write,
    rows: &mut MessageRows,
) -> Result<Option<Assigned>, StoreError> {
    match w {
        Write::Register { name, phc, created } => {
            // A name taken meanwhile, on any node, fails the unique
            // constraint: a conflict, which REGISTER answers USER_EXISTS.
            let row = db.query_one(
                "INSERT INTO users (name, phc, created) VALUES ($1, $2, $3) RETURNING id",
                &[name, phc, created],
            )?;
            Ok(Some(Assigned::User(user_id(row.get(0)))))
        }
        Write::NewConv(nc) => {
            if nc.kind == ConvKind::Group {
                // A group whose last member left can never be entered
                // again, so its name is free (the hub's rule for CREATE):
                // the old conversation keeps its history under a name no
                // command can reach, `#name~id`, and the unique constraint
                // still refuses a name in use. Whether it is empty is
                // decided here, in the founding's transaction, not by this
                // node's memory.
                db.execute(
                    "UPDATE convs SET name = name || '~' || id
                     WHERE name = $1 AND kind = $2
                     AND NOT EXISTS (SELECT 1 FROM members WHERE conv = convs.id)",
                    &[&nc.name, &(ConvKind::Group as i16)],
                )?;
            }
            let row = db.query_one(
                "INSERT INTO convs (kind, name, created) VALUES ($1, $2, $3) RETURNING id",
                &[&(nc.kind as i16), &nc.name, &nc.created],
            )?;
            let conv = conv_id(row.get(0));
            for m in &nc.members {
                apply_row(db, &m.write(conv))?;
            }
            Ok(Some(Assigned::Conv(conv)))
        }
        Write::Message(m) => {
            // A seq chosen elsewhere (tests, and imports): the counter
            // catches up with it.
            db.execute(
                "UPDATE convs SET last_seq = GREATEST(last_seq, $2) WHERE id = $1",
                &[&id(m.conv.0), &seq_param(m.seq)],
            )?;
            rows.push(m);
            Ok(None)
        }
        other => apply_row(db, other).map(|()| None),
    }
}

/// Applies a write that assigns nothing and is not a message.
fn apply_row(db: &mut Tx<'_>, w: &Write) -> Result<(), StoreError> {
    match w {
        // `apply_all` and `apply` take these; reaching here is a bug, failed as one.
        Write::Register { .. }
        | Write::NewConv(_)
        | Write::Post(_)
        | Write::Message(_)
        | Write::Log(_) => {
            return Err(StoreError::Internal(
                "a message or an assigning write outside apply_all".into(),
            ));
        }
        Write::User {
            id: user,
            name,
            phc,
            created,
        } => {
            db.execute(
                "INSERT INTO users (id, name, phc, created) VALUES ($1, $2, $3, $4)",
                &[&id(user.0), name, phc, created],
            )?;
        }
        Write::LastSeen { user, at } => {
            db.execute(
                "UPDATE users SET last_seen = GREATEST(last_seen, $2) WHERE id = $1",
                &[&id(user.0), at],
            )?;
        }
        Write::Conv {
            id: conv,
            kind,
            name,
            created,
        } => {
            db.execute(
                "INSERT INTO convs (id, kind, name, created) VALUES ($1, $2, $3, $4)",
                &[&id(conv.0), &(*kind as i16), name, created],
            )?;
        }
        Write::Member {
            conv,
            user,
            admin,
            joined,
        } => {
            db.execute(
                "INSERT INTO members (conv, user_id, admin, joined) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (conv, user_id) DO UPDATE SET admin = excluded.admin",
                &[&id(conv.0), &id(user.0), admin, joined],
            )?;
        }
        Write::RemoveMember { conv, user } => {
            db.execute(
                "DELETE FROM members WHERE conv = $1 AND user_id = $2",
                &[&id(conv.0), &id(user.0)],
            )?;
        }
        Write::Blob {
            id: blob,
            size,
            mime,
        } => {
            let size = i64::try_from(*size).unwrap_or(i64::MAX);
            db.execute(
                "INSERT INTO blobs (id, size, mime) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[blob, &size, mime],
            )?;
        }
        Write::Reaction {
            conv,
            seq,
            user,
            reaction,
            added,
        } => {
            let sql = if *added {
                "INSERT INTO reactions (conv, seq, user_id, reaction) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM reactions
                 WHERE conv = $1 AND seq = $2 AND user_id = $3 AND reaction = $4"
            };
            db.execute(sql, &[&id(conv.0), &seq_param(*seq), &id(user.0), reaction])?;
        }
        Write::Ban { conv, user, on } => {
            let sql = if *on {
                "INSERT INTO bans (conv, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM bans WHERE conv = $1 AND user_id = $2"
            };
            db.execute(sql, &[&id(conv.0), &id(user.0)])?;
        }
        Write::Mute { conv, user, until } => match until {
            Some(until) => {
                db.execute(
                    "INSERT INTO mutes (conv, user_id, until) VALUES ($1, $2, $3)
                     ON CONFLICT (conv, user_id) DO UPDATE SET until = excluded.until",
                    &[&id(conv.0), &id(user.0), until],
                )?;
            }
            None => {
                db.execute(
                    "DELETE FROM mutes WHERE conv = $1 AND user_id = $2",
                    &[&id(conv.0), &id(user.0)],
                )?;
            }
        },
        Write::Topic { conv, text } => {
            db.execute(
                "UPDATE convs SET topic = $2 WHERE id = $1",
                &[&id(conv.0), text],
            )?;
        }
        Write::Pusher {
            user,
            app_id,
            pushkey,
            url,
        } => match url {
            Some(url) => {
                db.execute(
                    "INSERT INTO pushers (user_id, app_id, pushkey, url) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (app_id, pushkey) DO UPDATE
                     SET user_id = excluded.user_id, url = excluded.url",
                    &[&id(user.0), app_id, pushkey, url],
                )?;
            }
            None => {
                db.execute(
                    "DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2",
                    &[app_id, pushkey],
                )?;
            }
        },
        Write::Push(p) => {
            db.execute(
                "INSERT INTO push_queue (user_id, room, sender, msgid, prio, unread, next_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &id(p.user.0),
                    &p.room,
                    &p.sender,
                    &p.msgid,
                    &p.prio,
                    &i64::try_from(p.unread).unwrap_or(i64::MAX),
                    &p.at,
                ],
            )?;
        }
        Write::Audit(row) => {
            db.execute(
                "INSERT INTO audit (conv, at, by_user, action, target, detail)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &id(row.conv.0),
                    &row.at,
                    &id(row.by.0),
                    &(row.action as i16),
                    &row.target.map(|u| id(u.0)),
                    &row.detail,
                ],
            )?;
        }
        Write::Block { by, user, on } => {
            if *on {
                db.execute(
                    "INSERT INTO blocks (blocker, blocked) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&id(by.0), &id(user.0)],
                )?;
                db.execute(
                    "DELETE FROM requests WHERE sender = $1 AND recipient = $2 AND state = $3",
                    &[&id(by.0), &id(user.0), &(RequestState::Pending as i16)],
                )?;
            } else {
                db.execute(
                    "DELETE FROM blocks WHERE blocker = $1 AND blocked = $2",
                    &[&id(by.0), &id(user.0)],
                )?;
            }
        }
        Write::BlobRef { conv, seq, blob } => {
            db.execute(
                "INSERT INTO blob_refs (conv, seq, blob) VALUES ($1, $2, $3)
                 ON CONFLICT (conv, seq) DO UPDATE SET blob = excluded.blob",
                &[&id(conv.0), &seq_param(*seq), blob],
            )?;
        }
        Write::JoinCursor { user, conv } => {
            db.execute(
                "INSERT INTO cursors (user_id, conv, delivered, read)
                 SELECT $1, id, last_seq, last_seq FROM convs WHERE id = $2
                 ON CONFLICT (user_id, conv) DO UPDATE SET
                 delivered = GREATEST(cursors.delivered, excluded.delivered),
                 read = GREATEST(cursors.read, excluded.read)",
                &[&id(user.0), &id(conv.0)],
            )?;
        }
        Write::Cursor {
            user,
            conv,
            delivered,
            read,
        } => {
            db.execute(
                "INSERT INTO cursors (user_id, conv, delivered, read) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (user_id, conv) DO UPDATE SET
                 delivered = GREATEST(cursors.delivered, excluded.delivered),
                 read = GREATEST(cursors.read, excluded.read)",
                &[
                    &id(user.0),
                    &id(conv.0),
                    &seq_param(*delivered),
                    &seq_param(*read),
                ],
            )?;
        }
        Write::Friendship { a, b, since } => {
            db.execute(
                "INSERT INTO friendships (a, b, since) VALUES ($1, $2, $3)
                 ON CONFLICT (a, b) DO UPDATE SET since = excluded.since",
                &[&id(a.min(b).0), &id(a.max(b).0), since],
            )?;
        }
        Write::Unfriend { a, b } => {
            db.execute(
                "DELETE FROM friendships WHERE a = $1 AND b = $2",
                &[&id(a.min(b).0), &id(a.max(b).0)],
            )?;
            db.execute(
                "DELETE FROM requests WHERE state = $3
                 AND ((sender = $1 AND recipient = $2) OR (sender = $2 AND recipient = $1))",
                &[&id(a.0), &id(b.0), &(RequestState::Accepted as i16)],
            )?;
        }
        Write::Request {
            from,
            to,
            state,
            at,
        } => {
            db.execute(
                "INSERT INTO requests (sender, recipient, state, at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (sender, recipient) DO UPDATE SET state = excluded.state, at = excluded.at",
                &[&id(from.0), &id(to.0), &(*state as i16), at],
            )?;
        }
    }
    Ok(())
}
