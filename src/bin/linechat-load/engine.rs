//! The event loop: one mio Poll driving every client socket of the run.
//! Reads go through one shared large buffer (only a partial trailing line is
//! kept per client), lines are split with memchr and handed to the protocol
//! adapter, and the resulting events to the scenario, without allocating.
//! Every connection travels in the run's [`Wire`]: plain TCP, TLS (rustls,
//! through the server's own non-blocking stream) or WebSocket frames.

use crate::clock::Clock;
use crate::proto::{ClientSpec, Event, Protocol};
use crate::wire::{ClientStream, Wire};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Shared read buffer; also the longest line we accept.
const READ_BUF: usize = 1 << 20;
/// Publishers stop generating while this much is still unsent.
pub const OUT_HIGH_WATER: usize = 64 * 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Status {
    Idle,
    Connecting,
    Handshaking,
    Ready,
    Dead,
}

pub struct Client<S> {
    sock: Option<ClientStream>,
    /// TLS starts once the server's plaintext greeting line has come.
    tls_pending: bool,
    /// When the current connection attempt started.
    since: Instant,
    /// Whether this connection has received any byte yet.
    heard: bool,
    pub state: S,
    pub spec: ClientSpec,
    pub status: Status,
    carry: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
}

impl<S> Client<S> {
    pub fn pending_out(&self) -> usize {
        self.out.len() - self.out_pos
    }
}

/// How a connection ended (logged; the scenario only learns that it did).
enum Closed {
    Eof,
    Io(io::Error),
    /// The adapter gave up on this line (e.g. a handshake error reply).
    Fatal(String),
}

/// What the scenario is told about, per client.
pub enum Note<'a> {
    Event(Event<'a>),
    Closed,
}

pub struct Engine<P: Protocol> {
    poll: Poll,
    events: Events,
    rbuf: Vec<u8>,
    pub clients: Vec<Client<P::State>>,
    /// Client `i` connects to `addrs[i % addrs.len()]` (the nodes of a
    /// cluster share the clients out).
    addrs: Vec<SocketAddr>,
    wire: Wire,
    clock: Clock,
    warned: usize,
    ready: Vec<(usize, bool, bool)>,
}

impl<P: Protocol> Engine<P> {
    pub fn new(
        addrs: Vec<SocketAddr>,
        wire: Wire,
        specs: Vec<ClientSpec>,
        clock: Clock,
    ) -> io::Result<Self> {
        let clients = specs
            .into_iter()
            .map(|spec| Client {
                sock: None,
                tls_pending: false,
                since: Instant::now(),
                heard: false,
                state: P::State::default(),
                spec,
                status: Status::Idle,
                carry: Vec::new(),
                out: Vec::new(),
                out_pos: 0,
            })
            .collect();
        Ok(Engine {
            poll: Poll::new()?,
            events: Events::with_capacity(4096),
            rbuf: vec![0; READ_BUF],
            clients,
            addrs,
            wire,
            clock,
            warned: 0,
            ready: Vec::new(),
        })
    }

