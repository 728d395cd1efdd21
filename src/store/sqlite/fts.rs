//! The full-text index, filled behind the commit.
//!
//! Indexing a message costs more than storing it (FTS5 tokenizes the text
//! and merges index segments), and every `OK SAY` under `--durability sync`
//! waits for the commit. So the commit stores messages only, and the
//! storage thread indexes them afterwards in large batches, which FTS5 also
//! merges more cheaply than one small segment per commit. `fts_done` records,
//! in the same transaction as the index rows, how far each conversation is
//! indexed; at start every conversation that is behind is caught up, so a
//! crash between a commit and its indexing loses nothing from SEARCH.
//!
//! SEARCH never sees the lag: it first indexes what its conversation is
//! missing. Edits and deletions of a message that is not indexed yet leave
//! the index alone; the indexer reads the row as it is when it gets there.

use std::collections::{BTreeSet, HashMap};

use rusqlite::{Connection, params};

use super::fts_rowid;
use crate::store::{ConvId, MsgState, Seq};

/// How far the index is in each conversation that has messages, and which
/// conversations have messages it has not taken yet.
#[derive(Debug, Default)]
pub(super) struct FtsLag {
    indexed: HashMap<ConvId, Seq>,
    /// Ordered, so that a budgeted step takes conversations in turn.
    behind: BTreeSet<ConvId>,
}

impl FtsLag {
    /// Reads `fts_done` and finds the conversations with newer messages.
    pub(super) fn load(conn: &Connection) -> rusqlite::Result<FtsLag> {
        let mut lag = FtsLag::default();
        let mut stmt = conn.prepare(
            "SELECT c.id, COALESCE((SELECT seq FROM fts_done d WHERE d.conv = c.id), 0),
                    COALESCE((SELECT MAX(seq) FROM messages m WHERE m.conv = c.id), 0)
             FROM convs c",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, ConvId>(0)?,
                r.get::<_, Seq>(1)?,
                r.get::<_, Seq>(2)?,
            ))
        })?;
        for row in rows {
            let (conv, indexed, last) = row?;
            lag.indexed.insert(conv, indexed);
            if last > indexed {
                lag.behind.insert(conv);
            }
        }
        Ok(lag)
    }

    /// A commit stored messages in `conv`.
    pub(super) fn wrote(&mut self, conv: ConvId) {
        self.behind.insert(conv);
    }

    pub(super) fn is_behind(&self) -> bool {
        !self.behind.is_empty()
    }

    /// Whether message `seq` of `conv` is in the index already.
    pub(super) fn has(&self, conv: ConvId, seq: Seq) -> bool {
        self.indexed.get(&conv).is_some_and(|&i| seq <= i)
    }

    /// Indexes up to `budget` messages, conversation by conversation, inside
    /// `tx`; returns how many it took. The caller commits, then calls
    /// [`FtsLag::committed`] with what this returned in `done`.
    pub(super) fn step(
        &self,
        tx: &rusqlite::Transaction<'_>,
        only: Option<ConvId>,
        mut budget: usize,
        done: &mut Vec<(ConvId, Seq, bool)>,
    ) -> rusqlite::Result<usize> {
        let mut taken = 0;
        let convs: Vec<ConvId> = match only {
            Some(c) if self.behind.contains(&c) => vec![c],
            Some(_) => Vec::new(),
            None => self.behind.iter().copied().collect(),
        };
        for conv in convs {
            if budget == 0 {
                break;
            }
            let from = self.indexed.get(&conv).copied().unwrap_or(Seq::ZERO);
            let (last, n) = index_after(tx, conv, from, budget)?;
            // Fewer rows than asked for: nothing newer is left.
            done.push((conv, last, n < budget));
            taken += n;
            budget -= n;
            tx.prepare_cached(
                "INSERT INTO fts_done (conv, seq) VALUES (?1, ?2)
                 ON CONFLICT (conv) DO UPDATE SET seq = excluded.seq",
            )?
            .execute(params![conv, last])?;
        }
        Ok(taken)
    }

    /// The transaction of a [`FtsLag::step`] committed: `(conv, indexed up
    /// to, caught up)` for each conversation it took.
    pub(super) fn committed(&mut self, done: Vec<(ConvId, Seq, bool)>) {
        for (conv, last, caught_up) in done {
            self.indexed.insert(conv, last);
            if caught_up {
                self.behind.remove(&conv);
            }
        }
    }
}

