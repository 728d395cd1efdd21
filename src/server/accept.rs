//! Accept and admission: the listener, refusals at `--max-connections` and
//! at the per-address cap on connections not logged in, the pause when the
//! process is out of descriptors, and the login deadline.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::Token;
use mio::net::{TcpListener, TcpStream};

use crate::chat::SessionId;
use crate::protocol::driver_lines;

use super::Server;
use super::close::CloseReason;
use super::conn::Conn;
use super::session::Session;
use super::transport::Transport;

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
    pub(super) fn accept(&mut self) {
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

    pub(super) fn open(&mut self, mut sock: TcpStream, peer: SocketAddr) {
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
        // Write interest is added only while the transport asks for it, so
        // the common case (a reader that keeps up) costs no writable wakeups.
        let interest = sock.interest(false);
        if let Err(e) = self.poll.registry().register(&mut sock, Token(i), interest) {
            log::warn!("registering {peer} failed: {e}");
            self.unauth.remove(sid);
            return;
        }
        let session = Session::new(sid, self.cfg.max_line, self.cfg.command_burst);
        entry.insert(Box::new(Conn::new(sock, session)));
        let timeout_ms =
            u32::try_from(self.cfg.login_timeout.saturating_mul(1000)).unwrap_or(u32::MAX);
        self.login_deadlines
            .push_back((self.now_ms().saturating_add(timeout_ms), sid));
        self.counters.accepted += 1;
        self.hub.connect(sid);
        log::info!("session {sid} connected from {peer}");
        self.push(i, driver_lines::hello(), None);
    }

    /// Closes connections that did not log in within the login timeout.
    pub(super) fn expire_logins(&mut self) {
        let now = self.now_ms();
        while let Some(&(deadline, sid)) = self.login_deadlines.front() {
            if deadline > now {
                return;
            }
            self.login_deadlines.pop_front();
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
            }
        }
    }
}