    /// Starts a nonblocking connect for client `i`.
    fn start_connect(&mut self, i: usize) -> io::Result<()> {
        let addr = self.addrs[i % self.addrs.len()];
        let tcp = TcpStream::connect(addr)?;
        let mut sock = self.wire.open(tcp, addr, P::TLS_AFTER_GREETING)?;
        self.poll.registry().register(
            &mut sock,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let c = &mut self.clients[i];
        c.sock = Some(sock);
        c.tls_pending = P::TLS_AFTER_GREETING && self.wire.tls.is_some();
        c.status = Status::Connecting;
        c.since = Instant::now();
        c.heard = false;
        Ok(())
    }

    /// Queues bytes for client `i` (built by `f`) and tries to send them.
    pub fn send(&mut self, i: usize, f: impl FnOnce(&mut Vec<u8>)) {
        let c = &mut self.clients[i];
        if c.status == Status::Dead {
            return;
        }
        f(&mut c.out);
        if let Err(e) = flush(c) {
            self.kill(i, Closed::Io(e), &mut |_, _, _| {});
        }
    }

    /// Waits up to `timeout` for socket readiness and handles it, telling
    /// `on` about every event; `on` gets the read time in ns as well.
    pub fn poll_once(
        &mut self,
        timeout: Duration,
        on: &mut impl FnMut(usize, Note<'_>, u64),
    ) -> io::Result<()> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        // Readiness is copied out first because handling needs `&mut self`;
        // the buffer is reused so polling does not allocate.
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        ready.extend(self.events.iter().map(|e| {
            let r = e.is_readable() || e.is_read_closed() || e.is_error();
            (e.token().0, r, e.is_writable())
        }));
        for &(i, readable, writable) in &ready {
            if self.clients[i].status == Status::Dead {
                continue;
            }
            if writable {
                self.on_writable(i, on);
            }
            if readable && self.clients[i].status != Status::Dead {
                self.on_readable(i, on);
            }
        }
        self.ready = ready;
        Ok(())
    }

    fn on_writable(&mut self, i: usize, on: &mut impl FnMut(usize, Note<'_>, u64)) {
        let c = &mut self.clients[i];
        if c.status == Status::Connecting {
            let sock = c.sock.as_ref().expect("connecting client has a socket");
            let sock = sock.socket();
            match sock.take_error() {
                Ok(Some(e)) | Err(e) => return self.kill(i, Closed::Io(e), on),
                Ok(None) => {}
            }
            match sock.peer_addr() {
                Ok(_) => {}
                // Spurious wakeup: still connecting.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.kill(i, Closed::Io(e), on),
            }
            if let Err(e) = sock.set_nodelay(true) {
                return self.kill(i, Closed::Io(e), on);
            }
            c.status = Status::Handshaking;
            P::on_connect(&mut c.state, &c.spec, &mut c.out);
        }
        if let Err(e) = flush(c) {
            self.kill(i, Closed::Io(e), on);
        }
    }

    fn on_readable(&mut self, i: usize, on: &mut impl FnMut(usize, Note<'_>, u64)) {
        if self.clients[i].status == Status::Connecting {
            // Readable before writable means the connect failed.
            return self.kill(i, Closed::Eof, on);
        }
        if let Some(why) = self.read_lines(i, on) {
            return self.kill(i, why, on);
        }
        if let Err(e) = self.start_tls_after_greeting(i) {
            return self.kill(i, Closed::Io(e), on);
        }
        // Adapters may have queued replies (PONG, JOIN, ...), and TLS its
        // handshake messages.
        let c = &mut self.clients[i];
        if (c.pending_out() > 0 || c.sock.as_ref().is_some_and(ClientStream::holds_output))
            && let Err(e) = flush(c)
        {
            self.kill(i, Closed::Io(e), on);
        }
    }

    /// Switches client `i` to TLS once the greeting line (NATS' INFO) has
    /// been handled; its reply waits in the client's output until then.
    fn start_tls_after_greeting(&mut self, i: usize) -> io::Result<()> {
        let c = &mut self.clients[i];
        if !c.tls_pending || c.pending_out() == 0 {
            return Ok(());
        }
        let config = self.wire.tls.as_ref().expect("TLS pending only with TLS");
        let sock = c.sock.take().expect("live client has a socket");
        let addr = self.addrs[i % self.addrs.len()];
        c.sock = Some(sock.start_tls(addr, config)?);
        c.tls_pending = false;
        Ok(())
    }

    /// Reads everything available for client `i` and handles its lines.
    fn read_lines(
        &mut self,
        i: usize,
        on: &mut impl FnMut(usize, Note<'_>, u64),
    ) -> Option<Closed> {
        let Engine {
            rbuf,
            clients,
            clock,
            ..
        } = self;
        let c = &mut clients[i];
        let mut filled = c.carry.len();
        rbuf[..filled].copy_from_slice(&c.carry);
        c.carry.clear();
        loop {
            let space = rbuf.len() - filled;
            let sock = c.sock.as_mut().expect("live client has a socket");
            match sock.read(&mut rbuf[filled..]) {
                Ok(0) => return Some(Closed::Eof),
                Ok(n) => {
                    let drained = sock.read_drained(n, space);
                    c.heard = true;
                    filled += n;
                    let now = clock.now_ns();
                    let used = match split_lines::<P>(c, &rbuf[..filled], i, now, on) {
                        Ok(used) => used,
                        Err(line) => return Some(Closed::Fatal(line)),
                    };
                    rbuf.copy_within(used..filled, 0);
                    filled -= used;
                    if filled == rbuf.len() {
                        return Some(Closed::Io(io::Error::other("line too long")));
                    }
                    // A short read drained the socket; the next data will
                    // raise a new edge, so skip the read that would block.
                    if drained {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(Closed::Io(e)),
            }
        }
        c.carry.extend_from_slice(&rbuf[..filled]);
        None
    }

    fn kill(&mut self, i: usize, why: Closed, on: &mut impl FnMut(usize, Note<'_>, u64)) {
        let c = &mut self.clients[i];
        if c.status == Status::Dead {
            return;
        }
        // Handshake failures are retried, so only later losses are news.
        let report = c.status == Status::Ready && self.warned < 5;
        if report || log::log_enabled!(log::Level::Debug) {
            self.warned += usize::from(report);
            let what = match &why {
                Closed::Eof => "closed by server".to_string(),
                Closed::Io(e) => e.to_string(),
                Closed::Fatal(l) => l.clone(),
            };
            let level = if report {
                log::Level::Warn
            } else {
                log::Level::Debug
            };
            log::log!(
                level,
                "client {} ({:?}) lost: {what}",
                c.spec.name,
                c.status
            );
        }
        c.status = Status::Dead;
        if let Some(mut s) = c.sock.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        on(i, Note::Closed, self.clock.now_ns());
    }

    /// Kills handshaking connections that have not received a single byte
    /// in `SILENT_LIMIT`: when a listen queue overflows, the client side can
    /// believe a connection is up that the server never accepted, and with a
    /// server-speaks-first protocol nothing would ever happen on it.
    fn reap_silent(&mut self, lost: &mut Vec<usize>) {
        const SILENT_LIMIT: Duration = Duration::from_secs(10);
        for i in 0..self.clients.len() {
            let c = &self.clients[i];
            let pending = matches!(c.status, Status::Connecting | Status::Handshaking);
            if pending && !c.heard && c.since.elapsed() > SILENT_LIMIT {
                let why = Closed::Io(io::Error::new(io::ErrorKind::TimedOut, "nothing received"));
                self.kill(i, why, &mut |i, _, _| lost.push(i));
            }
        }
    }

    /// Forgets client `i`'s dead connection so it can connect again.
    fn reset(&mut self, i: usize) {
        let c = &mut self.clients[i];
        c.state = P::State::default();
        c.status = Status::Idle;
        c.carry.clear();
        c.out.clear();
        c.out_pos = 0;
    }

    /// Closes every socket with an RST (SO_LINGER 0) so that thousands of
    /// client ports don't sit in TIME_WAIT between back-to-back runs.
    pub fn close_all(&mut self) {
        for c in &mut self.clients {
            if let Some(s) = c.sock.take() {
                let s = s.socket();
                let linger = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                // SAFETY: valid fd owned by `s`, correctly sized option value.
                unsafe {
                    libc::setsockopt(
                        s.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        (&linger as *const libc::linger).cast(),
                        size_of::<libc::linger>() as libc::socklen_t,
                    );
                }
            }
            c.status = Status::Dead;
        }
    }

    /// Connects and handshakes the clients in `range`, at most `concurrency` at a
    /// time, until all are Ready or dead or `deadline` passes. A client that
    /// loses its connection before Ready is retried (servers with tiny listen
    /// backlogs reset connections under a connect storm). Returns how many
    /// are Ready.
    pub fn establish(
        &mut self,
        range: std::ops::Range<usize>,
        label: &str,
        concurrency: usize,
        deadline: Instant,
    ) -> io::Result<usize> {
        const ATTEMPTS: u8 = 3;
        let n = range.len();
        let mut queue: std::collections::VecDeque<usize> = range.collect();
        let mut attempts = vec![0u8; self.clients.len()];
        let (mut in_flight, mut ready, mut failed, mut retried) = (0usize, 0, 0, 0);
        let mut lost = Vec::new();
        let mut is_ready = vec![false; self.clients.len()];
        let mut progress = crate::report::Ticker::new();
        while ready + failed < n {
            while in_flight < concurrency
                && let Some(i) = queue.pop_front()
            {
                attempts[i] += 1;
                match self.start_connect(i) {
                    Ok(()) => in_flight += 1,
                    Err(e) => {
                        log::warn!("connect {i}: {e}");
                        self.clients[i].status = Status::Dead;
                        failed += 1;
                    }
                }
            }
            if Instant::now() >= deadline {
                eprintln!();
                log::warn!("handshake timeout: {ready}/{n} ready");
                break;
            }
            self.poll_once(Duration::from_millis(50), &mut |i, note, _| match note {
                Note::Event(Event::Ready) => {
                    is_ready[i] = true;
                    in_flight -= 1;
                    ready += 1;
                }
                Note::Closed => lost.push(i),
                _ => {}
            })?;
            for i in lost.drain(..) {
                // A client that was Ready and dropped stays dead.
                if is_ready[i] {
                    ready -= 1;
                    failed += 1;
                    continue;
                }
                in_flight -= 1;
                if attempts[i] < ATTEMPTS {
                    retried += 1;
                    self.reset(i);
                    queue.push_back(i);
                } else {
                    failed += 1;
                }
            }
            if progress.due() {
                self.reap_silent(&mut lost);
                eprint!(
                    "\r[{label}] connecting: {ready}/{n} ready, {failed} failed, {retried} retried   "
                );
            }
        }
        eprintln!(
            "\r[{label}] connected: {ready}/{n} ready, {failed} failed, {retried} retried   "
        );
        Ok(ready)
    }
}

/// Feeds the complete lines of `buf` to the adapter; returns bytes consumed,
/// or the line on which the adapter declared the connection dead.
fn split_lines<P: Protocol>(
    c: &mut Client<P::State>,
    buf: &[u8],
    i: usize,
    now: u64,
    on: &mut impl FnMut(usize, Note<'_>, u64),
) -> Result<usize, String> {
    let mut start = 0;
    while let Some(nl) = find_newline(&buf[start..]) {
        let end = start + nl;
        let line = &buf[start..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        start = end + 1;
        let ev = P::on_line(&mut c.state, &c.spec, line, &mut c.out);
        match ev {
            Event::Fatal(l) => return Err(String::from_utf8_lossy(l).into_owned()),
            Event::Ready => c.status = Status::Ready,
            Event::Ignore => continue,
            _ => {}
        }
        on(i, Note::Event(ev), now);
    }
    Ok(start)
}

fn find_newline(s: &[u8]) -> Option<usize> {
    // SAFETY: pointer and length come from a valid slice; glibc's memchr is
    // vectorised, which matters at millions of lines per second.
    let p = unsafe { libc::memchr(s.as_ptr().cast(), i32::from(b'\n'), s.len()) };
    (!p.is_null()).then(|| p as usize - s.as_ptr() as usize)
}

fn flush<S>(c: &mut Client<S>) -> io::Result<()> {
    let Some(sock) = c.sock.as_mut() else {
        return Ok(());
    };
    if c.status == Status::Connecting {
        return Ok(());
    }
    while c.out_pos < c.out.len() {
        match sock.write(&c.out[c.out_pos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => c.out_pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    // TLS records still held go out now, or on the next writable edge.
    match sock.flush() {
        Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
        _ => {}
    }
    if c.out_pos == c.out.len() {
        c.out.clear();
        c.out_pos = 0;
    } else if c.out_pos >= OUT_HIGH_WATER {
        c.out.drain(..c.out_pos);
        c.out_pos = 0;
    }
    Ok(())
}
