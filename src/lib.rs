//! linechat: a chat server on one mio event loop, speaking a text line protocol.
//!
//! - [`protocol`]: framing, parsing and encoding lines (no I/O).
//! - [`chat`]: the sans-IO domain: users, rooms, friends, the publish pipeline.
//! - [`auth`]: argon2 password hashing on worker threads.
//! - [`blob`]: attachment bodies on disk, on a thread of their own.
//! - [`store`]: SQLite on a storage thread.
//! - [`server`]: the event loop, sessions and their outboxes.
//! - [`worker`]: the threads behind `auth` and `blob`, results sent back to the loop.

pub mod auth;
pub mod blob;
pub mod chat;
pub mod config;
pub mod protocol;
pub mod server;
pub mod store;
pub mod worker;
