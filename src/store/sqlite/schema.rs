//! Versioned schema. Each migration moves the database one version up, so a
//! newer build opens any older data dir; `PRAGMA user_version` records where it is.

use rusqlite::Connection;

use crate::store::StoreError;

/// Index `i` holds the SQL that takes version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: accounts, conversations, memberships, messages, friends.
    "CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        phc TEXT NOT NULL,
        created INTEGER NOT NULL,
        last_seen INTEGER
    );
    CREATE TABLE convs (
        id INTEGER PRIMARY KEY,
        kind INTEGER NOT NULL,
        name TEXT NOT NULL,
        created INTEGER NOT NULL
    );
    CREATE TABLE members (
        conv INTEGER NOT NULL,
        user INTEGER NOT NULL,
        admin INTEGER NOT NULL,
        joined INTEGER NOT NULL,
        PRIMARY KEY (conv, user)
    );
    CREATE TABLE messages (
        conv INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        msgid BLOB NOT NULL,
        sender INTEGER NOT NULL,
        at INTEGER NOT NULL,
        text TEXT NOT NULL,
        PRIMARY KEY (conv, seq)
    ) WITHOUT ROWID;
    CREATE TABLE friendships (
        a INTEGER NOT NULL,
        b INTEGER NOT NULL,
        since INTEGER NOT NULL,
        PRIMARY KEY (a, b)
    ) WITHOUT ROWID;
    CREATE TABLE requests (
        sender INTEGER NOT NULL,
        recipient INTEGER NOT NULL,
        state INTEGER NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (sender, recipient)
    ) WITHOUT ROWID;",
    // 2: per-user delivery and read cursors, edits and deletions, full-text search.
    "CREATE TABLE cursors (
        user INTEGER NOT NULL,
        conv INTEGER NOT NULL,
        delivered INTEGER NOT NULL,
        read INTEGER NOT NULL,
        PRIMARY KEY (user, conv)
    ) WITHOUT ROWID;
    ALTER TABLE messages ADD COLUMN state INTEGER NOT NULL DEFAULT 0;
    CREATE VIRTUAL TABLE messages_fts USING fts5(text, tokenize = 'unicode61');
    INSERT INTO messages_fts (rowid, text) SELECT (conv << 40) | seq, text FROM messages;",
    // 3: attachments: blob metadata and which messages hold each blob.
    "CREATE TABLE blobs (
        id TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        mime TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE blob_refs (
        conv INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        blob TEXT NOT NULL,
        PRIMARY KEY (conv, seq)
    ) WITHOUT ROWID;
    CREATE INDEX blob_refs_by_blob ON blob_refs (blob);",
    // 4: FRIEND REMOVE did not always drop the friendship's accepted request;
    // such a row made FRIEND REQUESTS list a friendship that is gone. State 1
    // is accepted.
    "DELETE FROM requests WHERE state = 1 AND NOT EXISTS (
        SELECT 1 FROM friendships f
        WHERE f.a = min(sender, recipient) AND f.b = max(sender, recipient));",
    // 5: the full-text index is filled after the commit, in batches (see
    // `fts.rs`), and `fts_done` says how far it has got in each
    // conversation. The index keeps no copy of the text (SEARCH reads the
    // messages table), which halves what indexing writes. The old index is
    // dropped and rebuilt in the background from the messages.
    "DROP TABLE messages_fts;
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        text, content = '', contentless_delete = 1, tokenize = 'unicode61');
    CREATE TABLE fts_done (
        conv INTEGER PRIMARY KEY,
        seq INTEGER NOT NULL
    );",
    // 6: replies: the seq of the message (same conversation) a message
    // answers, NULL for none; reactions, in the order they were given
    // (their rowid); who blocks whom; moderation: topics, bans, mutes and
    // the audit log (in the order written: its rowid).
    "ALTER TABLE messages ADD COLUMN reply_to INTEGER;
    CREATE TABLE reactions (
        conv INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        user INTEGER NOT NULL,
        reaction TEXT NOT NULL,
        UNIQUE (conv, seq, user, reaction)
    );
    CREATE TABLE blocks (
        blocker INTEGER NOT NULL,
        blocked INTEGER NOT NULL,
        PRIMARY KEY (blocker, blocked)
    ) WITHOUT ROWID;
    ALTER TABLE convs ADD COLUMN topic TEXT;
    CREATE TABLE bans (
        conv INTEGER NOT NULL,
        user INTEGER NOT NULL,
        PRIMARY KEY (conv, user)
    ) WITHOUT ROWID;
    CREATE TABLE mutes (
        conv INTEGER NOT NULL,
        user INTEGER NOT NULL,
        until INTEGER NOT NULL,
        PRIMARY KEY (conv, user)
    ) WITHOUT ROWID;
    CREATE TABLE audit (
        conv INTEGER NOT NULL,
        at INTEGER NOT NULL,
        by INTEGER NOT NULL,
        action INTEGER NOT NULL,
        target INTEGER,
        detail TEXT
    );
    CREATE INDEX audit_by_conv ON audit (conv);",
    // 7: the index keeps no per-row sizes (`columnsize = 0`; nothing ranks
    // the hits): writing them was about a quarter of the indexing's
    // instructions. `contentless_delete` needs them, so an edit or a
    // deletion now takes a row out of the index with FTS5's 'delete'
    // command and the text that was indexed. The index is rebuilt in the
    // background from the messages.
    "DROP TABLE messages_fts;
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        text, content = '', columnsize = 0, tokenize = 'unicode61');
    DELETE FROM fts_done;",
    // 8: push notifications: each user's pushers, and the queue the push
    // thread sends from (a row is written with the message it is about).
    "CREATE TABLE pushers (
        user_id INTEGER NOT NULL,
        app_id TEXT NOT NULL,
        pushkey TEXT NOT NULL,
        url TEXT NOT NULL,
        PRIMARY KEY (app_id, pushkey)
    );
    CREATE INDEX pushers_by_user ON pushers (user_id);
    CREATE TABLE push_queue (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL,
        room TEXT NOT NULL,
        sender TEXT NOT NULL,
        msgid TEXT NOT NULL,
        prio TEXT NOT NULL,
        unread INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at INTEGER NOT NULL
    );
    CREATE INDEX push_queue_by_time ON push_queue (next_at);",
    // 9: the change log (`store::log`) of nodes sharing this database with
    // `--bus`; AUTOINCREMENT so that an id is never handed out twice.
    "CREATE TABLE change_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        payload BLOB NOT NULL
    );",
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew(version, SCHEMA_VERSION));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    match version {
        0 => log::info!("storage: created database, schema {SCHEMA_VERSION}"),
        v if v < SCHEMA_VERSION => {
            log::info!("storage schema migrated from {v} to {SCHEMA_VERSION}")
        }
        _ => {}
    }
    Ok(())
}
