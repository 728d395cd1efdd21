//! The PostgreSQL backend (`--store postgres://...`): one database that
//! several nodes share. Schema and migrations, the connection (reconnected
//! with a bounded backoff), load, reads, and writes whose seqs and rights
//! are settled inside their own transaction.
//!
//! The blocking `postgres` client runs a small runtime of its own on the
//! storage thread; the event loop never sees it.

mod open;
mod read;
mod schema;
// The test database helper is shared with the socket tests in tests/.
#[cfg(test)]
#[path = "../../../tests/common/pg.rs"]
pub(crate) mod testdb;
mod tx;
mod write;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::{Client, NoTls};

use super::{
    Answer, Assigned, Backend, ConvId, InDoubtCounts, Query, Seq, Snapshot, StoreError, UserId,
    Write,
};
use read::{blob_access, conv_ends, messages_after, messages_before, read_log, search};
use tx::Conn;
use write::{LogRows, apply_all, change};

/// First wait after a failed connection attempt; it doubles up to
/// [`MAX_RECONNECT_WAIT`]. Requests meanwhile fail at once as unreachable
/// instead of each waiting for a connect timeout.
const MIN_RECONNECT_WAIT: Duration = Duration::from_millis(100);
/// Longest wait between connection attempts: the most a node stays
/// unavailable after PostgreSQL is back.
const MAX_RECONNECT_WAIT: Duration = Duration::from_secs(2);
/// How long a write whose COMMIT lost its connection waits for PostgreSQL
/// to say whether it committed ([`PostgresBackend::settle`]).
const IN_DOUBT_WAIT: Duration = Duration::from_secs(10);
/// How often it asks meanwhile, at least.
const IN_DOUBT_POLL: Duration = Duration::from_millis(50);
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// TCP keepalive: a connection whose peer vanished without closing it is
/// found dead after about idle + interval * retries (5 + 3 * 1 s).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_RETRIES: u32 = 3;

/// A PostgreSQL database shared by every node, and the directory of
/// attachment bodies shared the same way (`--blob-dir`).
pub struct PostgresBackend {
    config: postgres::Config,
    conn: Option<Conn>,
    /// `synchronous_commit` for this node's sessions: `on` (`--durability
    /// sync`: the WAL is flushed before COMMIT returns) or `off` (`write`).
    synchronous_commit: &'static str,
    blob_dir: PathBuf,
    /// When the next connection attempt may be made, and the wait after it
    /// if it fails.
    retry_at: Instant,
    retry_wait: Duration,
    in_doubt: Arc<InDoubtCounts>,
}

impl Backend for PostgresBackend {
    fn in_doubt_counts(&self) -> Arc<InDoubtCounts> {
        Arc::clone(&self.in_doubt)
    }

    fn load(&mut self, recent: usize) -> Result<Snapshot, StoreError> {
        self.with_conn(|conn| {
            let mut tx = conn.begin()?;
            // One snapshot: the change log's head matches the tables, so a
            // change is either in them or read from the log, never both.
            tx.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")?;
            let snap = open::load(&mut tx, recent)?;
            tx.commit()?;
            Ok(snap)
        })
    }

    fn commit(&mut self, writes: &[&Write]) -> Result<Vec<Assigned>, StoreError> {
        let outcome = self.with_conn(|conn| {
            let mut tx = conn.begin()?;
            let xid = tx.xid()?;
            let assigned = apply_all(&mut tx, writes)?;
            finish(tx, xid, assigned)
        })?;
        self.settle(outcome)
    }

