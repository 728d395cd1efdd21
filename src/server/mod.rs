//! The event loop: one thread, one `mio::Poll`, sessions in a `Slab`.
//!
//! The loop only moves bytes. Each turn it accepts, reads (a bounded budget
//! per session, so a flooder cannot starve anyone), hands complete lines to
//! the [`Hub`], routes the hub's output into outboxes, and finally flushes
//! every outbox that got something, many lines per `writev`. Password hashing
//! and disk I/O happen on other threads and come back through channels and a
//! `mio::Waker`.

mod close;
mod conn;
mod limits;
mod outbox;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::auth;
use crate::blob::{self, Blobs};
use crate::chat::{AuthCtx, BlobCtx, ConvId, Hub, Out, Output, Pending, SessionId};
use crate::config::Config;
use crate::protocol::{self, Frame, Framing, Lost, ParseError, driver_lines};
use crate::store::{self, Storage};
use close::CloseReason;
use conn::{Conn, Upload};
use outbox::{Flushed, Tag};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("storage: {0}")]
    Store(#[from] store::StoreError),
}

/// Accept errors that mean the process or system is out of descriptors or
/// memory: retrying at once would only spin.
fn is_resource_exhaustion(e: &io::Error) -> bool {
    const ENOMEM: i32 = 12;
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    const ENOBUFS: i32 = 105;
    matches!(e.raw_os_error(), Some(ENOMEM | ENFILE | EMFILE | ENOBUFS))
}

/// A listening socket with a backlog big enough for a connect storm (the
/// standard library's 128 drops connections when thousands arrive at once;
/// the kernel caps it at net.core.somaxconn).
fn bind(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(TcpListener::from_std(socket.into()))
}

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
const SIGNALS: Token = Token(usize::MAX - 3);

/// How often changed delivery cursors are handed to storage.
const CURSOR_FLUSH: Duration = Duration::from_secs(1);

/// How often sessions over the soft outbox limit are checked; the soft
/// deadline is kept to within this much.
const SOFT_LIMIT_CHECK: Duration = Duration::from_millis(250);

/// How long accepting pauses when the process is out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Connection-level counters, read by STATS.
#[derive(Debug, Default)]
struct Counters {
    accepted: u64,
    refused: u64,
    slow_consumer_drops: u64,
    login_timeouts: u64,
    bytes_out: u64,
    /// Flushes that wrote something (one or more writev calls each).
    flushes: u64,
    /// Closed sessions and refused connections, per [`CloseReason`].
    closed: [u64; CloseReason::ALL.len()],
}

/// Per-second rates computed once a second from the hub's counters.
#[derive(Debug, Default)]
struct Rates {
    at: Option<Instant>,
    messages_in: u64,
    deliveries_out: u64,
    messages_per_sec: u64,
    deliveries_per_sec: u64,
}

pub struct Server {
    cfg: Config,
    poll: Poll,
    listener: TcpListener,
    /// Boxed: the slab's spare capacity then costs a pointer per slot, not
    /// a whole connection.
    conns: Slab<Box<Conn>>,
    hub: Hub,
    out: Out,
    auth: auth::Pool<AuthCtx>,
    auth_done: mpsc::Receiver<auth::Done<AuthCtx>>,
    storage: Option<Storage<Pending>>,
    store_done: mpsc::Receiver<store::Committed<Pending>>,
    blobs: Blobs<BlobCtx>,
    blob_done: mpsc::Receiver<blob::Done<BlobCtx>>,
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
    written: Vec<(ConvId, u64)>,
    /// Sessions whose written tags wait to be reported to the hub.
    /// (session, conversation, highest seq) written, waiting to be reported.
    wrote: Vec<(SessionId, ConvId, u64)>,
    last_cursor_flush: Instant,
    /// Outboxes above this many bytes are on the clock (`usize::MAX`: the
    /// soft limit is off).
    soft_limit: usize,
    /// How long an outbox may stay above `soft_limit`, in milliseconds.
    soft_ms: u32,
    /// Sessions whose outbox is above `soft_limit`, with the time (ms since
    /// start) it went over; only slow readers are here, so it is short.
    over_soft: Vec<(usize, u32)>,
    last_soft_check: Instant,
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
    signals: Signals,
    started: Instant,
    counters: Counters,
    rates: Rates,
}