/// Indexes up to `limit` messages of `conv` after `from`, oldest first;
/// returns the last seq it passed and how many rows it read. Deleted
/// messages are passed over: they have no text to find.
fn index_after(
    tx: &rusqlite::Transaction<'_>,
    conv: ConvId,
    from: Seq,
    limit: usize,
) -> rusqlite::Result<(Seq, usize)> {
    let mut read = tx.prepare_cached(
        "SELECT seq, text, state FROM messages WHERE conv = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let mut insert = tx.prepare_cached("INSERT INTO messages_fts (rowid, text) VALUES (?1, ?2)")?;
    let mut rows = read.query(params![conv, from, limit as i64])?;
    let (mut last, mut n) = (from, 0);
    while let Some(r) = rows.next()? {
        let seq: Seq = r.get(0)?;
        let state: i64 = r.get(2)?;
        if MsgState::from_code(state) != MsgState::Deleted {
            let text = r.get_ref(1)?.as_str()?;
            insert.execute(params![fts_rowid(conv, seq), text])?;
        }
        last = seq;
        n += 1;
    }
    Ok((last, n))
}

#[cfg(test)]
mod tests {
    use crate::store::sqlite::SqliteBackend;
    use crate::store::tests::message;
    use crate::store::{Answer, Backend, ConvId, ConvKind, Query, Seq, Write};

    fn search(db: &mut SqliteBackend, word: &str) -> Vec<u64> {
        let q = Query::Search {
            conv: ConvId(0),
            words: vec![word.into()],
            before: Seq::MAX,
            limit: 10,
        };
        match db.query(&[], &q) {
            Ok(Answer::Messages(m)) => m.iter().map(|m| m.seq.0).collect(),
            other => panic!("{other:?}"),
        }
    }

    fn change(db: &mut SqliteBackend, seq: u64, text: Option<&str>) {
        let q = Query::Change {
            conv: ConvId(0),
            seq: Seq(seq),
            text: text.map(str::to_string),
        };
        assert!(matches!(db.query(&[], &q), Ok(Answer::Changed { .. })));
    }

    /// Messages committed but not indexed when the process stops (as at a
    /// crash) are indexed at the next start, as they are by then: edited
    /// text is found, the old text and deleted messages are not.
    #[test]
    fn what_a_crash_left_unindexed_is_indexed_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let open = || SqliteBackend::open(dir.path(), dir.path().join("blobs")).unwrap();
        let mut db = open();
        let conv = Write::Conv {
            id: ConvId(0),
            kind: ConvKind::Public,
            name: "#r".into(),
            created: 0,
        };
        let first = [conv, message(1, "apple one"), message(2, "apple two")];
        db.commit(&first.iter().collect::<Vec<_>>()).unwrap();
        let third = message(3, "apple three");
        db.commit(&[&third]).unwrap();
        change(&mut db, 2, Some("pear two"));
        change(&mut db, 3, None);
        assert!(db.fts.is_behind());
        drop(db);

        let mut db = open();
        assert!(db.fts.is_behind(), "the start finds the lag");
        while db.background(1).unwrap() {}
        assert!(!db.fts.is_behind());
        assert!(db.fts.has(ConvId(0), Seq(3)));
        assert_eq!(search(&mut db, "apple"), [1]);
        assert_eq!(search(&mut db, "pear"), [2]);
    }

    /// SEARCH does not wait for the background: it indexes its own
    /// conversation's lag first.
    #[test]
    fn search_sees_a_message_committed_just_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = SqliteBackend::open(dir.path(), dir.path().join("blobs")).unwrap();
        let conv = Write::Conv {
            id: ConvId(0),
            kind: ConvKind::Public,
            name: "#r".into(),
            created: 0,
        };
        db.commit(&[&conv, &message(1, "fresh news")]).unwrap();
        assert!(db.fts.is_behind());
        assert_eq!(search(&mut db, "news"), [1]);
        assert!(!db.fts.is_behind());
        // Indexed now: an edit replaces its index entry, a deletion removes
        // it, and the index stays whole.
        change(&mut db, 1, Some("stale news"));
        assert_eq!(search(&mut db, "fresh"), [0u64; 0]);
        assert_eq!(search(&mut db, "stale"), [1]);
        change(&mut db, 1, None);
        assert_eq!(search(&mut db, "news"), [0u64; 0]);
        db.conn
            .execute_batch("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')")
            .unwrap();
    }
}
