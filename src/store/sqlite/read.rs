//! Reads: pages of history, sync ranges, full-text search, blob access.

use rusqlite::{Connection, params};

use super::{MESSAGE_COLUMNS, clamp, fts_rowid, message_row};
use crate::store::{
    Answer, ConvEnd, ConvId, LogEntry, Seq, StoreError, StoredMessage, UserId, change_log,
};

/// Newest first: up to `limit` messages of `conv` with seq below `before`.
pub(super) fn messages_before(
    conn: &Connection,
    conv: ConvId,
    before: Seq,
    limit: usize,
) -> Result<Vec<StoredMessage>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages
         WHERE conv = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
    ))?;
    stmt.query_map(params![conv, before, limit as i64], |r| {
        message_row(conv, r)
    })?
    .collect()
}

/// Oldest first: up to `limit` messages of `conv` with seq above `after`.
pub(super) fn messages_after(
    conn: &Connection,
    conv: ConvId,
    after: Seq,
    limit: usize,
) -> Result<Vec<StoredMessage>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages
         WHERE conv = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
    ))?;
    stmt.query_map(params![conv, after, limit as i64], |r| message_row(conv, r))?
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

pub(super) fn search(
    conn: &Connection,
    conv: ConvId,
    words: &[String],
    before: Seq,
    limit: usize,
) -> Result<Vec<StoredMessage>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conv = ?1 AND seq IN (
            SELECT rowid & ((1 << 40) - 1) FROM messages_fts
            WHERE messages_fts MATCH ?2 AND rowid >= ?3 AND rowid < ?4
            ORDER BY rowid DESC LIMIT ?5)
         ORDER BY seq DESC"
    ))?;
    let lo = fts_rowid(conv, Seq::ZERO);
    let hi = lo + clamp(before.0).min(1 << 40);
    stmt.query_map(params![conv, fts_query(words), lo, hi, limit as i64], |r| {
        message_row(conv, r)
    })?
    .collect()
}

pub(super) fn blob_access(
    tx: &rusqlite::Transaction<'_>,
    blob: &str,
    user: UserId,
) -> Result<Answer, StoreError> {
    let row: Option<(i64, String)> = tx
        .prepare_cached(
            "SELECT b.size, b.mime FROM blobs b WHERE b.id = ?1 AND EXISTS (
                SELECT 1 FROM blob_refs r JOIN members m ON m.conv = r.conv
                WHERE r.blob = b.id AND m.user = ?2)",
        )?
        .query_map(params![blob, user], |r| Ok((r.get(0)?, r.get(1)?)))?
        .next()
        .transpose()?;
    let (size, mime) = row.ok_or(StoreError::NotFound)?;
    Ok(Answer::Blob {
        size: size as u64,
        mime,
    })
}

/// Change log entries past `after`, oldest first.
pub(super) fn read_log(
    conn: &Connection,
    after: u64,
    limit: usize,
) -> Result<Vec<LogEntry>, rusqlite::Error> {
    let mut stmt = conn
        .prepare_cached("SELECT id, payload FROM change_log WHERE id > ?1 ORDER BY id LIMIT ?2")?;
    stmt.query_map(
        params![i64::try_from(after).unwrap_or(i64::MAX), limit as i64],
        |r| {
            let id: i64 = r.get(0)?;
            let payload: Vec<u8> = r.get(1)?;
            Ok(change_log::decode(u64::try_from(id).unwrap_or(0), &payload))
        },
    )?
    .collect()
}

/// Each conversation's last committed seq, in the order of `convs` (0 for
/// one with no message).
pub(super) fn conv_ends(
    conn: &Connection,
    user: UserId,
    convs: &[ConvId],
) -> Result<Vec<ConvEnd>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT (SELECT coalesce(max(seq), 0) FROM messages WHERE conv = ?1),
                coalesce(k.delivered, 0), coalesce(k.read, 0)
         FROM (SELECT 1) LEFT JOIN cursors k ON k.user = ?2 AND k.conv = ?1",
    )?;
    convs
        .iter()
        .map(|&conv| {
            stmt.query_row(params![conv, user], |r| {
                Ok(ConvEnd {
                    last: r.get(0)?,
                    delivered: r.get(1)?,
                    read: r.get(2)?,
                })
            })
        })
        .collect()
}
