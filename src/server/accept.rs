//! Accept and admission: the listener, refusals at `--max-connections` and
//! at the per-address cap on connections not logged in, the pause when the
//! process is out of descriptors, and the login and TLS handshake deadlines.
//! Both listeners (plain TCP and TLS) admit through the same caps; a refusal
//! is a line on plain TCP and a plain close on TLS (see `transport`).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::Token;
use mio::net::{TcpListener, TcpStream};
use rustls::ServerConfig;

use crate::ws::{WsLimits, WsStream};

use crate::chat::SessionId;
use crate::protocol::driver_lines;

use super::Server;
use super::close::CloseReason;
use super::conn::Conn;
use super::session::Session;
use super::transport::{Socket, Transport};
use crate::stream::TlsStream;

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Front {
    Plain,
    Tls,
    /// WebSocket (and HTTP) over plain TCP.
    Ws,
    /// WebSocket (and HTTP) over TLS.
    Wss,
}

/// The TLS listener and the configuration its sessions share.
pub(super) struct TlsListener {
    pub(super) listener: TcpListener,
    pub(super) config: Arc<ServerConfig>,
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
pub(super) fn bind(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// How long accepting pauses when the process is out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

impl Server {
    /// Accepts every connection waiting on the `front` listener.
    pub(super) fn accept(&mut self, front: Front) {
        if self.accept_paused_until.is_some() {
            return;
        }
        loop {
            let listener = match front {
                Front::Plain => Some(&self.listener),
                Front::Tls => self.tls.as_ref().map(|t| &t.listener),
                Front::Ws => self.ws.as_ref(),
                Front::Wss => self.wss.as_ref(),
            };
            let Some(listener) = listener else {
                return;
            };
            let accepted = listener.accept();
            match accepted {
                Ok((sock, peer)) => {
                    self.fd_warned = false;
                    self.open(sock, peer, front)
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

    /// Admits a new connection that came in on the `front` listener.
    pub(super) fn open(&mut self, mut sock: TcpStream, peer: SocketAddr, front: Front) {
        let tls_config = match (front, &self.tls) {
            (Front::Tls | Front::Wss, Some(tls)) => Some(Arc::clone(&tls.config)),
            _ => None,
        };
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
            // Best effort: the socket is new, so its buffer has room. A TLS
            // or WebSocket client would read the line as garbage: it gets a
            // close.
            if front == Front::Plain {
                let _ = sock.write(line);
            }
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
        let stream = match tls_config {
            None => Socket::Tcp(sock),
            Some(config) => match TlsStream::server(sock, config) {
                Ok(tls) => Socket::Tls(Box::new(tls)),
                Err(e) => {
                    log::warn!("TLS session for {peer} not created: {e}");
                    self.unauth.remove(sid);
                    return;
                }
            },
        };
        let is_ws = matches!(front, Front::Ws | Front::Wss);
        let mut transport = if is_ws {
            let limits = WsLimits {
                max_request: self.cfg.ws_max_request,
                max_headers: self.cfg.ws_max_headers,
                max_frame: self.cfg.ws_max_frame as usize,
            };
            Socket::Ws(Box::new(WsStream::new(stream, limits)))
        } else {
            stream
        };
        let entry = self.conns.vacant_entry();
        let i = entry.key();
        // Write interest is added only while the transport asks for it, so
        // the common case (a reader that keeps up) costs no writable wakeups.
        let interest = transport.interest(false);
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut transport, Token(i), interest)
        {
            log::warn!("registering {peer} failed: {e}");
            self.unauth.remove(sid);
            return;
        }
        let session = Session::new(sid, self.cfg.max_line, self.cfg.command_burst);
        entry.insert(Box::new(Conn::new(transport, session)));
        let now = self.now_ms();
        push_deadline(&mut self.login_deadlines, now, self.cfg.login_timeout, sid);
        if front == Front::Tls && self.cfg.tls_handshake_timeout > 0 {
            let timeout = self.cfg.tls_handshake_timeout;
            push_deadline(&mut self.handshake_deadlines, now, timeout, sid);
        }
        // On wss this deadline covers the TLS handshake and the request.
        if is_ws && self.cfg.ws_handshake_timeout > 0 {
            let timeout = self.cfg.ws_handshake_timeout;
            push_deadline(&mut self.ws_deadlines, now, timeout, sid);
        }
        self.counters.accepted += 1;
        self.hub.connect(sid);
        let over = match front {
            Front::Plain => "",
            Front::Tls => " over TLS",
            Front::Ws => " over WebSocket",
            Front::Wss => " over WebSocket in TLS",
        };
        log::info!("session {sid} connected from {peer}{over}");
        self.push(i, driver_lines::hello(), None);
    }

    /// Closes connections that did not log in within the login timeout.
    pub(super) fn expire_logins(&mut self) {
        let now = self.now_ms();
        while let Some(sid) = pop_due(&mut self.login_deadlines, now) {
            let Some(i) = self.index_of(sid) else {
                continue;
            };
            if self.conns[i].session.authed || self.hub.user_of(sid).is_some() {
                continue;
            }
            self.counters.login_timeouts += 1;
            self.push(i, driver_lines::login_timeout(self.cfg.login_timeout), None);
            if let Some(c) = self.conns.get_mut(i) {
                c.session.closing = true;
                c.session.close_as(CloseReason::LoginTimeout);
                // An HTTP answer still unread (with no WebSocket deadline):
                // the client will not read it now.
                if matches!(&c.transport, Socket::Ws(ws) if ws.is_finishing()) {
                    self.dead.push(i);
                }
            }
        }
    }
}

impl Server {
    /// Closes TLS connections whose handshake did not end within
    /// `--tls-handshake-timeout`, and WebSocket ones without a complete
    /// request, or whose HTTP answer the client has not read all of, within
    /// `--ws-handshake-timeout`. Nothing is written: there is no channel to
    /// write a line on yet (or any more).
    pub(super) fn expire_handshakes(&mut self) {
        let now = self.now_ms();
        let queues = [
            (
                &mut self.handshake_deadlines,
                CloseReason::TlsHandshakeTimeout,
            ),
            (&mut self.ws_deadlines, CloseReason::WsHandshakeTimeout),
        ];
        for (queue, reason) in queues {
            while let Some(sid) = pop_due(queue, now) {
                let i = sid.slot();
                let Some(conn) = self.conns.get_mut(i).filter(|c| c.session.sid == sid) else {
                    continue;
                };
                let handshaking = match &conn.transport {
                    Socket::Tls(tls) => tls.is_handshaking(),
                    // An HTTP answer (the page) must be written by then too.
                    Socket::Ws(ws) => ws.is_handshaking() || ws.is_finishing(),
                    Socket::Tcp(_) => false,
                };
                if handshaking {
                    conn.session.closing = true;
                    conn.session.close_as(reason);
                    self.dead.push(i);
                }
            }
        }
    }
}

/// Queues `sid`'s deadline, `seconds` from `now_ms`. Every entry of a queue
/// has the same timeout, so the queue stays in deadline order.
fn push_deadline(
    queue: &mut VecDeque<(u32, SessionId)>,
    now_ms: u32,
    seconds: u64,
    sid: SessionId,
) {
    let timeout_ms = u32::try_from(seconds.saturating_mul(1000)).unwrap_or(u32::MAX);
    queue.push_back((now_ms.saturating_add(timeout_ms), sid));
}

/// The next session whose deadline has passed, taken off the queue.
fn pop_due(queue: &mut VecDeque<(u32, SessionId)>, now_ms: u32) -> Option<SessionId> {
    let &(deadline, sid) = queue.front()?;
    if deadline > now_ms {
        return None;
    }
    queue.pop_front();
    Some(sid)
}
