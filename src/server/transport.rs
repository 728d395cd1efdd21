//! The byte pipe under a session: the seam where TLS and WebSocket plug in.
//!
//! The loop deals in the session's plaintext stream (protocol lines and raw
//! bodies); the wire may carry it as TLS records or WebSocket frames. Why
//! the seam has this shape:
//!
//! - **Read and write are `io::Read` and `io::Write`, non-blocking, over
//!   plaintext.** That is what the framer and the outbox already speak, so
//!   neither changes. A rustls stream reads ciphertext (`read_tls`),
//!   decrypts (`process_new_packets`) and returns plaintext; a WebSocket one
//!   returns unmasked payloads. `WouldBlock` means "nothing now", `Ok(0)`
//!   the end of the stream.
//! - **Writes are vectored.** The outbox hands many shared entries to one
//!   call and the transport takes a prefix: one `writev` for TCP, one TLS
//!   record batch or WebSocket frame for the others, and no copy of an entry
//!   into a per-session buffer on the TCP path.
//! - **Bytes a transport holds itself are pushed by `io::Write::flush`.** A
//!   TLS stream may accept plaintext and hold the ciphertext it could not
//!   write yet; the outbox calls `flush` after its entries, and a
//!   `WouldBlock` from it counts as a blocked outbox. Such a transport must
//!   bound what it holds (rustls' buffer limit) and refuse with `WouldBlock`
//!   beyond it, so that the outbox limits stay the session's bound. For TCP
//!   `flush` does nothing. An entry counts as delivered (cursor, receipt)
//!   once the transport has taken it whole.
//! - **The transport says which readiness it needs** ([`Transport::interest`]):
//!   readable always; writable while the outbox is blocked *or* it holds
//!   bytes of its own (TLS ciphertext, a handshake reply), and only then, so
//!   a reader that keeps up costs no writable wakeups on any transport.
//! - **It is a `mio::event::Source`**, registered under the connection's
//!   token: the TCP stream underneath, whatever runs over it.
//! - **[`Transport::close`] ends the stream as its wire form says** (TLS
//!   `close_notify`, a WebSocket close frame), best effort, before the
//!   socket is dropped.
//!
//! - **A read may leave bytes to send** (a TLS handshake message, an
//!   alert): [`Transport::holds_output`] says so, and the loop then marks
//!   the session for a flush, which writes them and asks `interest` again.
//!
//! The loop is written against [`Socket`], an enum over the transports that
//! implements this trait by a `match`: one branch per system call, none per
//! delivery, and never a `dyn` call. The TLS stream is boxed, so a TCP
//! connection carries a pointer's worth of enum, not rustls' state.
//!
//! The refusals at accept (`SERVER_FULL`, `TOO_MANY_CONNECTIONS`) are
//! written to the raw socket before any handshake. On the TLS listener that
//! line would only be garbage to a TLS client, so there the refusal is a
//! plain close (counted under the same close reason).

use std::io::{self, IoSlice};

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::tls::TlsStream;

/// A session's byte pipe. See the module documentation for the contract.
pub trait Transport: io::Read + io::Write + Source {
    /// The readiness to wait for, given whether the outbox is blocked.
    fn interest(&self, outbox_blocked: bool) -> Interest;

    /// Bytes of the transport's own wait to be written (see `holds_output`
    /// in the module documentation).
    fn holds_output(&self) -> bool;

    /// Ends the stream as the wire form asks, best effort, before it drops.
    fn close(&mut self);
}

/// The transport of one connection.
#[derive(Debug)]
pub enum Socket {
    Tcp(TcpStream),
    Tls(Box<TlsStream>),
}

impl Transport for Socket {
    fn interest(&self, outbox_blocked: bool) -> Interest {
        match self {
            // TCP holds nothing of its own: the kernel's buffer is the only one.
            Socket::Tcp(_) if outbox_blocked => Interest::READABLE | Interest::WRITABLE,
            Socket::Tcp(_) => Interest::READABLE,
            Socket::Tls(s) => s.interest(outbox_blocked),
        }
    }

    fn holds_output(&self) -> bool {
        match self {
            Socket::Tcp(_) => false,
            Socket::Tls(s) => s.holds_output(),
        }
    }

    fn close(&mut self) {
        match self {
            // Dropping the socket closes it; TCP has no closing message.
            Socket::Tcp(_) => {}
            Socket::Tls(s) => s.close(),
        }
    }
}

impl io::Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Tls(s) => s.read(buf),
        }
    }
}

impl io::Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Tls(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write_vectored(bufs),
            Socket::Tls(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Socket::Tcp(_) => Ok(()),
            Socket::Tls(s) => s.flush(),
        }
    }
}

impl Socket {
    /// The socket the poll watches, whichever transport runs over it.
    fn socket_mut(&mut self) -> &mut TcpStream {
        match self {
            Socket::Tcp(s) => s,
            Socket::Tls(s) => s.socket_mut(),
        }
    }
}

impl Source for Socket {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.socket_mut().register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.socket_mut().reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.socket_mut().deregister(registry)
    }
}
