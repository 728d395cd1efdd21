//! Opening the database (creating or migrating it) and loading the snapshot
//! the hub starts from.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::checkpoint::{Checkpointer, WalFile};
use super::{FtsLag, LastSeqs, SqliteBackend, messages_before, schema};
use crate::store::{
    AuditAction, AuditRow, ConvId, ConvKind, ConvRow, MemberRow, RequestRow, RequestState, Seq,
    Snapshot, StoreError, UserRow,
};

/// Room for every distinct statement the backend prepares (about 30).
const STATEMENT_CACHE: usize = 64;

impl SqliteBackend {
    /// Opens (creating or migrating) the database in `dir`, fsyncing every
    /// commit; attachment bodies are in `blob_dir`.
    pub fn open(dir: &Path, blob_dir: PathBuf) -> Result<SqliteBackend, StoreError> {
        Self::open_with(dir, blob_dir, true)
    }

    /// As [`SqliteBackend::open`]. A commit returns once written to the OS;
    /// with `fsync_each_commit` (`--durability sync`) every commit is then
    /// fsynced by the WAL sync that
    /// [`take_wal_sync`](crate::store::Backend::take_wal_sync) hands the
    /// storage thread, which answers a commit only after it; without, the
    /// checkpointer fsyncs the WAL every half second (`CHECKPOINT_EVERY`).
    pub fn open_with(
        dir: &Path,
        blob_dir: PathBuf,
        fsync_each_commit: bool,
    ) -> Result<SqliteBackend, StoreError> {
        std::fs::create_dir_all(dir)?;
        let mut conn = Connection::open(dir.join("linechat.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL: a commit is in the OS when it returns, which survives a
        // crash of this process; WAL mode stays consistent after a power
        // loss, losing only the commits since the last fsync. What fsyncs
        // them is the WAL sync (`sync`: before any answer, on a thread of its
        // own, so one round's fsync overlaps the next round's commit) or the
        // checkpointer (`write`). FULL would fsync inside the commit, which
        // the storage thread would wait for before starting the next.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        // Hot data lives in the chat layer's tables; SQLite's own cache mostly
        // serves old history, which the OS page cache holds as well.
        conn.pragma_update(None, "cache_size", -32768)?;
        // Checkpoints run on a thread of their own (see `Checkpointer`).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // Every statement stays prepared: the default cache (16) is smaller
        // than the number of distinct statements, and a commit that misses it
        // parses SQL again for every row.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        schema::migrate(&mut conn)?;
        let fts = FtsLag::load(&conn)?;
        let path = conn
            .path()
            .ok_or_else(|| StoreError::Internal("the database has no file name".into()))?
            .to_owned();
        let checkpointer = Checkpointer::start(&path, !fsync_each_commit);
        Ok(SqliteBackend {
            conn,
            blob_dir,
            _checkpointer: checkpointer,
            wal_sync: fsync_each_commit.then(|| WalFile::open(&path)),
            last_seqs: LastSeqs::default(),
            fts,
        })
    }
}

pub(super) fn load(conn: &Connection, recent: usize) -> Result<Snapshot, StoreError> {
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
    let convs: Vec<(ConvId, i64, String, Seq)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    for (id, kind, name, last_seq) in convs {
        let kind = ConvKind::from_code(kind);
        let mut recent_msgs = messages_before(conn, id, Seq::MAX, recent)?;
        recent_msgs.reverse();
        snap.convs.push(ConvRow {
            id,
            kind,
            name,
            last_seq,
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
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare("SELECT blocker, blocked FROM blocks")?;
    snap.blocks = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare("SELECT conv, user FROM bans")?;
    snap.bans = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare("SELECT conv, user, until FROM mutes")?;
    snap.mutes = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare("SELECT id, topic FROM convs WHERE topic IS NOT NULL")?;
    snap.topics = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    // The newest entries of each conversation's log, oldest first.
    let mut stmt = conn.prepare(
        "SELECT conv, at, by, action, target, detail FROM (
             SELECT rowid AS n, *, row_number() OVER (PARTITION BY conv ORDER BY rowid DESC) AS r
             FROM audit)
         WHERE r <= ?1 ORDER BY n",
    )?;
    snap.audit = stmt
        .query_map([crate::chat::AUDIT_KEPT as i64], |r| {
            let action: i64 = r.get(3)?;
            Ok(AuditRow {
                conv: r.get(0)?,
                at: r.get(1)?,
                by: r.get(2)?,
                action: AuditAction::from_code(action),
                target: r.get(4)?,
                detail: r.get(5)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare("SELECT user_id, app_id, pushkey, url FROM pushers")?;
    snap.pushers = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut stmt =
        conn.prepare("SELECT conv, seq, user, reaction FROM reactions ORDER BY rowid")?;
    snap.reactions = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    snap.log_head = conn.query_row("SELECT coalesce(max(id), 0) FROM change_log", [], |r| {
        r.get::<_, i64>(0)
    })? as u64;
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Answer, Backend, Query, Request, SCHEMA_VERSION, run_batch};

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
        let open = || SqliteBackend::open(dir.path(), dir.path().join("blobs"));
        let mut db = open().unwrap();
        let snap = db.load(10).unwrap();
        let version: i64 = db
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(snap.convs[0].last_seq, Seq(1));
        assert_eq!(snap.convs[0].recent[0].text, "hello from the past");
        let found = run_batch(
            &mut db,
            vec![Request::query(
                Query::Search {
                    conv: ConvId(0),
                    words: vec!["past".into()],
                    before: Seq::MAX,
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
        db.conn
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(db);
        assert!(matches!(open(), Err(StoreError::TooNew(..))));
    }

    /// Under `sync` the backend commits at NORMAL and hands the storage
    /// thread the WAL's fsync, once; under `write` it has none (the
    /// checkpointer fsyncs).
    #[test]
    fn sync_commits_to_the_os_and_hands_out_the_wal_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let open = |sync| SqliteBackend::open_with(dir.path(), dir.path().join("blobs"), sync);
        let mut db = open(true).unwrap();
        let synchronous: i64 = db
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(synchronous, 1, "NORMAL");
        let mut wal_sync = db.take_wal_sync().expect("a WAL sync under sync");
        assert!(db.take_wal_sync().is_none(), "taken once");
        let user = crate::store::Write::User {
            id: crate::store::UserId(0),
            name: "alice".into(),
            phc: "phc".into(),
            created: 0,
        };
        db.commit(&[&user]).unwrap();
        wal_sync.sync().unwrap();
        drop(db);
        assert!(open(false).unwrap().take_wal_sync().is_none());
    }

    /// Schema 4 drops the accepted requests of friendships that ended before
    /// FRIEND REMOVE dropped them itself; pending requests and the accepted
    /// request of a standing friendship stay.
    #[test]
    fn migration_4_drops_accepted_requests_of_ended_friendships() {
        let dir = tempfile::tempdir().unwrap();
        let open = || SqliteBackend::open(dir.path(), dir.path().join("blobs"));
        let db = open().unwrap();
        db.conn
            .execute_batch(
                "INSERT INTO friendships VALUES (0, 1, 5);
                 INSERT INTO requests VALUES (1, 0, 1, 5);
                 INSERT INTO requests VALUES (2, 0, 1, 6);
                 INSERT INTO requests VALUES (0, 3, 1, 7);
                 INSERT INTO requests VALUES (3, 2, 0, 8);
                 DROP TABLE fts_done;
                 ALTER TABLE messages DROP COLUMN reply_to;
                 DROP TABLE reactions;
                 DROP TABLE blocks; DROP TABLE bans; DROP TABLE mutes; DROP TABLE audit;
                 ALTER TABLE convs DROP COLUMN topic;
                 DROP TABLE pushers; DROP TABLE push_queue; DROP TABLE change_log;
                 PRAGMA user_version = 3;",
            )
            .unwrap();
        drop(db);
        let requests: Vec<_> = open()
            .unwrap()
            .load(10)
            .unwrap()
            .requests
            .into_iter()
            .map(|r| (r.from.0, r.to.0, r.state))
            .collect();
        assert_eq!(
            requests,
            [
                (1, 0, RequestState::Accepted),
                (3, 2, RequestState::Pending)
            ]
        );
    }
}