    fn query(&mut self, writes: &[&Write], query: &Query) -> Result<Answer, StoreError> {
        let blob_dir = self.blob_dir.clone();
        let outcome = self.with_conn(|conn| {
            let mut tx = conn.begin()?;
            // A read's COMMIT changes nothing: only a write can be in doubt.
            let xid = if writes.is_empty() {
                None
            } else {
                Some(tx.xid()?)
            };
            // An edit's log entry holds the message as the query leaves it.
            let (logs, writes) = super::change_log::split(writes);
            apply_all(&mut tx, &writes)?;
            let mut answer = match *query {
                Query::Before {
                    conv,
                    before,
                    limit,
                } => Answer::Messages(messages_before(&mut tx, conv, before, limit)?),
                Query::After { conv, after, limit } => {
                    Answer::Messages(messages_after(&mut tx, conv, after, limit)?)
                }
                Query::Search {
                    conv,
                    ref words,
                    before,
                    limit,
                } => Answer::Messages(search(&mut tx, conv, words, before, limit)?),
                Query::Change {
                    conv,
                    seq,
                    ref text,
                } => change(&mut tx, conv, seq, text.as_deref(), &blob_dir)?,
                Query::BlobAccess { ref blob, user } => blob_access(&mut tx, blob, user)?,
                Query::Log { after, limit } => Answer::Log(read_log(&mut tx, after, limit)?),
                Query::Ends { user, ref convs } => Answer::Ends(conv_ends(&mut tx, user, convs)?),
            };
            let mut log = LogRows::reserve(&mut tx, logs.len())?;
            super::change_log::append_answered(&logs, &mut answer, |p| log.push(p))?;
            log.flush(&mut tx)?;
            match xid {
                Some(xid) => finish(tx, xid, answer),
                None => {
                    tx.commit()?;
                    Ok(Committed::Done(answer))
                }
            }
        })?;
        self.settle(outcome)
    }
}

/// How a write transaction's COMMIT ended.
enum Committed<T> {
    Done(T),
    /// The connection broke during COMMIT: PostgreSQL may or may not have
    /// committed transaction `xid`, whose result would be `value`.
    InDoubt {
        xid: i64,
        value: T,
        error: String,
    },
}

/// Commits `tx` (transaction `xid`), whose result is `value`.
fn finish<T>(tx: tx::Tx<'_>, xid: i64, value: T) -> Result<Committed<T>, StoreError> {
    match tx.commit().map_err(StoreError::from) {
        Ok(()) => Ok(Committed::Done(value)),
        Err(StoreError::Unreachable(error)) => Ok(Committed::InDoubt { xid, value, error }),
        Err(e) => Err(e),
    }
}

impl PostgresBackend {
    /// Connects to `url` (creating or migrating the schema); fails if the
    /// server cannot be reached now. `synchronous_commit`: whether COMMIT
    /// waits for the WAL flush (`--durability sync`).
    pub fn open(
        url: &str,
        blob_dir: PathBuf,
        synchronous_commit: bool,
    ) -> Result<PostgresBackend, StoreError> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Internal(format!("--store {url}: {e}")))?;
        config
            .application_name("linechat")
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .keepalives_interval(KEEPALIVE_INTERVAL)
            .keepalives_retries(KEEPALIVE_RETRIES);
        let mut backend = PostgresBackend {
            config,
            conn: None,
            synchronous_commit: if synchronous_commit { "on" } else { "off" },
            blob_dir,
            retry_at: Instant::now(),
            retry_wait: MIN_RECONNECT_WAIT,
            in_doubt: Arc::default(),
        };
        backend.with_conn(|conn| schema::migrate(&mut conn.client))?;
        Ok(backend)
    }

    /// A commit in doubt is settled by asking PostgreSQL, once it answers
    /// again, whether the transaction committed (`txid_status`, made for
    /// this): if it did, its result stands, so a client is never told
    /// "nothing was saved" of a message that was. If PostgreSQL does not
    /// answer within [`IN_DOUBT_WAIT`], the outcome is `InDoubt`. The
    /// storage thread waits meanwhile; every other request would fail as
    /// unreachable anyway.
    fn settle<T>(&mut self, outcome: Committed<T>) -> Result<T, StoreError> {
        let (xid, value, error) = match outcome {
            Committed::Done(value) => return Ok(value),
            Committed::InDoubt { xid, value, error } => (xid, value, error),
        };
        self.conn = None;
        let deadline = Instant::now() + IN_DOUBT_WAIT;
        loop {
            let status = self.with_conn(|conn| {
                let row = conn.client.query_one("SELECT txid_status($1)", &[&xid])?;
                Ok(row.get::<_, Option<String>>(0))
            });
            match status.as_ref().map(Option::as_deref) {
                Ok(Some("committed")) => {
                    log::warn!("storage: {error} during COMMIT; it had committed");
                    self.in_doubt.committed.fetch_add(1, Ordering::Relaxed);
                    return Ok(value);
                }
                Ok(Some("aborted")) => {
                    log::warn!("storage: {error} during COMMIT; it had not committed");
                    self.in_doubt.aborted.fetch_add(1, Ordering::Relaxed);
                    return Err(StoreError::Unreachable(error));
                }
                // Too old to know (not after a few seconds), still in
                // progress, or no answer yet.
                _ if Instant::now() >= deadline => {
                    log::warn!("storage: {error} during COMMIT; whether it committed is unknown");
                    self.in_doubt.unknown.fetch_add(1, Ordering::Relaxed);
                    return Err(StoreError::InDoubt(error));
                }
                _ => {
                    let wait = self.retry_at.saturating_duration_since(Instant::now());
                    std::thread::sleep(wait.max(IN_DOUBT_POLL));
                }
            }
        }
    }

    /// Runs `work` on the connection, connecting first if there is none.
    /// A connection that failed is dropped, so the next request reconnects
    /// (after the backoff).
    fn with_conn<T>(
        &mut self,
        work: impl FnOnce(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.connected()?;
        let result = work(conn);
        if matches!(result, Err(StoreError::Unreachable(_))) || conn.client.is_closed() {
            self.conn = None;
        }
        result
    }

    fn connected(&mut self) -> Result<&mut Conn, StoreError> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let now = Instant::now();
            if now < self.retry_at {
                return Err(StoreError::Unreachable(format!(
                    "postgres: not connected; next attempt in {} ms",
                    (self.retry_at - now).as_millis()
                )));
            }
            match self.connect() {
                Ok(client) => {
                    log::info!("storage: connected to PostgreSQL");
                    self.retry_wait = MIN_RECONNECT_WAIT;
                    self.conn = Some(Conn::new(client));
                }
                Err(e) => {
                    self.retry_at = Instant::now() + self.retry_wait;
                    self.retry_wait = (self.retry_wait * 2).min(MAX_RECONNECT_WAIT);
                    return Err(e);
                }
            }
        }
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Internal("no connection".into()))
    }

    fn connect(&self) -> Result<Client, StoreError> {
        let mut client = self.config.connect(NoTls)?;
        client.batch_execute(&format!(
            "SET synchronous_commit = {}; SET default_transaction_isolation = 'read committed'",
            self.synchronous_commit
        ))?;
        Ok(client)
    }
}

