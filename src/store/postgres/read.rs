//! Reads: pages of history, sync ranges, full-text search, blob access.

use postgres::Row;

use super::tx::Tx;

use super::{id, seq, seq_param, user_id};
use crate::store::{
    Answer, ConvEnd, ConvId, LogEntry, MsgState, Seq, StoreError, StoredMessage, UserId, change_log,
};

pub(super) const MESSAGE_COLUMNS: &str = "seq, msgid, sender, at, text, state, reply_to";

pub(super) fn message_row(conv: ConvId, r: &Row) -> StoredMessage {
    let msgid: &[u8] = r.get(1);
    let state: i16 = r.get(5);
    StoredMessage {
        conv,
        seq: seq(r.get(0)),
        id: uuid::Uuid::from_slice(msgid).unwrap_or_default(),
        sender: user_id(r.get(2)),
        at: r.get(3),
        text: r.get(4),
        state: MsgState::from_code(i64::from(state)),
        reply_to: r.get::<_, Option<i64>>(6).map(seq),
    }
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Newest first: up to `max` messages of `conv` with seq below `before`.
pub(super) fn messages_before(
    db: &mut Tx<'_>,
    conv: ConvId,
    before: Seq,
    max: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    messages_where(db, conv, "seq < $2 ORDER BY seq DESC", before, max)
}

/// Oldest first: up to `max` messages of `conv` with seq above `after`.
pub(super) fn messages_after(
    db: &mut Tx<'_>,
    conv: ConvId,
    after: Seq,
    max: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    messages_where(db, conv, "seq > $2 ORDER BY seq", after, max)
}

/// Up to `max` messages of `conv` picked and ordered by `filter`, which
/// compares seq with `bound` ($2).
fn messages_where(
    db: &mut Tx<'_>,
    conv: ConvId,
    filter: &str,
    bound: Seq,
    max: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    let rows = db.query(
        &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE conv = $1 AND {filter} LIMIT $3"),
        &[&id(conv.0), &seq_param(bound), &limit(max)],
    )?;
    Ok(rows.iter().map(|r| message_row(conv, r)).collect())
}

/// Newest first: messages below `before` holding every word. The words go
/// through `plainto_tsquery`, so user input is never tsquery syntax; the
/// `simple` configuration lowercases without stemming, as SQLite's
/// unicode61 tokenizer does.
pub(super) fn search(
    db: &mut Tx<'_>,
    conv: ConvId,
    words: &[String],
    before: Seq,
    max: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    let rows = db.query(
        &format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages
             WHERE conv = $1 AND seq < $2 AND search @@ plainto_tsquery('simple', $3)
             ORDER BY seq DESC LIMIT $4"
        ),
        &[
            &id(conv.0),
            &seq_param(before),
            &words.join(" "),
            &limit(max),
        ],
    )?;
    Ok(rows.iter().map(|r| message_row(conv, r)).collect())
}

pub(super) fn blob_access(db: &mut Tx<'_>, blob: &str, user: UserId) -> Result<Answer, StoreError> {
    let row = db.query_opt(
        "SELECT b.size, b.mime FROM blobs b WHERE b.id = $1 AND EXISTS (
            SELECT 1 FROM blob_refs r JOIN members m ON m.conv = r.conv
            WHERE r.blob = b.id AND m.user_id = $2)",
        &[&blob, &id(user.0)],
    )?;
    let row = row.ok_or(StoreError::NotFound)?;
    let size: i64 = row.get(0);
    Ok(Answer::Blob {
        size: u64::try_from(size).unwrap_or(0),
        mime: row.get(1),
    })
}

/// Change log entries past `after`, oldest first.
pub(super) fn read_log(db: &mut Tx<'_>, after: u64, n: usize) -> Result<Vec<LogEntry>, StoreError> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    Ok(db
        .query(
            "SELECT id, payload FROM change_log WHERE id > $1 ORDER BY id LIMIT $2",
            &[&after, &limit(n)],
        )?
        .iter()
        .map(|r| change_log::decode(u64::try_from(r.get::<_, i64>(0)).unwrap_or(0), r.get(1)))
        .collect())
}

/// Each conversation's last committed seq, in the order of `convs` (0 for
/// one that is not there).
pub(super) fn conv_ends(
    db: &mut Tx<'_>,
    user: UserId,
    convs: &[ConvId],
) -> Result<Vec<ConvEnd>, StoreError> {
    let ids: Vec<i64> = convs.iter().map(|c| id(c.0)).collect();
    let rows = db.query(
        "SELECT c.id, c.last_seq, coalesce(k.delivered, 0), coalesce(k.read, 0) FROM convs c
         LEFT JOIN cursors k ON k.conv = c.id AND k.user_id = $2
         WHERE c.id = ANY($1)",
        &[&ids, &id(user.0)],
    )?;
    let ends: std::collections::HashMap<i64, ConvEnd> = rows
        .iter()
        .map(|r| {
            let end = ConvEnd {
                last: seq(r.get(1)),
                delivered: seq(r.get(2)),
                read: seq(r.get(3)),
            };
            (r.get(0), end)
        })
        .collect();
    Ok(ids
        .iter()
        .map(|i| ends.get(i).copied().unwrap_or_default())
        .collect())
}
