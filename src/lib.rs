//! linechat: a chat server on one mio event loop, speaking a text line protocol.
//!
//! # Layout
//!
//! - [`protocol`]: the wire form, with no I/O. `framing` splits bytes into
//!   lines, `command` parses a line into a [`protocol::Command`], `directive`
//!   tells the driver what follows a line (a raw body, or nothing because the
//!   session closes), `codec` turns the hub's typed replies and events into
//!   linechat lines (and every error into its ERR code), `help` is the
//!   command reference, `driver_lines` the lines the driver sends itself.
//! - [`chat`]: the sans-IO domain. The [`chat::Hub`] owns users, rooms,
//!   friendships, cursors and the publish pipeline; inputs are `handle`,
//!   `authed`, `committed`, `delivered` calls, outputs are appended to an
//!   [`chat::Out`]: typed [`chat::Reply`]s for one session and typed
//!   [`chat::Event`]s addressed to an [`chat::Audience`] (a conversation's
//!   members, a user's sessions), never bytes or lists of sessions.
//!   `chat::types` holds the domain's vocabulary (id newtypes, `Seq`,
//!   conversation kind, message and request states), which storage maps to
//!   columns. Committed changes, the hub's own and other nodes', reach
//!   the tables through one `Hub::apply` (`chat::apply`); under
//!   `--durability sync` and `write` the commit assigns ids and seqs, and `chat::found`
//!   holds the commands that wait for a conversation being founded. One
//!   file per command family: `accounts`, `rooms` and `membership`,
//!   `say`, `history`, `sync` (cursors, READ, STATUS, TYPING), `attach`,
//!   `friends` (with blocks), `presence` (with AWAY), `inbox` (INBOX,
//!   UNREAD), `reactions`, `moderation` (BAN, MUTE, DEOP, TOPIC, AUDIT),
//!   `push` (PUSHER, and who gets a notification); `shared`, `order` and
//!   `changes` are the cluster's side (what other nodes hear, the
//!   `Sequencer` of messages and the `ChangeLog` of node-wide changes).
//! - [`fanout`]: expands each audience into this node's sessions and has the
//!   codec encode each event once per viewer form, one shared buffer for all
//!   its recipients; the driver gets bytes per session ([`fanout::Wire`]).
//! - [`server`]: the driver. One thread, one `mio::Poll`, connections in a
//!   `Slab`; it reads, frames, hands lines to the hub, routes the hub's
//!   output into bounded outboxes and flushes them. A file per concern:
//!   `accept` (admission), `read` (budget, flood bucket, framing), `route`
//!   (hub output into outboxes, in command order), `write` (flushes,
//!   delivery reports), `slow` (hard and soft outbox limits), `close` (why
//!   every session ended, logged and counted), `shutdown`, `stats`. A
//!   connection (`conn`) is a `transport` (the byte pipe: a [`stream`],
//!   plain TCP, TLS or WebSocket) and a `session` (framer, outbox, reply
//!   order, flood bucket, upload) that never sees the socket; `outbox` and
//!   `limits` hold the bounds. `accept` serves the three listeners; `http`
//!   answers the WebSocket listener's plain requests (the browser client
//!   built in from `web/`, `/healthz`, `/metrics`).
//! - [`store`]: a storage thread that group-commits requests (`thread`) over
//!   a [`store::Backend`] and sends answers back through a channel and the
//!   loop's `Waker` (under `--durability sync`, through a `wal-sync` thread
//!   that releases them after the WAL fsync covering their commit). `api` holds the requests, answers and startup snapshot;
//!   `sqlite` is the server's backend (schema, open and load, reads, writes,
//!   blob references, WAL checkpoints, and `fts`: the full-text index, filled
//!   after the commit in batches when the thread is idle); `postgres` is the
//!   backend for several nodes on one PostgreSQL database (`--store
//!   postgres://...`: schema, open and load, reads, writes, reconnection
//!   with a bounded backoff, on the storage thread with the blocking
//!   `postgres` client); `memory` is an in-memory backend for
//!   the hub's unit tests. Failures are a typed [`store::StoreError`], which
//!   the hub maps to ERR codes in one place. Who may change what is the
//!   hub's rule; the store only keeps uniqueness and compare-and-set, and,
//!   on PostgreSQL, where another node may have committed a change this
//!   node has not applied, the sender's membership inside a message's own
//!   transaction (`StoreError::NotMember`).
//! - [`bus`]: the bus between the nodes of a cluster (`--bus`): Redis
//!   pub/sub on threads of its own (publish, subscribe, presence
//!   heartbeat), a versioned binary `codec` for what the hub shares
//!   (`chat::Shared`: committed changes, typing, receipts), handed to the
//!   loop through a channel and the `Waker`. The hub's `chat::Sequencer`
//!   puts messages from the bus and from this node's commits in seq order,
//!   reading gaps from the store; node-wide changes are also appended to
//!   the store's `change_log` in their own transaction, and the hub's
//!   `chat::ChangeLog` applies them in that log's order, reading from it
//!   what the bus lost. A node listens to a conversation only while a
//!   member is logged in there; when it starts to, it first warms its
//!   copy from the store (`Hub::warmed`), so what was said meanwhile is
//!   history (a JOIN's replay, a LOGIN's SYNC), not news.
//! - [`push`]: push notifications to Matrix push gateways on a thread of
//!   its own. The hub (`chat::push`) queues a row in the message's own
//!   commit for each member with a pusher who is offline (or away, for a
//!   direct message or a mention); the thread sends due rows over its own
//!   database connection, retries with backoff, and reports rejected
//!   pushkeys back through a channel and the `Waker`. `guard` refuses
//!   private gateway addresses unless `--push-allow-private`.
//! - [`auth`] and [`blob`]: argon2 hashing and attachment bodies, each on
//!   [`worker`] threads whose results come back the same way.
//! - [`stream`]: non-blocking byte streams over a mio socket, plain or TLS
//!   (rustls driven as its mio example does), for the server's transports
//!   and the load tool's clients.
//! - [`ws`]: the WebSocket listener's stream over a [`stream::Stream`]: the
//!   HTTP/1.1 request (httparse, bounded, smuggling shapes refused), the
//!   upgrade, and frames both ways driven by hand from its own buffers.
//! - [`config`]: the command-line flags.
//!
//! # One SAY, end to end
//!
//! 1. `server` reads bytes from a socket into the connection's `LineFramer`;
//!    `protocol::directive` says the line stands alone.
//! 2. `protocol::parse` turns `SAY #room hi` into `Command::Say`, and
//!    `Hub::handle` checks membership, gives the message a UUIDv7 (from the
//!    hub's `Env`), and pushes a `store::Request` holding a `Write::Post`
//!    with a `Pending::Said` token (`--durability sync`) and a `Defer` for
//!    the sender's reply.
//! 3. The storage thread commits that request with everything else queued
//!    (one transaction; messages 16 rows to an INSERT), giving the message
//!    the room's next seq inside it; the `wal-sync` thread fsyncs the WAL
//!    (one fsync for every round committed before it, while the storage
//!    thread commits the next) and then sends the tokens back with what was
//!    assigned; the `Waker` wakes the loop. It indexes the message
//!    for SEARCH later, between rounds.
//! 4. `Hub::committed` applies the batch of the room's committed messages
//!    (`Hub::apply(Change::Posted)`, the path another node's messages take
//!    too), which emits one `Event::Messages` to the room's members, then
//!    answers each sender `Reply::Said`.
//! 5. `fanout::route` finds the members' sessions, encodes the batch once
//!    (`protocol::codec`) and gives every recipient a slice of that buffer;
//!    the sender's own session gets the others' messages only.
//! 6. `server` queues the buffer in each recipient's outbox (dropping a slow
//!    consumer at the bound), writes it with one `writev` per session at the
//!    end of the loop turn, and reports what reached each socket to
//!    `Hub::delivered`, which moves delivery cursors and sends receipts.
//!
//! Under `--durability async` the hub gives the message its seq itself and
//! hands storage the write without a token (step 3 then only stores it);
//! step 4 happens at the end of the loop turn instead, in
//! `Hub::flush_posts`, for all the messages the turn read (one batch per
//! room), so a subscriber gets them in one buffer as under `sync`.

pub mod auth;
pub mod blob;
pub mod bus;
pub mod chat;
pub mod config;
pub mod fanout;
pub mod protocol;
pub mod push;
pub mod server;
pub mod store;
pub mod stream;
pub mod worker;
pub mod ws;
