//! Command-line flags, each with a `LINECHAT_*` environment variable and a
//! default that works out of the box (`cargo run --release`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::chat::Durability;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "linechat",
    version,
    about = "A chat server you can reach with nc"
)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "LINECHAT_LISTEN", default_value = "127.0.0.1:7878")]
    pub listen: SocketAddr,

    /// Folder for the database; created if absent.
    #[arg(long, env = "LINECHAT_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// `sync`: OK only after the change is on disk. `async`: OK at once,
    /// committed within milliseconds.
    #[arg(long, env = "LINECHAT_DURABILITY", value_enum, default_value = "sync")]
    pub durability: Durability,

    /// Longest accepted line in bytes, without its line ending.
    #[arg(long, env = "LINECHAT_MAX_LINE", default_value_t = 4096)]
    pub max_line: usize,

    /// Bytes that may wait in one session's outbox; a session whose outbox
    /// would grow past this is dropped as a slow consumer.
    #[arg(long, env = "LINECHAT_MAX_OUTBOX", default_value_t = 1 << 20)]
    pub max_outbox: usize,

    /// Bytes read from one session per loop turn before serving the others.
    #[arg(long, env = "LINECHAT_READ_BUDGET", default_value_t = 64 * 1024)]
    pub read_budget: usize,

    /// Messages kept in memory per conversation and replayed on JOIN.
    #[arg(long, env = "LINECHAT_RECENT", default_value_t = 100)]
    pub recent: usize,

    /// Presence events go to co-members of rooms with at most this many members.
    #[arg(long, env = "LINECHAT_PRESENCE_ROOM_LIMIT", default_value_t = 500)]
    pub presence_room_limit: usize,

    /// Threads hashing passwords.
    #[arg(long, env = "LINECHAT_AUTH_THREADS", default_value_t = 2)]
    pub auth_threads: usize,

    /// argon2 memory cost in KiB (default: the argon2 crate's recommendation).
    #[arg(long, env = "LINECHAT_ARGON2_MEMORY_KIB", default_value_t = argon2::Params::DEFAULT_M_COST)]
    pub argon2_memory_kib: u32,

    /// argon2 iterations (default: the argon2 crate's recommendation).
    #[arg(long, env = "LINECHAT_ARGON2_ITERATIONS", default_value_t = argon2::Params::DEFAULT_T_COST)]
    pub argon2_iterations: u32,
}
