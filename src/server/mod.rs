//! The event loop: one thread, one `mio::Poll`, sessions in a `Slab`.
//!
//! The loop only moves bytes. Each turn it accepts, reads (a bounded budget
//! per session, so a flooder cannot starve anyone), hands complete lines to
//! the [`Hub`], routes the hub's output into outboxes, publishes the messages
//! the turn read under `--durability async` (one batch per room, see
//! [`Hub::flush_posts`]), and finally flushes every outbox that got
//! something, many lines per `writev`. Password hashing
//! and disk I/O happen on other threads and come back through channels and a
//! `mio::Waker`.
//!
//! This file holds the [`Server`] and its turn; each concern has a file:
//! `accept` (listener and admission: connection caps, descriptor pause,
//! login deadline), `read` (read budget, flood bucket, framing, ATTACH
//! bodies), `route` (the hub's output into outboxes, in command order),
//! `write` (flushes and delivery reports), `slow` (hard and soft outbox
//! limits), `close` (why and how a session ends), `shutdown`, `stats`,
//! `http` (plain requests on the WebSocket listener: health, metrics).
//! A connection (`conn`) is a `transport` (plain TCP, TLS or WebSocket, a
//! [`crate::stream::Stream`]) and a
//! `session` kept apart; `outbox` and `limits` hold the per-connection bounds.

mod accept;
mod close;
mod conn;
mod http;
mod limits;
mod outbox;
mod read;
mod route;
mod session;
mod shutdown;
mod slow;
mod stats;
mod transport;
mod write;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::auth;
use crate::blob::{self, Blobs};
use crate::bus::{self, Bus};
use crate::chat::{AuthCtx, BlobCtx, ConvId, Hub, Out, Pending, Seq, SessionId, SystemEnv};
use crate::config::Config;
use crate::config::StoreUrl;
use crate::fanout::Wire;
use crate::push;
use crate::store::{self, Backend, PostgresBackend, SqliteBackend, Storage};
use crate::stream;
use accept::{Front, TlsListener, bind};
use conn::Conn;
use slow::SoftLimit;
use stats::{Counters, PublishTimes, Rates};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("storage: {0}")]
    Store(#[from] store::StoreError),
    #[error("{0}")]
    Tls(#[from] stream::TlsSetupError),
    #[error("{0}")]
    Bus(#[from] bus::BusError),
    #[error(
        "--bus needs --durability sync or write: under async the hub picks ids and seqs, which two nodes would pick alike"
    )]
    AsyncWithBus,
    #[error(
        "--durability async needs the single-writer SQLite store: with PostgreSQL, use sync or write"
    )]
    AsyncWithPostgres,
}

/// Opens the store `--store` names, for the durability `--durability` asks.
/// `async` lets the hub choose ids and seqs, which only a single writer may
/// do, so PostgreSQL (shared by several nodes) refuses it.
fn open_store(cfg: &Config, blob_dir: &std::path::Path) -> Result<Box<dyn Backend>, ServerError> {
    let fsync_each_commit = cfg.durability.fsync_each_commit();
    Ok(match &cfg.store {
        StoreUrl::Sqlite => Box::new(SqliteBackend::open_with(
            &cfg.data_dir,
            blob_dir.to_path_buf(),
            fsync_each_commit,
        )?),
        StoreUrl::Postgres(_) if cfg.durability == crate::chat::Durability::Async => {
            return Err(ServerError::AsyncWithPostgres);
        }
        StoreUrl::Postgres(url) => Box::new(PostgresBackend::open(
            url,
            blob_dir.to_path_buf(),
            fsync_each_commit,
        )?),
    })
}

/// How the push thread reaches the store's database: a connection of its
/// own, to the SQLite file or the PostgreSQL server.
fn push_queue(cfg: &Config) -> push::Opener {
    match &cfg.store {
        StoreUrl::Sqlite => {
            let path = cfg.data_dir.join("linechat.db");
            let fsynced = cfg.durability.fsync_each_commit();
            Box::new(move || {
                let conn = rusqlite::Connection::open(&path)?;
                conn.busy_timeout(Duration::from_secs(5))?;
                if !fsynced {
                    return Ok(Box::new(conn) as Box<dyn push::queue::PushQueue>);
                }
                let mut wal = path.clone().into_os_string();
                wal.push("-wal");
                let wal = std::fs::File::open(wal)?;
                Ok(Box::new(push::queue::FsyncedRows { queue: conn, wal }))
            })
        }
        StoreUrl::Postgres(url) => {
            let url = url.clone();
            Box::new(move || {
                let client = postgres::Client::connect(&url, postgres::NoTls)?;
                Ok(Box::new(client) as Box<dyn push::queue::PushQueue>)
            })
        }
    }
}

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
const SIGNALS: Token = Token(usize::MAX - 3);
const TLS_LISTENER: Token = Token(usize::MAX - 4);
const WS_LISTENER: Token = Token(usize::MAX - 5);
const WSS_LISTENER: Token = Token(usize::MAX - 6);

