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
//!   token; a wrapper delegates to the TCP stream it owns.
//! - **[`Transport::close`] ends the stream as its wire form says** (TLS
//!   `close_notify`, a WebSocket close frame), best effort, before the
//!   socket is dropped.
//!
//! The loop is written against [`Socket`], one concrete type, so a write is
//! a direct call, never a `dyn` one. When a second transport lands, `Socket`
//! becomes an enum over them that implements this trait by a `match`: one
//! branch per system call, none per delivery. What the TLS one will need
//! beyond this: a read that leaves ciphertext to send (a handshake message)
//! must mark its session for a flush, so that `interest` is asked again; and
//! the refusals at accept (`SERVER_FULL`, ...), written to the raw socket
//! before any handshake, become a plain close on a TLS listener.

use std::io;

use mio::Interest;
use mio::event::Source;
use mio::net::TcpStream;

/// A session's byte pipe. See the module documentation for the contract.
pub trait Transport: io::Read + io::Write + Source {
    /// The readiness to wait for, given whether the outbox is blocked.
    fn interest(&self, outbox_blocked: bool) -> Interest;

    /// Ends the stream as the wire form asks, best effort, before it drops.
    fn close(&mut self);
}

/// The transport every connection uses today.
pub type Socket = TcpStream;

impl Transport for TcpStream {
    fn interest(&self, outbox_blocked: bool) -> Interest {
        // TCP holds nothing of its own: the kernel's buffer is the only one.
        if outbox_blocked {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }

    fn close(&mut self) {
        // Dropping the socket closes it; TCP has no closing message.
    }
}
