//! linechat: a chat server on one mio event loop, speaking a text line protocol.
//!
//! # Layout
//!
//! - [`protocol`]: the wire form, with no I/O. `framing` splits bytes into
//!   lines, `command` parses a line into a [`protocol::Command`], `directive`
//!   tells the driver what follows a line (a raw body, or nothing because the
//!   session closes), `encode` and `driver_lines` build every outgoing line.
//! - [`chat`]: the sans-IO domain. The [`chat::Hub`] owns users, rooms,
//!   friendships, cursors and the publish pipeline; inputs are `handle`,
//!   `authed`, `committed`, `delivered` calls, outputs are appended to an
//!   [`chat::Out`]. `chat::types` holds the domain's vocabulary (id newtypes,
//!   conversation kind, message and request states), which storage maps to
//!   columns.
//! - [`server`]: the driver. One thread, one `mio::Poll`, connections in a
//!   `Slab`; it reads, frames, hands lines to the hub, routes the hub's
//!   output into bounded outboxes and flushes them. A file per concern:
//!   `accept` (admission), `read` (budget, flood bucket, framing), `route`
//!   (hub output into outboxes, in command order), `write` (flushes,
//!   delivery reports), `slow` (hard and soft outbox limits), `close` (why
//!   every session ended, logged and counted), `shutdown`, `stats`. A
//!   connection (`conn`) is a `transport` (the byte pipe: TCP today, the
//!   seam for TLS and WebSocket) and a `session` (framer, outbox, reply
//!   order, flood bucket, upload) that never sees the socket; `outbox` and
//!   `limits` hold the bounds.
//! - [`store`]: SQLite on a storage thread, group commit, answers sent back
//!   through a channel and the loop's `Waker`.
//! - [`auth`] and [`blob`]: argon2 hashing and attachment bodies, each on
//!   [`worker`] threads whose results come back the same way.
//! - [`config`]: the command-line flags.
//!
//! # One SAY, end to end
//!
//! 1. `server` reads bytes from a socket into the connection's `LineFramer`;
//!    `protocol::directive` says the line stands alone.
//! 2. `protocol::parse` turns `SAY #room hi` into `Command::Say`, and
//!    `Hub::handle` checks membership, gives the message the room's next seq
//!    and a UUIDv7, and pushes a `store::Request` with a `Pending::Said`
//!    token (`--durability sync`) and a `Defer` for the sender's reply.
//! 3. The storage thread commits that request with everything else queued
//!    (one transaction, one fsync) and sends the tokens back; the `Waker`
//!    wakes the loop.
//! 4. `Hub::committed` fans the message out: one encoded buffer per batch of
//!    the room's messages, shared by every member session, then `OK SAY`.
//! 5. `server` queues the buffer in each recipient's outbox (dropping a slow
//!    consumer at the bound), writes it with one `writev` per session at the
//!    end of the loop turn, and reports what reached each socket to
//!    `Hub::delivered`, which moves delivery cursors and sends receipts.

pub mod auth;
pub mod blob;
pub mod chat;
pub mod config;
pub mod protocol;
pub mod server;
pub mod store;
pub mod worker;