/// How long a starting node waits for its bus subscription before it reads
/// the store.
const BUS_READY_WAIT: Duration = Duration::from_secs(5);

/// How often changed delivery cursors are handed to storage (at most
/// `chat::CURSOR_ROWS` at a time).
const CURSOR_FLUSH: Duration = Duration::from_millis(250);

pub struct Server {
    cfg: Config,
    poll: Poll,
    listener: TcpListener,
    /// Set with `--tls-listen`.
    tls: Option<TlsListener>,
    /// Set with `--ws-listen`.
    ws: Option<TcpListener>,
    /// Set with `--wss-listen` (its sessions use `tls`' configuration).
    wss: Option<TcpListener>,
    /// Boxed: the slab's spare capacity then costs a pointer per slot, not
    /// a whole connection.
    conns: Slab<Box<Conn>>,
    hub: Hub,
    out: Out,
    /// What `out` became in bytes per session; kept for its capacity.
    wire: Vec<(SessionId, Wire)>,
    auth: auth::Pool<AuthCtx>,
    auth_done: mpsc::Receiver<auth::Done<AuthCtx>>,
    storage: Option<Storage<Pending>>,
    store_done: mpsc::Receiver<store::Committed<Pending>>,
    /// The storage thread's count of commits cut off mid-COMMIT (STATS).
    in_doubt: Arc<store::InDoubtCounts>,
    blobs: Blobs<BlobCtx>,
    blob_done: mpsc::Receiver<blob::Done<BlobCtx>>,
    /// Pushkeys gateways rejected (the push thread).
    push_rejected: mpsc::Receiver<push::Rejected>,
    /// Set with `--bus`.
    bus: Option<Bus>,
    bus_done: mpsc::Receiver<bus::Incoming>,
    last_position_check: Instant,
    last_heartbeat: Option<Instant>,
    /// One read buffer for all sessions; lines are copied out of it by the framer.
    scratch: Vec<u8>,
    serial: u32,
    /// Sessions with output queued this turn.
    dirty: Vec<usize>,
    /// Sessions that may have input left (read budget spent, or unblocked).
    again: Vec<usize>,
    /// Sessions to close at the end of this turn.
    dead: Vec<usize>,
    /// Tags of message entries just written to a socket (scratch).
    written: Vec<(ConvId, Seq)>,
    /// Sessions whose written tags wait to be reported to the hub.
    /// (session, conversation, highest seq) written, waiting to be reported.
    wrote: Vec<(SessionId, ConvId, Seq)>,
    last_cursor_flush: Instant,
    soft: SoftLimit,
    /// A stream (SYNC, FETCH) gets its next chunk once the outbox is below
    /// this, which keeps a parked reader's stream under both limits.
    stream_low_water: usize,
    accept_paused_until: Option<Instant>,
    /// Out of descriptors was logged; not again until an accept succeeds.
    fd_warned: bool,
    /// Sessions over their command rate, waiting for their bucket.
    throttled: Vec<usize>,
    unauth: limits::UnauthCount,
    /// Login deadlines in connection order (all have the same timeout).
    /// (milliseconds since start, session), 16 bytes an entry.
    login_deadlines: VecDeque<(u32, SessionId)>,
    /// TLS handshake deadlines, kept the same way.
    handshake_deadlines: VecDeque<(u32, SessionId)>,
    /// WebSocket request deadlines, kept the same way.
    ws_deadlines: VecDeque<(u32, SessionId)>,
    signals: Signals,
    started: Instant,
    counters: Counters,
    rates: Rates,
    /// Publish times of recent messages, for `/metrics`.
    published: PublishTimes,
}

