//! The durable queue of notifications, in the store's own database: the
//! hub writes a row in the transaction that stores the message, and the
//! push thread reads, retries and deletes rows over a connection of its
//! own. SQLite and PostgreSQL each have one.

use crate::store::StoreError;

/// A notification waiting to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub id: i64,
    pub user: i64,
    pub room: String,
    pub sender: String,
    pub msgid: String,
    pub prio: String,
    pub unread: i64,
    pub attempts: i64,
}

/// One of a user's pushers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub app_id: String,
    pub pushkey: String,
    pub url: String,
}

pub trait PushQueue: Send {
    /// Up to `max` rows due at `now` (Unix ms), taken for [`LEASE_MS`]: on
    /// a database several nodes share, no other node's push thread takes
    /// them meanwhile (and if this node dies, they come due again then).
    fn due(&mut self, now: i64, max: usize) -> Result<Vec<Queued>, StoreError>;
    fn devices(&mut self, user: i64) -> Result<Vec<Device>, StoreError>;
    /// The row is done with (sent, or refused for good).
    fn done(&mut self, id: i64) -> Result<(), StoreError>;
    /// Try the row again at `next_at`.
    fn retry(&mut self, id: i64, attempts: i64, next_at: i64) -> Result<(), StoreError>;
    /// The gateway rejected these pushkeys: the pushers go.
    fn reject(&mut self, app_id: &str, pushkey: &str) -> Result<(), StoreError>;
}

const DUE: &str = "SELECT id, user_id, room, sender, msgid, prio, unread, attempts FROM push_queue
     WHERE next_at <= $1 ORDER BY next_at, id LIMIT $2";
const DEVICES: &str = "SELECT app_id, pushkey, url FROM pushers WHERE user_id = $1";
const DONE: &str = "DELETE FROM push_queue WHERE id = $1";
const RETRY: &str = "UPDATE push_queue SET attempts = $2, next_at = $3 WHERE id = $1";
const REJECT: &str = "DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2";

/// How long a taken row stays out of other nodes' reach.
pub const LEASE_MS: i64 = 30_000;

/// PostgreSQL's `due`: takes the rows in one statement, skipping those
/// another node's transaction is taking at the same moment.
const TAKE: &str = "UPDATE push_queue SET next_at = $1 + $3 WHERE id IN (
         SELECT id FROM push_queue WHERE next_at <= $1 ORDER BY next_at, id LIMIT $2
         FOR UPDATE SKIP LOCKED)
     RETURNING id, user_id, room, sender, msgid, prio, unread, attempts";

fn limit(max: usize) -> i64 {
    i64::try_from(max).unwrap_or(i64::MAX)
}

/// One SQLite file has one server, so its rows need no lease.
impl PushQueue for rusqlite::Connection {
    fn due(&mut self, now: i64, max: usize) -> Result<Vec<Queued>, StoreError> {
        let mut stmt = self.prepare_cached(&DUE.replace('$', "?"))?;
        let rows = stmt.query_map(rusqlite::params![now, limit(max)], |r| {
            Ok(Queued {
                id: r.get(0)?,
                user: r.get(1)?,
                room: r.get(2)?,
                sender: r.get(3)?,
                msgid: r.get(4)?,
                prio: r.get(5)?,
                unread: r.get(6)?,
                attempts: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn devices(&mut self, user: i64) -> Result<Vec<Device>, StoreError> {
        let mut stmt = self.prepare_cached(&DEVICES.replace('$', "?"))?;
        let rows = stmt.query_map([user], |r| {
            Ok(Device {
                app_id: r.get(0)?,
                pushkey: r.get(1)?,
                url: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn done(&mut self, id: i64) -> Result<(), StoreError> {
        self.prepare_cached(&DONE.replace('$', "?"))?
            .execute([id])?;
        Ok(())
    }

    fn retry(&mut self, id: i64, attempts: i64, next_at: i64) -> Result<(), StoreError> {
        self.prepare_cached(&RETRY.replace('$', "?"))?
            .execute([id, attempts, next_at])?;
        Ok(())
    }

    fn reject(&mut self, app_id: &str, pushkey: &str) -> Result<(), StoreError> {
        self.prepare_cached(&REJECT.replace('$', "?"))?
            .execute([app_id, pushkey])?;
        Ok(())
    }
}

/// The SQLite queue under `--durability sync`: a row can be read here as
/// soon as the storage thread's commit has returned, which is before the
/// WAL sync thread has fsynced it. So the WAL is fsynced (covering every
/// commit this connection can see) before rows are handed out to be sent:
/// no notification leaves for a message a power loss could still take.
pub struct FsyncedRows {
    pub queue: rusqlite::Connection,
    /// The database's WAL, held open.
    pub wal: std::fs::File,
}

impl PushQueue for FsyncedRows {
    fn due(&mut self, now: i64, max: usize) -> Result<Vec<Queued>, StoreError> {
        let due = self.queue.due(now, max)?;
        if !due.is_empty() {
            self.wal.sync_data()?;
        }
        Ok(due)
    }

    fn devices(&mut self, user: i64) -> Result<Vec<Device>, StoreError> {
        self.queue.devices(user)
    }

    fn done(&mut self, id: i64) -> Result<(), StoreError> {
        self.queue.done(id)
    }

    fn retry(&mut self, id: i64, attempts: i64, next_at: i64) -> Result<(), StoreError> {
        self.queue.retry(id, attempts, next_at)
    }

    fn reject(&mut self, app_id: &str, pushkey: &str) -> Result<(), StoreError> {
        self.queue.reject(app_id, pushkey)
    }
}

impl PushQueue for postgres::Client {
    fn due(&mut self, now: i64, max: usize) -> Result<Vec<Queued>, StoreError> {
        let rows = self.query(TAKE, &[&now, &limit(max), &LEASE_MS])?;
        Ok(rows
            .iter()
            .map(|r| Queued {
                id: r.get(0),
                user: r.get(1),
                room: r.get(2),
                sender: r.get(3),
                msgid: r.get(4),
                prio: r.get(5),
                unread: r.get(6),
                attempts: r.get(7),
            })
            .collect())
    }

    fn devices(&mut self, user: i64) -> Result<Vec<Device>, StoreError> {
        let rows = self.query(DEVICES, &[&user])?;
        Ok(rows
            .iter()
            .map(|r| Device {
                app_id: r.get(0),
                pushkey: r.get(1),
                url: r.get(2),
            })
            .collect())
    }

    fn done(&mut self, id: i64) -> Result<(), StoreError> {
        self.execute(DONE, &[&id])?;
        Ok(())
    }

    fn retry(&mut self, id: i64, attempts: i64, next_at: i64) -> Result<(), StoreError> {
        self.execute(RETRY, &[&id, &attempts, &next_at])?;
        Ok(())
    }

    fn reject(&mut self, app_id: &str, pushkey: &str) -> Result<(), StoreError> {
        self.execute(REJECT, &[&app_id, &pushkey])?;
        Ok(())
    }
}
