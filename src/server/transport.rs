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
//! - **`close` ends the stream as its wire form says** (TLS
//!   `close_notify`, a WebSocket close frame), best effort, before the
//!   socket is dropped.
//!
//! - **A read may leave bytes to send** (a TLS handshake message, an
//!   alert): `holds_output` says so, and the loop then marks
//!   the session for a flush, which writes them and asks `interest` again.
//!
//! The loop is written against [`Socket`], the crate's [`crate::stream`]
//! enum over plain TCP, TLS and WebSocket ([`crate::ws`]), which
//! implements this trait by a `match`:
//! one branch per system call, none per delivery, and never a `dyn` call.
//! The TLS stream is boxed, so a TCP connection carries a pointer's worth
//! of enum, not rustls' state.
//!
//! The refusals at accept (`SERVER_FULL`, `TOO_MANY_CONNECTIONS`) are
//! written to the raw socket before any handshake. On the TLS listener that
//! line would only be garbage to a TLS client, so there the refusal is a
//! plain close (counted under the same close reason), and so on the
//! WebSocket listener (before the HTTP request).

use std::io;

use mio::Interest;
use mio::event::Source;

pub use crate::stream::Stream as Socket;

/// A session's byte pipe. See the module documentation for the contract;
/// [`Socket::holds_output`] and [`Socket::close`] are the stream's own.
pub trait Transport: io::Read + io::Write + Source {
    /// The readiness to wait for, given whether the outbox is blocked.
    fn interest(&self, outbox_blocked: bool) -> Interest;
}

impl Transport for Socket {
    fn interest(&self, outbox_blocked: bool) -> Interest {
        // Writable only while something waits: the outbox, or what the
        // stream holds itself (TLS records; never anything on TCP).
        if outbox_blocked || self.holds_output() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }
}