impl Server {
    /// Opens storage, starts the worker threads and binds the listener.
    pub fn new(cfg: Config) -> Result<Server, ServerError> {
        // A bad certificate or key stops the start before anything is opened.
        let tls_config = match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(cert), Some(key)) => Some(stream::server_config(cert, key)?),
            _ => None,
        };
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            let _ = waker.wake();
        });

        if cfg.bus.is_some() && cfg.durability == crate::chat::Durability::Async {
            return Err(ServerError::AsyncWithBus);
        }
        // The bus listens before the store is read: a change another node
        // commits after the read is heard, one before it is in what is read
        // (and one in between both: applying a change twice is harmless).
        let (bus_tx, bus_done) = mpsc::sync_channel(clamp_queue(cfg.bus_queue));
        let bus = match &cfg.bus {
            Some(url) => {
                let bus_cfg = bus::BusConfig {
                    url: url.clone(),
                    prefix: cfg.bus_prefix.clone(),
                    queue: clamp_queue(cfg.bus_queue),
                    presence_ttl: Duration::from_secs(cfg.bus_presence_ttl),
                };
                let bus = Bus::start(bus_cfg, bus_tx, Arc::clone(&wake))?;
                // The first thing the subscriber says is that it listens.
                if bus_done.recv_timeout(BUS_READY_WAIT).is_err() {
                    log::warn!(
                        "bus: Redis not reachable at startup; until it is, other nodes' changes are not heard (messages are caught up later, other changes only at a restart)"
                    );
                }
                Some(bus)
            }
            None => None,
        };
        let blob_dir = cfg.blob_dir();
        let mut db = open_store(&cfg, &blob_dir)?;
        let in_doubt = db.in_doubt_counts();
        let snapshot = db.load(cfg.recent)?;
        let (push_tx, push_rejected) = mpsc::channel();
        push::start(
            push_queue(&cfg),
            cfg.push_allow_private,
            push_tx,
            Arc::clone(&wake),
        )?;
        let (store_tx, store_done) = mpsc::channel();
        let storage = Storage::start(db, store_tx, Arc::clone(&wake));
        let (blob_tx, blob_done) = mpsc::channel();
        let blobs = blob::start(blob_dir, blob_tx, Arc::clone(&wake));

        let cost = auth::Cost {
            memory_kib: cfg.argon2_memory_kib,
            iterations: cfg.argon2_iterations,
        };
        let decoy = auth::hash(cost, "decoy password for unknown users")
            .ok_or_else(|| io::Error::other("argon2 parameters rejected"))?;
        let (auth_tx, auth_done) = mpsc::channel();
        let auth = auth::start(cfg.auth_threads, cost, auth_tx, wake);

        let hub_cfg = crate::chat::HubConfig {
            durability: cfg.durability,
            recent: cfg.recent,
            max_text: cfg.max_message,
            presence_room_limit: cfg.presence_room_limit,
            sync_chunk_bytes: (cfg.max_outbox / 8).max(4096),
            max_sessions_per_user: cfg.max_sessions_per_user,
            max_rooms_per_user: cfg.max_rooms_per_user,
            max_room_members: cfg.max_room_members,
            max_attachment: cfg.max_attachment,
            clustered: cfg.bus.is_some(),
            push_allow_private: cfg.push_allow_private,
        };
        let hub = Hub::new(hub_cfg, snapshot, decoy, Box::new(SystemEnv));

        let mut listener = bind(cfg.listen, cfg.listen_backlog)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let tls = match (cfg.tls_listen, tls_config) {
            (Some(addr), Some(config)) => {
                let mut listener = bind(addr, cfg.listen_backlog)?;
                poll.registry()
                    .register(&mut listener, TLS_LISTENER, Interest::READABLE)?;
                Some(TlsListener { listener, config })
            }
            // The flags require each other, so this is "no TLS".
            _ => None,
        };
        let ws = bind_optional(&poll, cfg.ws_listen, WS_LISTENER, cfg.listen_backlog)?;
        // The flags make `--wss-listen` need TLS, so `tls` is there for it.
        let wss = bind_optional(&poll, cfg.wss_listen, WSS_LISTENER, cfg.listen_backlog)?;
        let mut signals = Signals::new([SIGTERM, SIGINT])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let soft = SoftLimit::new(cfg.outbox_soft_limit, cfg.outbox_soft_seconds);
        let stream_low_water = cfg.max_outbox.min(soft.bytes()) / 4;
        Ok(Server {
            scratch: vec![0; cfg.read_budget.clamp(4096, 1 << 20)],
            cfg,
            poll,
            listener,
            tls,
            ws,
            wss,
            conns: Slab::new(),
            hub,
            out: Out::default(),
            wire: Vec::new(),
            auth,
            auth_done,
            storage: Some(storage),
            in_doubt,
            store_done,
            blobs,
            blob_done,
            push_rejected,
            bus,
            bus_done,
            last_position_check: Instant::now(),
            last_heartbeat: None,
            serial: 0,
            dirty: Vec::new(),
            again: Vec::new(),
            dead: Vec::new(),
            written: Vec::new(),
            wrote: Vec::new(),
            last_cursor_flush: Instant::now(),
            soft,
            stream_low_water,
            accept_paused_until: None,
            fd_warned: false,
            throttled: Vec::new(),
            unauth: limits::UnauthCount::default(),
            login_deadlines: VecDeque::new(),
            handshake_deadlines: VecDeque::new(),
            ws_deadlines: VecDeque::new(),
            signals,
            started: Instant::now(),
            counters: Counters::default(),
            rates: Rates::default(),
            published: PublishTimes::default(),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The TLS listener's address, when there is one.
    pub fn tls_local_addr(&self) -> Option<io::Result<SocketAddr>> {
        self.tls.as_ref().map(|t| t.listener.local_addr())
    }

    /// The WebSocket listener's address, when there is one.
    pub fn ws_local_addr(&self) -> Option<io::Result<SocketAddr>> {
        self.ws.as_ref().map(TcpListener::local_addr)
    }

    /// The WebSocket-over-TLS listener's address, when there is one.
    pub fn wss_local_addr(&self) -> Option<io::Result<SocketAddr>> {
        self.wss.as_ref().map(TcpListener::local_addr)
    }

    /// Runs until SIGTERM or SIGINT, then shuts down gracefully.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(Front::Plain),
                    TLS_LISTENER => self.accept(Front::Tls),
                    WS_LISTENER => self.accept(Front::Ws),
                    WSS_LISTENER => self.accept(Front::Wss),
                    WAKER => self.drain_workers(),
                    SIGNALS => {
                        if self.signals.pending().next().is_some() {
                            return self.shutdown(&mut events);
                        }
                    }
                    Token(i) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.service(i);
                        }
                        if event.is_writable() {
                            self.mark_dirty(i);
                        }
                    }
                }
            }
            self.turn_end();
        }
    }

    pub(super) fn poll_timeout(&mut self) -> Option<Duration> {
        if !self.again.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut timeout = Duration::from_secs(1);
        if self.hub.cursors_pending() {
            timeout = timeout.min(CURSOR_FLUSH);
        }
        if self.bus.is_some() {
            timeout = timeout.min(Duration::from_secs(self.cfg.bus_presence_ttl) / 5);
        }
        if let Some(cap) = self.soft.poll_cap() {
            timeout = timeout.min(cap);
        }
        if let Some(until) = self.accept_paused_until {
            timeout = timeout.min(until.saturating_duration_since(Instant::now()));
        }
        let now = self.now_ms();
        for &i in &self.throttled {
            if let Some(until) = self.conns.get(i).and_then(|c| c.session.throttled_until) {
                timeout = timeout.min(Duration::from_millis(u64::from(until.saturating_sub(now))));
            }
        }
        Some(timeout)
    }

    /// Milliseconds since the server started: the clock of flood control.
    pub(super) fn now_ms(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_millis()).unwrap_or(u32::MAX)
    }

    /// Work that is done once per loop turn, after all events.
    pub(super) fn turn_end(&mut self) {
        // A session answered many times this turn is read once more, not
        // once per answer.
        let mut again = std::mem::take(&mut self.again);
        again.sort_unstable();
        again.dedup();
        for i in again {
            self.service(i);
        }
        self.wake_throttled();
        if let Some(until) = self.accept_paused_until
            && Instant::now() >= until
        {
            self.accept_paused_until = None;
            self.accept(Front::Plain);
            self.accept(Front::Tls);
            self.accept(Front::Ws);
            self.accept(Front::Wss);
        }
        self.expire_logins();
        self.expire_handshakes();
        self.drop_over_soft_too_long();
        // Messages said this turn (under async) go out as one batch each.
        self.flush_posts();
        self.tend_bus();
        self.flush_dirty();
        self.close_dead();
        self.tick_rates();
        if self.last_cursor_flush.elapsed() >= CURSOR_FLUSH {
            self.last_cursor_flush = Instant::now();
            self.hub
                .flush_cursors(crate::chat::CURSOR_ROWS, &mut self.out);
            self.apply_out();
        }
    }

    pub(super) fn index_of(&self, sid: SessionId) -> Option<usize> {
        let i = sid.slot();
        self.conns
            .get(i)
            .filter(|c| c.session.sid == sid)
            .map(|_| i)
    }

    pub(super) fn mark_dirty(&mut self, i: usize) {
        if let Some(conn) = self.conns.get_mut(i)
            && !conn.session.dirty
        {
            conn.session.dirty = true;
            self.dirty.push(i);
        }
    }

    pub(super) fn drain_workers(&mut self) {
        while let Ok(done) = self.auth_done.try_recv() {
            self.flush_posts();
            self.hub.authed(done, &mut self.out);
            self.apply_out();
        }
        while let Ok(done) = self.store_done.try_recv() {
            self.flush_posts();
            self.counters.commit_latency.record(done.took);
            self.hub.committed(done, &mut self.out);
            self.apply_out();
        }
        while let Ok(done) = self.blob_done.try_recv() {
            self.flush_posts();
            self.hub.blob_done(done, &mut self.out);
            self.apply_out();
        }
        while let Ok(r) = self.push_rejected.try_recv() {
            self.hub.pusher_rejected(r, &mut self.out);
            self.apply_out();
        }
        while let Ok(incoming) = self.bus_done.try_recv() {
            match incoming {
                bus::Incoming::Fact(shared) => self.hub.remote(shared, &mut self.out),
                bus::Incoming::Connected => {
                    let convs = self.hub.subscribed();
                    self.hub.catch_up(&convs, &mut self.out);
                    self.hub.catch_up_changes(&mut self.out);
                }
                bus::Incoming::Subscribed(convs) => self.hub.catch_up(&convs, &mut self.out),
                bus::Incoming::Presence(online) => {
                    self.hub.presence_elsewhere(online, &mut self.out)
                }
            }
            self.apply_out();
        }
    }

    /// With `--bus`: listens to the channels of the conversations whose
    /// members came or went, asks again for gap reads that are overdue,
    /// and checks every subscribed conversation against the store each
    /// `--bus-position-check` seconds.
    fn tend_bus(&mut self) {
        let Some(bus) = &self.bus else {
            return;
        };
        if let Some(change) = self.hub.subscriptions() {
            if !change.unsubscribe.is_empty() {
                bus.unsubscribe(change.unsubscribe);
            }
            if !change.subscribe.is_empty() {
                bus.subscribe(change.subscribe);
            }
        }
        self.hub.retry_fills(&mut self.out);
        let beat = Duration::from_secs(self.cfg.bus_presence_ttl) / 5;
        if self.last_heartbeat.is_none_or(|at| at.elapsed() >= beat) {
            self.last_heartbeat = Some(Instant::now());
            bus.heartbeat(self.hub.online_here());
        }
        let every = Duration::from_secs(self.cfg.bus_position_check);
        if self.last_position_check.elapsed() >= every {
            self.last_position_check = Instant::now();
            let convs = self.hub.subscribed();
            self.hub.catch_up(&convs, &mut self.out);
            self.hub.catch_up_changes(&mut self.out);
        }
        self.apply_out();
    }

    /// Publishes the messages said so far this turn (under async) and
    /// routes them, before an input that could change who hears them.
    pub(super) fn flush_posts(&mut self) {
        self.hub.flush_posts(&mut self.out);
        self.apply_out();
    }
}

/// A queue bound from a flag, as the channels take it.
fn clamp_queue(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Binds and registers a listener for `addr`, if one is asked for.
fn bind_optional(
    poll: &Poll,
    addr: Option<SocketAddr>,
    token: Token,
    backlog: i32,
) -> io::Result<Option<TcpListener>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let mut listener = bind(addr, backlog)?;
    poll.registry()
        .register(&mut listener, token, Interest::READABLE)?;
    Ok(Some(listener))
}