/// Ids and seqs are `bigint` columns.
fn id(n: u32) -> i64 {
    i64::from(n)
}

fn user_id(n: i64) -> UserId {
    UserId(u32::try_from(n).unwrap_or(u32::MAX))
}

fn conv_id(n: i64) -> ConvId {
    ConvId(u32::try_from(n).unwrap_or(u32::MAX))
}

/// A seq as a `bigint`: past `i64::MAX` (only `Seq::MAX`, "no bound") it
/// clamps.
fn seq_param(seq: Seq) -> i64 {
    i64::try_from(seq.0).unwrap_or(i64::MAX)
}

fn seq(n: i64) -> Seq {
    Seq(u64::try_from(n).unwrap_or(0))
}

/// PostgreSQL's errors sorted into what the hub can act on: a broken or
/// refused connection is unreachable (reconnect later), a taken user or
/// room name is `NameTaken`, another uniqueness violation a conflict, a
/// serialization failure or deadlock worth a retry.
impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        // The cause of a connection error (refused, timed out) is its source.
        let text = match std::error::Error::source(&e) {
            Some(cause) if e.as_db_error().is_none() => format!("postgres: {e}: {cause}"),
            _ => format!("postgres: {e}"),
        };
        let Some(code) = e.code() else {
            // No SQLSTATE: the connection or the socket failed.
            return StoreError::Unreachable(text);
        };
        if *code == SqlState::UNIQUE_VIOLATION {
            let constraint = e.as_db_error().and_then(|db| db.constraint());
            return match constraint {
                Some("users_name_key" | "convs_name_key") => StoreError::NameTaken(text),
                _ => StoreError::Conflict(text),
            };
        }
        if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::LOCK_NOT_AVAILABLE
            || code.code().starts_with("53")
        {
            return StoreError::Unavailable(text);
        }
        // Class 08: connection exceptions; 57P0x: the server is shutting
        // down or starting up.
        if code.code().starts_with("08") || code.code().starts_with("57P") {
            return StoreError::Unreachable(text);
        }
        StoreError::Internal(text)
    }
}
