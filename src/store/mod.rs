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

use rusqlite::{Connection, params};
use thiserror::Error;

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
        id: u32,
        name: String,
        phc: String,
        created: i64,
    },
    LastSeen {
        user: u32,
        at: i64,
    },
    Conv {
        id: u32,
        kind: ConvKind,
        name: String,
        created: i64,
    },
    Member {
        conv: u32,
        user: u32,
        admin: bool,
        joined: i64,
    },
    RemoveMember {
        conv: u32,
        user: u32,
    },
    Message(StoredMessage),
    Friendship {
        a: u32,
        b: u32,
        since: i64,
    },
    Unfriend {
        a: u32,
        b: u32,
    },
    /// Inserts or updates the request from `from` to `to`.
    Request {
        from: u32,
        to: u32,
        state: RequestState,
        at: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvKind {
    /// Anyone may JOIN.
    Public = 0,
    /// Invite-only; admins ADD and KICK.
    Group = 1,
    /// Two friends.
    Direct = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    Pending = 0,
    Accepted = 1,
    Rejected = 2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub conv: u32,
    pub seq: u64,
    pub id: uuid::Uuid,
    pub sender: u32,
    pub at: i64,
    pub text: String,
}

/// Everything the chat layer rebuilds its tables from at startup.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub users: Vec<UserRow>,
    pub convs: Vec<ConvRow>,
    pub members: Vec<MemberRow>,
    pub friendships: Vec<(u32, u32, i64)>,
    pub requests: Vec<RequestRow>,
}

#[derive(Debug)]
pub struct UserRow {
    pub id: u32,
    pub name: String,
    pub phc: String,
    pub last_seen: Option<i64>,
}

#[derive(Debug)]
pub struct ConvRow {
    pub id: u32,
    pub kind: ConvKind,
    pub name: String,
    pub last_seq: u64,
    /// The newest messages, oldest first, at most the recent-buffer size.
    pub recent: Vec<StoredMessage>,
}

#[derive(Debug)]
pub struct MemberRow {
    pub conv: u32,
    pub user: u32,
    pub admin: bool,
    pub joined: i64,
}

#[derive(Debug)]
pub struct RequestRow {
    pub from: u32,
    pub to: u32,
    pub state: RequestState,
    pub at: i64,
}

/// A batch of writes from one command, and what to hand back once durable.
pub struct Request<C> {
    pub writes: Vec<Write>,
    pub done: Option<C>,
}

/// The tokens of one group commit, in submission order, each with whether
/// its own writes are durable.
pub struct Committed<C> {
    pub done: Vec<(C, bool)>,
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
    let convs: Vec<(u32, i64, String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    for (id, kind, name, last_seq) in convs {
        let kind = match kind {
            1 => ConvKind::Group,
            2 => ConvKind::Direct,
            _ => ConvKind::Public,
        };
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
                state: match state {
                    1 => RequestState::Accepted,
                    2 => RequestState::Rejected,
                    _ => RequestState::Pending,
                },
                at: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(snap)
}

/// Newest first: up to `limit` messages of `conv` with seq below `before`.
pub fn messages_before(
    conn: &Connection,
    conv: u32,
    before: u64,
    limit: usize,
) -> Result<Vec<StoredMessage>, rusqlite::Error> {
    let before = i64::try_from(before).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(
        "SELECT seq, msgid, sender, at, text FROM messages
         WHERE conv = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
    )?;
    stmt.query_map(params![conv, before, limit as i64], |r| {
        let id: [u8; 16] = r.get(1)?;
        let seq: i64 = r.get(0)?;
        Ok(StoredMessage {
            conv,
            seq: u64::try_from(seq).unwrap_or(0),
            id: uuid::Uuid::from_bytes(id),
            sender: r.get(2)?,
            at: r.get(3)?,
            text: r.get(4)?,
        })
    })?
    .collect()
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
                m.seq as i64,
                m.id.as_bytes(),
                m.sender,
                m.at,
                m.text
            ])?;
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
}

impl<C: Send + 'static> Storage<C> {
    pub fn start(
        mut conn: Connection,
        done: mpsc::Sender<Committed<C>>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> Self {
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
                    let done_tokens = commit_batch(&mut conn, batch);
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
    }
}

/// Commits the whole batch in one transaction. Should that fail, each request
/// is retried alone, so one bad write cannot fail its neighbours.
fn commit_batch<C>(conn: &mut Connection, batch: Vec<Request<C>>) -> Vec<(C, bool)> {
    let all_ok = match commit(conn, batch.iter().flat_map(|r| &r.writes)) {
        Ok(()) => true,
        Err(e) => {
            log::error!(
                "group commit of {} requests failed: {e}; retrying one by one",
                batch.len()
            );
            false
        }
    };
    let mut out = Vec::with_capacity(batch.len());
    for req in batch {
        let ok = all_ok
            || commit(conn, req.writes.iter())
                .map_err(|e| log::error!("storage write failed: {e}"))
                .is_ok();
        if let Some(token) = req.done {
            out.push((token, ok));
        }
    }
    out
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