impl Server {
    /// Opens storage, starts the worker threads and binds the listener.
    pub fn new(cfg: Config) -> Result<Server, ServerError> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            let _ = waker.wake();
        });

        let (db, snapshot) = store::open(&cfg.data_dir, cfg.recent)?;
        let (store_tx, store_done) = mpsc::channel();
        let blob_dir = cfg.data_dir.join("blobs");
        let storage = Storage::start(db, blob_dir.clone(), store_tx, Arc::clone(&wake));
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
        };
        let hub = Hub::new(hub_cfg, snapshot, decoy);

        let mut listener = bind(cfg.listen, cfg.listen_backlog)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut signals = Signals::new([SIGTERM, SIGINT])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let soft_on = cfg.outbox_soft_limit > 0 && cfg.outbox_soft_seconds > 0;
        let soft_limit = if soft_on {
            cfg.outbox_soft_limit
        } else {
            usize::MAX
        };
        let soft_ms =
            u32::try_from(cfg.outbox_soft_seconds.saturating_mul(1000)).unwrap_or(u32::MAX);
        let stream_low_water = cfg.max_outbox.min(soft_limit) / 4;
        Ok(Server {
            scratch: vec![0; cfg.read_budget.clamp(4096, 1 << 20)],
            cfg,
            poll,
            listener,
            conns: Slab::new(),
            hub,
            out: Out::default(),
            auth,
            auth_done,
            storage: Some(storage),
            store_done,
            blobs,
            blob_done,
            serial: 0,
            dirty: Vec::new(),
            again: Vec::new(),
            dead: Vec::new(),
            written: Vec::new(),
            wrote: Vec::new(),
            last_cursor_flush: Instant::now(),
            soft_limit,
            soft_ms,
            over_soft: Vec::new(),
            last_soft_check: Instant::now(),
            stream_low_water,
            accept_paused_until: None,
            fd_warned: false,
            throttled: Vec::new(),
            unauth: limits::UnauthCount::default(),
            login_deadlines: VecDeque::new(),
            signals,
            started: Instant::now(),
            counters: Counters::default(),
            rates: Rates::default(),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
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
                    LISTENER => self.accept(),
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

    fn poll_timeout(&mut self) -> Option<Duration> {
        if !self.again.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut timeout = Duration::from_secs(1);
        if !self.over_soft.is_empty() {
            timeout = SOFT_LIMIT_CHECK;
        }
        if let Some(until) = self.accept_paused_until {
            timeout = timeout.min(until.saturating_duration_since(Instant::now()));
        }
        let now = self.now_ms();
        for &i in &self.throttled {
            if let Some(until) = self.conns.get(i).and_then(|c| c.throttled_until) {
                timeout = timeout.min(Duration::from_millis(u64::from(until.saturating_sub(now))));
            }
        }
        Some(timeout)
    }

    /// Milliseconds since the server started: the clock of flood control.
    fn now_ms(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_millis()).unwrap_or(u32::MAX)
    }

    /// Work that is done once per loop turn, after all events.
    fn turn_end(&mut self) {
        for i in std::mem::take(&mut self.again) {
            self.service(i);
        }
        self.wake_throttled();
        if let Some(until) = self.accept_paused_until
            && Instant::now() >= until
        {
            self.accept_paused_until = None;
            self.accept();
        }
        self.expire_logins();
        self.drop_over_soft_too_long();
        self.flush_dirty();
        self.close_dead();
        self.tick_rates();
        if self.last_cursor_flush.elapsed() >= CURSOR_FLUSH {
            self.last_cursor_flush = Instant::now();
            self.hub.flush_cursors(&mut self.out);
            self.apply_out();
        }
    }

    fn accept(&mut self) {
        if self.accept_paused_until.is_some() {
            return;
        }
        loop {
            match self.listener.accept() {
                Ok((sock, peer)) => {
                    self.fd_warned = false;
                    self.open(sock, peer)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_resource_exhaustion(&e) => {
                    if !self.fd_warned {
                        log::warn!(
                            "cannot accept: {e}; retrying every {ACCEPT_PAUSE:?} while existing sessions are served"
                        );
                        self.fd_warned = true;
                    }
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
                Err(e) => {
                    // ECONNABORTED and friends concern one client only.
                    log::debug!("accept failed: {e}");
                }
            }
        }
    }

    fn open(&mut self, mut sock: TcpStream, peer: SocketAddr) {
        let slot = self.conns.vacant_key();
        let sid = SessionId::new(self.serial.wrapping_add(1), slot as u32);
        let refusal = if self.conns.len() >= self.cfg.max_connections {
            Some((driver_lines::SERVER_FULL, CloseReason::ServerFull))
        } else if !self
            .unauth
            .try_add(sid, peer.ip(), self.cfg.max_unauth_per_ip)
        {
            Some((
                driver_lines::TOO_MANY_CONNECTIONS,
                CloseReason::TooManyUnauth,
            ))
        } else {
            None
        };
        if let Some((line, reason)) = refusal {
            self.counters.closed[reason as usize] += 1;
            // Best effort: the socket is new, so its buffer has room.
            let _ = sock.write(line);
            self.counters.refused += 1;
            log::warn!("refused {peer}: {}", reason.name());
            return;
        }
        self.serial = self.serial.wrapping_add(1);
        // Replies are small and latency matters; batching is done by writev.
        let _ = sock.set_nodelay(true);
        if self.cfg.keepalive > 0 {
            let ka = socket2::TcpKeepalive::new()
                .with_time(Duration::from_secs(self.cfg.keepalive))
                .with_interval(Duration::from_secs(10))
                .with_retries(3);
            let _ = socket2::SockRef::from(&sock).set_tcp_keepalive(&ka);
        }
        let entry = self.conns.vacant_entry();
        let i = entry.key();
        // Write interest is added only while an outbox is blocked, so the
        // common case (a reader that keeps up) costs no writable wakeups.
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut sock, Token(i), Interest::READABLE)
        {
            log::warn!("registering {peer} failed: {e}");
            self.unauth.remove(sid);
            return;
        }
        entry.insert(Box::new(Conn::new(
            sock,
            sid,
            self.cfg.max_line,
            self.cfg.command_burst,
        )));
        let timeout_ms =
            u32::try_from(self.cfg.login_timeout.saturating_mul(1000)).unwrap_or(u32::MAX);
        self.login_deadlines
            .push_back((self.now_ms().saturating_add(timeout_ms), sid));
        self.counters.accepted += 1;
        self.hub.connect(sid);
        log::info!("session {sid} connected from {peer}");
        self.push(i, driver_lines::hello(), None);
    }

    /// Reads and handles input for connection `i` within its budget.
    fn service(&mut self, i: usize) {
        let mut budget = self.cfg.read_budget;
        loop {
            let Some(conn) = self.conns.get_mut(i) else {
                return;
            };
            let sid = conn.sid;
            if conn.closing {
                return;
            }
            self.handle_lines(i);
            let Some(conn) = self.conns.get_mut(i) else {
                return;
            };
            // Busy, throttled or closing: leave the rest in the kernel's
            // buffer, which pushes back on the client.
            let wanted = self.hub.accepts_input(sid) || conn.upload.is_some();
            if !wanted || conn.closing || conn.throttled_until.is_some() {
                return;
            }
            if conn.eof {
                if conn.finished() {
                    conn.close_as(CloseReason::ClientClosed);
                    self.dead.push(i);
                }
                return;
            }
            if budget == 0 {
                self.again.push(i);
                return;
            }
            let want = budget.min(self.scratch.len());
            match conn.sock.read(&mut self.scratch[..want]) {
                Ok(0) if conn.upload.is_some() => {
                    // The body of an ATTACH was cut short: nothing is published.
                    conn.close_as(CloseReason::UploadCut);
                    self.dead.push(i);
                    return;
                }
                Ok(0) => conn.eof = true,
                Ok(n) => {
                    budget -= n;
                    conn.framer.feed(&self.scratch[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("session {sid} read error: {e}");
                    conn.close_as(CloseReason::ReadError);
                    self.dead.push(i);
                    return;
                }
            }
        }
    }

    /// Hands every complete buffered line of connection `i` to the hub, while
    /// the hub accepts input from it.
    fn handle_lines(&mut self, i: usize) {
        let now = self.now_ms();
        let (rate, burst) = (self.cfg.command_rate, self.cfg.command_burst);
        let max_body = self.cfg.max_attachment;
        let Server {
            conns,
            hub,
            out,
            throttled,
            ..
        } = self;
        loop {
            let Some(conn) = conns.get_mut(i) else {
                return;
            };
            let sid = conn.sid;
            if conn.closing {
                break;
            }
            if let Some(up) = &mut conn.upload {
                let chunk = conn
                    .framer
                    .take_raw(up.remaining.min(usize::MAX as u64) as usize);
                if chunk.is_empty() {
                    break;
                }
                up.remaining -= chunk.len() as u64;
                if let Some(data) = &mut up.data {
                    data.extend_from_slice(chunk);
                }
                if up.remaining == 0
                    && let Some(Upload {
                        data: Some(data), ..
                    }) = conn.upload.take().map(|u| *u)
                {
                    hub.payload(sid, data, out);
                }
                continue;
            }
            if conn.throttled_until.is_some() || !hub.accepts_input(sid) {
                break;
            }
            if !conn.framer.has_line() {
                break;
            }
            if rate > 0
                && burst > 0
                && let Err(wait) = conn.bucket.take(now, rate, burst)
            {
                conn.throttled_until = Some(now.saturating_add(wait));
                throttled.push(i);
                break;
            }
            let Some(frame) = conn.framer.next_frame() else {
                break;
            };
            match frame {
                Frame::Line(line) => {
                    let parsed = protocol::parse(line);
                    let framing = protocol::framing(line, &parsed, max_body);
                    if let Framing::Lost(lost) = framing {
                        // What follows cannot be split into lines: answer, stop reading.
                        out.reply(sid, lost.line());
                        conn.closing = true;
                        conn.close_as(match lost {
                            Lost::BadSize => CloseReason::ProtocolError,
                            Lost::TooLarge(_) => CloseReason::TooLarge,
                        });
                        continue;
                    }
                    match parsed {
                        Ok(cmd) => hub.handle(sid, cmd, out),
                        Err(e) => hub.bad_line(sid, e, out),
                    }
                    match framing {
                        // Stop reading right away: what follows is ignored.
                        Framing::Close => {
                            conn.closing = true;
                            conn.close_as(CloseReason::Quit);
                        }
                        // The body follows whatever the answer: read it, and
                        // keep it only if the hub wants it.
                        Framing::Body(size) => {
                            let data = hub
                                .wants_payload(sid)
                                .then(|| Vec::with_capacity(size.min(1 << 20) as usize));
                            if size == 0 {
                                if let Some(data) = data {
                                    hub.payload(sid, data, out);
                                }
                            } else {
                                conn.upload = Some(Box::new(Upload {
                                    remaining: size,
                                    data,
                                }));
                            }
                        }
                        Framing::Line | Framing::Lost(_) => {}
                    }
                }
                Frame::TooLong => hub.bad_line(sid, ParseError::LineTooLong, out),
                Frame::BadUtf8 => hub.bad_line(sid, ParseError::BadUtf8, out),
            }
        }
        self.apply_out();
    }

    /// Routes everything the hub produced: lines to outboxes, jobs to workers.
    fn apply_out(&mut self) {
        let mut out = std::mem::take(&mut self.out);
        for (sid, output) in out.lines.drain(..) {
            let Some(i) = self.index_of(sid) else {
                continue;
            };
            let conn = &mut self.conns[i];
            match output {
                Output::Reply(b) => {
                    if let Some(b) = conn.reply(b) {
                        self.push(i, b, None);
                    }
                }
                Output::Event(b) => self.push_event(i, b, None),
                Output::Deliver { line, conv, seq } => self.push_event(i, line, Some((conv, seq))),
                Output::Defer => conn.defer(),
                Output::Complete(b) => {
                    if !conn.authed && self.hub.user_of(sid).is_some() {
                        conn.authed = true;
                        self.unauth.remove(sid);
                    }
                    for (b, tag) in conn.complete(b) {
                        self.push(i, b, tag);
                    }
                    if let Some(conn) = self.conns.get_mut(i)
                        && conn.hold_events
                        && conn.held.is_empty()
                    {
                        // The FETCH is over: the events it held back follow it.
                        conn.hold_events = false;
                        for (b, tag) in std::mem::take(&mut conn.waiting) {
                            self.push(i, b, tag);
                        }
                    }
                    // The session may have been waiting on this to read on.
                    self.again.push(i);
                }
                Output::Partial { lines, tag } => {
                    for (b, tag) in conn.partial(lines, tag) {
                        self.push(i, b, tag);
                    }
                }
                Output::Body(bytes) => {
                    conn.hold_events = true;
                    for (b, tag) in conn.partial(bytes, None) {
                        self.push(i, b, tag);
                    }
                }
                Output::Close => {
                    conn.close_as(CloseReason::ChatRequest);
                    conn.close_after_replies();
                }
                Output::Stats => {
                    let stats = self.stats_reply();
                    if let Some(b) = self.conns[i].reply(stats) {
                        self.push(i, b, None);
                    }
                }
            }
            self.mark_dirty(i);
        }
        for job in out.auth.drain(..) {
            self.auth.submit(job);
        }
        for job in out.blobs.drain(..) {
            self.blobs.submit(job);
        }
        if let Some(storage) = &self.storage {
            for req in out.store.drain(..) {
                storage.submit(req);
            }
        }
        // Hand the (now empty) vectors back so their capacity is reused.
        self.out = out;
    }

    fn index_of(&self, sid: SessionId) -> Option<usize> {
        let i = sid.slot();
        self.conns.get(i).filter(|c| c.sid == sid).map(|_| i)
    }

    /// Queues an event, unless a FETCH body is being written: then it waits
    /// (counted against the outbox limit) until the body is done.
    fn push_event(&mut self, i: usize, b: Bytes, tag: Tag) {
        let Some(conn) = self.conns.get_mut(i) else {
            return;
        };
        if !conn.hold_events {
            return self.push(i, b, tag);
        }
        let waiting: usize = conn.waiting.iter().map(|(w, _)| w.len()).sum();
        if waiting + conn.outbox.len_bytes() + b.len() > self.cfg.max_outbox {
            self.drop_slow(i, CloseReason::SlowConsumer);
        } else {
            conn.waiting.push((b, tag));
        }
    }

    /// Queues `b` for connection `i`, dropping it as a slow consumer if its
    /// outbox would pass the limit.
    fn push(&mut self, i: usize, b: Bytes, tag: Tag) {
        let Some(conn) = self.conns.get_mut(i) else {
            return;
        };
        if conn.dropped {
            return;
        }
        if conn.outbox.len_bytes() + b.len() > self.cfg.max_outbox {
            // Over the limit: first let the kernel take what it will. Only a
            // reader whose socket buffer is full as well is slow.
            if let Ok((_, n)) = conn.outbox.flush(&mut conn.sock, &mut self.written) {
                self.counters.bytes_out += n as u64;
            }
            self.note_written(i);
        }
        let Some(conn) = self.conns.get_mut(i) else {
            return;
        };
        if conn.outbox.push(b, tag, self.cfg.max_outbox) {
            self.mark_dirty(i);
            return;
        }
        self.drop_slow(i, CloseReason::SlowConsumer);
    }

    /// Drops connection `i` as a slow consumer, for `reason`.
    fn drop_slow(&mut self, i: usize, reason: CloseReason) {
        let Some(conn) = self.conns.get_mut(i) else {
            return;
        };
        if conn.dropped {
            return;
        }
        conn.close_as(reason);
        self.counters.slow_consumer_drops += 1;
        // Best effort: the client may be mid-line, hence the leading CRLF.
        conn.outbox.clear();
        conn.waiting = Vec::new();
        let _ = io::Write::write(&mut conn.sock, driver_lines::SLOW_CONSUMER);
        conn.closing = true;
        conn.dropped = true;
        self.dead.push(i);
    }

    fn mark_dirty(&mut self, i: usize) {
        if let Some(conn) = self.conns.get_mut(i)
            && !conn.dirty
        {
            conn.dirty = true;
            self.dirty.push(i);
        }
    }

    fn flush_dirty(&mut self) {
        let now = self.now_ms();
        while !self.dirty.is_empty() {
            for i in std::mem::take(&mut self.dirty) {
                let Some(conn) = self.conns.get_mut(i) else {
                    continue;
                };
                conn.dirty = false;
                match conn.outbox.flush(&mut conn.sock, &mut self.written) {
                    Ok((flushed, n)) => {
                        self.counters.bytes_out += n as u64;
                        if n > 0 {
                            self.counters.flushes += 1;
                        }
                        let blocked = flushed == Flushed::Blocked;
                        if blocked != conn.want_write {
                            conn.want_write = blocked;
                            let interest = if blocked {
                                Interest::READABLE | Interest::WRITABLE
                            } else {
                                Interest::READABLE
                            };
                            let _ =
                                self.poll
                                    .registry()
                                    .reregister(&mut conn.sock, Token(i), interest);
                        }
                        if !blocked && conn.finished() {
                            conn.close_as(CloseReason::ClientClosed);
                            self.dead.push(i);
                        }
                        // On the clock while over the soft limit, off once under.
                        let over = conn.outbox.len_bytes() > self.soft_limit;
                        if over != conn.over_soft {
                            conn.over_soft = over;
                            if over {
                                self.over_soft.push((i, now));
                            } else {
                                self.over_soft.retain(|&(o, _)| o != i);
                            }
                        }
                    }
                    Err(e) => {
                        log::debug!("session {} write error: {e}", conn.sid);
                        conn.close_as(CloseReason::WriteError);
                        self.dead.push(i);
                    }
                }
                self.note_written(i);
            }
            // Report what reached sockets, and let SYNC streams continue.
            self.report_written();
        }
    }

    /// Keeps what connection `i` just wrote for the hub: per conversation,
    /// only the highest seq (cursors only move forward).
    fn note_written(&mut self, i: usize) {
        if self.written.is_empty() {
            return;
        }
        if let Some(conn) = self.conns.get(i) {
            let sid = conn.sid;
            self.written.sort_unstable();
            for (k, &(conv, seq)) in self.written.iter().enumerate() {
                if self.written.get(k + 1).is_none_or(|next| next.0 != conv) {
                    self.wrote.push((sid, conv, seq));
                }
            }
        }
        self.written.clear();
    }

    /// Tells the hub which messages reached which sessions, and pulls the
    /// next piece of streams (SYNC, FETCH) whose outbox has drained. New
    /// output marks sessions dirty again; `flush_dirty` loops until none is.
    fn report_written(&mut self) {
        let mut wrote = std::mem::take(&mut self.wrote);
        for &(sid, conv, seq) in &wrote {
            self.hub.delivered(sid, conv, seq, &mut self.out);
        }
        wrote.clear();
        // Hand the vector back so its capacity is reused next turn.
        self.wrote = wrote;
        let low_water = self.stream_low_water;
        let pull: Vec<SessionId> = self
            .hub
            .streams_waiting()
            .filter(|&sid| {
                self.index_of(sid).is_some_and(|i| {
                    let c = &self.conns[i];
                    c.outbox.len_bytes() < low_water && c.held.len() <= 1 && !c.dropped
                })
            })
            .collect();
        for sid in pull {
            self.hub.stream_more(sid, &mut self.out);
        }
        self.apply_out();
    }

    fn close_dead(&mut self) {
        while let Some(i) = self.dead.pop() {
            let Some(mut conn) = self.conns.try_remove(i) else {
                continue;
            };
            let _ = self.poll.registry().deregister(&mut conn.sock);
            if conn.over_soft {
                self.over_soft.retain(|&(o, _)| o != i);
            }
            if !conn.authed {
                self.unauth.remove(conn.sid);
            }
            self.record_close(conn.sid, conn.reason.unwrap_or(CloseReason::ClientClosed));
            self.hub.disconnect(conn.sid, &mut self.out);
            self.apply_out();
        }
        // Closing may have queued presence events for others.
        if !self.dirty.is_empty() {
            self.flush_dirty();
            if !self.dead.is_empty() {
                self.close_dead();
            }
        }
    }

    /// Counts a closed session under its reason and logs it, once.
    fn record_close(&mut self, sid: SessionId, reason: CloseReason) {
        self.counters.closed[reason as usize] += 1;
        let level = if reason.is_drop() {
            log::Level::Warn
        } else {
            log::Level::Info
        };
        log::log!(level, "session {sid} closed: {}", reason.name());
    }

    /// Drops the sessions whose outbox has stayed above the soft limit for
    /// longer than allowed. Checked every `SOFT_LIMIT_CHECK` at most.
    fn drop_over_soft_too_long(&mut self) {
        if self.over_soft.is_empty() || self.last_soft_check.elapsed() < SOFT_LIMIT_CHECK {
            return;
        }
        self.last_soft_check = Instant::now();
        let now = self.now_ms();
        let soft_ms = self.soft_ms;
        let expired: Vec<usize> = self
            .over_soft
            .iter()
            .filter(|&&(_, since)| now.saturating_sub(since) > soft_ms)
            .map(|&(i, _)| i)
            .collect();
        for i in expired {
            self.drop_slow(i, CloseReason::SlowConsumerSoft);
        }
    }

    /// Serves throttled sessions whose bucket has refilled.
    fn wake_throttled(&mut self) {
        if self.throttled.is_empty() {
            return;
        }
        let now = self.now_ms();
        let mut still = Vec::new();
        for i in std::mem::take(&mut self.throttled) {
            let Some(conn) = self.conns.get_mut(i) else {
                continue;
            };
            match conn.throttled_until {
                Some(until) if until > now => still.push(i),
                _ => {
                    conn.throttled_until = None;
                    self.service(i);
                }
            }
        }
        self.throttled.extend(still);
    }

    /// Closes connections that did not log in within the login timeout.
    fn expire_logins(&mut self) {
        let now = self.now_ms();
        while let Some(&(deadline, sid)) = self.login_deadlines.front() {
            if deadline > now {
                return;
            }
            self.login_deadlines.pop_front();
            let Some(i) = self.index_of(sid) else {
                continue;
            };
            if self.conns[i].authed || self.hub.user_of(sid).is_some() {
                continue;
            }
            self.counters.login_timeouts += 1;
            self.push(i, driver_lines::login_timeout(self.cfg.login_timeout), None);
            if let Some(c) = self.conns.get_mut(i) {
                c.closing = true;
                c.close_as(CloseReason::LoginTimeout);
            }
        }
    }

    /// Stops accepting, says BYE to everyone, drains outboxes for a bounded
    /// time, hands the last cursors to storage and waits for its final commit.
    fn shutdown(&mut self, events: &mut Events) -> io::Result<()> {
        log::info!("shutting down: {} sessions", self.conns.len());
        let _ = self.poll.registry().deregister(&mut self.listener);
        let bye = driver_lines::bye();
        let all: Vec<usize> = self.conns.iter().map(|(i, _)| i).collect();
        for i in all {
            self.push(i, bye.clone(), None);
            if let Some(c) = self.conns.get_mut(i) {
                c.closing = true;
                c.close_as(CloseReason::Shutdown);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(self.cfg.shutdown_grace);
        loop {
            self.flush_dirty();
            let pending = self.conns.iter().any(|(_, c)| !c.outbox.is_empty());
            let now = Instant::now();
            if !pending || now >= deadline {
                break;
            }
            self.poll.poll(
                events,
                Some((deadline - now).min(Duration::from_millis(50))),
            )?;
            for event in events.iter() {
                match event.token() {
                    WAKER => self.drain_workers(),
                    Token(i) if event.is_writable() => self.mark_dirty(i),
                    _ => {}
                }
            }
        }
        self.hub.flush_cursors(&mut self.out);
        self.apply_out();
        // Every session still open ends here, drained or not.
        let open: Vec<Box<Conn>> = self.conns.drain().collect();
        for conn in open {
            self.record_close(conn.sid, conn.reason.unwrap_or(CloseReason::Shutdown));
        }
        // Dropping the handle makes the storage thread commit what it has and exit.
        drop(self.storage.take());
        log::info!("shutdown complete");
        Ok(())
    }

    fn drain_workers(&mut self) {
        while let Ok(done) = self.auth_done.try_recv() {
            self.hub.authed(done, &mut self.out);
            self.apply_out();
        }
        while let Ok(done) = self.store_done.try_recv() {
            self.hub.committed(done, &mut self.out);
            self.apply_out();
        }
        while let Ok(done) = self.blob_done.try_recv() {
            self.hub.blob_done(done, &mut self.out);
            self.apply_out();
        }
    }

    fn tick_rates(&mut self) {
        let now = Instant::now();
        let r = &mut self.rates;
        let c = &self.hub.counters;
        match r.at {
            Some(at) if now.duration_since(at) < Duration::from_secs(1) => {}
            Some(at) => {
                let secs = now.duration_since(at).as_secs_f64();
                r.messages_per_sec = ((c.messages_in - r.messages_in) as f64 / secs) as u64;
                r.deliveries_per_sec = ((c.deliveries_out - r.deliveries_out) as f64 / secs) as u64;
                *r = Rates {
                    at: Some(now),
                    messages_in: c.messages_in,
                    deliveries_out: c.deliveries_out,
                    ..*r
                };
            }
            None => {
                r.at = Some(now);
                r.messages_in = c.messages_in;
                r.deliveries_out = c.deliveries_out;
            }
        }
    }

    fn stats_reply(&self) -> Bytes {
        let c = &self.hub.counters;
        let queued: usize = self.conns.iter().map(|(_, c)| c.outbox.len_bytes()).sum();
        let avg_commit = c.commit_micros_total.checked_div(c.commits).unwrap_or(0);
        let rows: [(&str, u64); 17] = [
            ("sessions", self.conns.len() as u64),
            ("users_online", self.hub.users_online() as u64),
            ("rooms", self.hub.room_count() as u64),
            ("connections_accepted", self.counters.accepted),
            ("connections_refused", self.counters.refused),
            ("login_timeouts", self.counters.login_timeouts),
            ("messages_in", c.messages_in),
            ("deliveries_out", c.deliveries_out),
            ("messages_in_per_sec", self.rates.messages_per_sec),
            ("deliveries_out_per_sec", self.rates.deliveries_per_sec),
            ("outbox_bytes_queued", queued as u64),
            ("slow_consumer_drops", self.counters.slow_consumer_drops),
            ("bytes_out", self.counters.bytes_out),
            ("flushes", self.counters.flushes),
            ("storage_commits", c.commits),
            ("storage_commit_avg_us", avg_commit),
            ("storage_commit_last_us", c.commit_micros_last),
        ];
        let closed = CloseReason::ALL.map(|r| (r.name(), self.counters.closed[r as usize]));
        driver_lines::stats(rows, closed)
    }
}
