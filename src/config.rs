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

    /// Address for a second listener serving the same protocol over TLS
    /// (port 0 picks a free port). Needs `--tls-cert` and `--tls-key`.
    #[arg(long, env = "LINECHAT_TLS_LISTEN", requires_all = ["tls_cert", "tls_key"])]
    pub tls_listen: Option<SocketAddr>,

    /// PEM file with the TLS certificate chain, leaf first.
    #[arg(long, env = "LINECHAT_TLS_CERT", requires_all = ["tls_listen", "tls_key"])]
    pub tls_cert: Option<PathBuf>,

    /// PEM file with the TLS private key (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "LINECHAT_TLS_KEY", requires_all = ["tls_listen", "tls_cert"])]
    pub tls_key: Option<PathBuf>,

    /// Seconds a TLS connection may take to complete its handshake before it
    /// is closed. 0 turns the deadline off (the login timeout still applies).
    #[arg(long, env = "LINECHAT_TLS_HANDSHAKE_TIMEOUT", default_value_t = 10)]
    pub tls_handshake_timeout: u64,

    /// Address for the WebSocket listener (`ws://`, with the browser client
    /// at `/`, `/healthz` and `/metrics` over HTTP on the same port; port 0
    /// picks a free port).
    #[arg(long, env = "LINECHAT_WS_LISTEN")]
    pub ws_listen: Option<SocketAddr>,

    /// Address for a WebSocket listener inside TLS (`wss://`, with the same
    /// HTTP endpoints; port 0 picks a free port). Needs the TLS flags.
    #[arg(long, env = "LINECHAT_WSS_LISTEN", requires_all = ["tls_cert", "tls_key"])]
    pub wss_listen: Option<SocketAddr>,

    /// Bytes of an HTTP request head on the WebSocket listener; a longer
    /// head is answered 431 and closed.
    #[arg(long, env = "LINECHAT_WS_MAX_REQUEST", default_value_t = 8192)]
    pub ws_max_request: usize,

    /// Headers in an HTTP request on the WebSocket listener; more are
    /// answered 431 and closed.
    #[arg(long, env = "LINECHAT_WS_MAX_HEADERS", default_value_t = 32)]
    pub ws_max_headers: usize,

    /// Payload bytes of one WebSocket frame, either way. A bigger frame
    /// from a client is answered with close code 1009 and closed.
    #[arg(long, env = "LINECHAT_WS_MAX_FRAME", default_value_t = 65536,
          value_parser = clap::value_parser!(u32).range(1024..))]
    pub ws_max_frame: u32,

    /// Seconds a WebSocket connection may take to send its complete HTTP
    /// request (and to read an HTTP answer) before it is closed. 0 turns
    /// the deadline off.
    #[arg(long, env = "LINECHAT_WS_HANDSHAKE_TIMEOUT", default_value_t = 10)]
    pub ws_handshake_timeout: u64,

    /// Messages whose publish time `/metrics` keeps for the delivery
    /// latency histogram (each for at most 10 s); messages published while
    /// this many are kept are not measured.
    #[arg(
        long,
        env = "LINECHAT_METRICS_TRACKED_MESSAGES",
        default_value_t = 65536
    )]
    pub metrics_tracked_messages: usize,

    /// Connections the kernel may queue before they are accepted (capped by
    /// net.core.somaxconn).
    #[arg(long, env = "LINECHAT_LISTEN_BACKLOG", default_value_t = 4096)]
    pub listen_backlog: i32,

    /// Redis address of the bus between nodes (`redis://host:port`): several
    /// nodes on one shared store, each publishing what it commits. Without
    /// it the node is alone. Needs `--durability sync` or `write`.
    #[arg(long, env = "LINECHAT_BUS")]
    pub bus: Option<String>,

    /// Bus channel names start with this: clusters sharing one Redis must
    /// differ in it.
    #[arg(long, env = "LINECHAT_BUS_PREFIX", default_value = "linechat")]
    pub bus_prefix: String,

    /// Facts waiting to be published on the bus, and received ones waiting
    /// for the event loop. Past it a fact to publish is dropped (the other
    /// nodes read it from the store) and the node stops reading from Redis
    /// until the loop catches up.
    #[arg(long, env = "LINECHAT_BUS_QUEUE", default_value_t = 65536,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub bus_queue: u64,

    /// Seconds between position checks: every conversation this node
    /// listens to is read from the store past its last delivered seq, which
    /// catches a bus subscription that died silently.
    #[arg(long, env = "LINECHAT_BUS_POSITION_CHECK", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub bus_position_check: u64,

    /// Seconds a node's presence lasts in Redis without a heartbeat (one
    /// every fifth of it): a node that dies or stops takes its users
    /// offline on the other nodes within this plus a heartbeat.
    #[arg(long, env = "LINECHAT_BUS_PRESENCE_TTL", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub bus_presence_ttl: u64,

    /// Let push notifications go to gateways on this machine or private
    /// networks (loopback, 10/8, 192.168/16, ...). Off by default: a
    /// client names the gateway, and could otherwise aim the server at
    /// services only it can reach.
    #[arg(long, env = "LINECHAT_PUSH_ALLOW_PRIVATE")]
    pub push_allow_private: bool,

    /// Folder for the database; created if absent.
    #[arg(long, env = "LINECHAT_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Where the durable state lives: `sqlite` (a file in `--data-dir`, one
    /// node) or `postgres://user@host:port/db` (a PostgreSQL database that
    /// several nodes may share; README, PostgreSQL).
    #[arg(long, env = "LINECHAT_STORE", default_value = "sqlite")]
    pub store: StoreUrl,

    /// Folder for attachment bodies (default: `blobs` in `--data-dir`).
    /// Nodes sharing a PostgreSQL store must share this folder too (e.g.
    /// over NFS), so that every node can serve every attachment.
    #[arg(long, env = "LINECHAT_BLOB_DIR")]
    pub blob_dir: Option<PathBuf>,

    /// What an OK promises survives (README, Durability): `sync` (on disk),
    /// `write` (in the OS, on disk within half a second) or `async` (OK at
    /// once).
    #[arg(long, env = "LINECHAT_DURABILITY", value_enum, default_value = "sync")]
    pub durability: Durability,

    /// Longest accepted line in bytes, without its line ending.
    #[arg(long, env = "LINECHAT_MAX_LINE", default_value_t = 4096)]
    pub max_line: usize,

    /// Bytes that may wait in one session's outbox; a session whose outbox
    /// would grow past this is dropped as a slow consumer.
    #[arg(long, env = "LINECHAT_MAX_OUTBOX", default_value_t = 1 << 20)]
    pub max_outbox: usize,

    /// Bytes above which one session's outbox may stay for at most
    /// `--outbox-soft-seconds`; a session over it for longer is dropped as a
    /// slow consumer. 0 turns the soft limit off.
    #[arg(long, env = "LINECHAT_OUTBOX_SOFT_LIMIT", default_value_t = 256 * 1024)]
    pub outbox_soft_limit: usize,

    /// Seconds a session's outbox may stay above `--outbox-soft-limit`.
    /// 0 turns the soft limit off.
    #[arg(long, env = "LINECHAT_OUTBOX_SOFT_SECONDS", default_value_t = 10)]
    pub outbox_soft_seconds: u64,

    /// Bytes read from one session per loop turn before serving the others.
    #[arg(long, env = "LINECHAT_READ_BUDGET", default_value_t = 64 * 1024)]
    pub read_budget: usize,

    /// Messages kept in memory per conversation and replayed on JOIN.
    #[arg(long, env = "LINECHAT_RECENT", default_value_t = 100)]
    pub recent: usize,

    /// Presence events go to co-members of rooms with at most this many members.
    #[arg(long, env = "LINECHAT_PRESENCE_ROOM_LIMIT", default_value_t = 500)]
    pub presence_room_limit: usize,

    /// Longest message text (SAY, EDIT) in bytes; the line limit bounds it too.
    #[arg(long, env = "LINECHAT_MAX_MESSAGE", default_value_t = 4000)]
    pub max_message: usize,

    /// Largest attachment (ATTACH body) in bytes. A larger declaration is
    /// refused before its body, which is then read and discarded if it is at
    /// most 256 KiB; a bigger one closes the connection.
    #[arg(long, env = "LINECHAT_MAX_ATTACHMENT", default_value_t = 16 << 20)]
    pub max_attachment: u64,

    /// Commands per second one session may run on average; a session over
    /// its rate is not read from until its bucket refills. 0 turns it off.
    #[arg(long, env = "LINECHAT_COMMAND_RATE", default_value_t = 5000)]
    pub command_rate: u32,

    /// Commands one session may run at once before the rate applies.
    /// 0 turns flood control off.
    #[arg(long, env = "LINECHAT_COMMAND_BURST", default_value_t = 10000)]
    pub command_burst: u32,

    /// Open connections at most; more are told ERR SERVER_FULL and closed.
    #[arg(long, env = "LINECHAT_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: usize,

    /// Connections not yet logged in, per client IP address.
    #[arg(long, env = "LINECHAT_MAX_UNAUTH_PER_IP", default_value_t = 64)]
    pub max_unauth_per_ip: u32,

    /// Seconds a connection may take to log in before it is closed.
    #[arg(long, env = "LINECHAT_LOGIN_TIMEOUT", default_value_t = 60)]
    pub login_timeout: u64,

    /// Sessions one user may have open at once.
    #[arg(long, env = "LINECHAT_MAX_SESSIONS_PER_USER", default_value_t = 32)]
    pub max_sessions_per_user: usize,

    /// Rooms and groups one user may belong to.
    #[arg(long, env = "LINECHAT_MAX_ROOMS_PER_USER", default_value_t = 1000)]
    pub max_rooms_per_user: usize,

    /// Members one room or group may have.
    #[arg(long, env = "LINECHAT_MAX_ROOM_MEMBERS", default_value_t = 100_000)]
    pub max_room_members: usize,

    /// Seconds of silence before TCP keepalive probes start (then 3 probes,
    /// 10 s apart): a vanished peer is closed, and shown offline, after
    /// about this plus 30 seconds. 0 turns keepalive off.
    #[arg(long, env = "LINECHAT_KEEPALIVE", default_value_t = 60)]
    pub keepalive: u64,

    /// Seconds a shutdown (SIGTERM, SIGINT) waits for outboxes to drain.
    #[arg(long, env = "LINECHAT_SHUTDOWN_GRACE", default_value_t = 2)]
    pub shutdown_grace: u64,

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

/// `--store`: the embedded SQLite file, or a PostgreSQL server's URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite,
    Postgres(String),
}

impl std::str::FromStr for StoreUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "sqlite" {
            Ok(StoreUrl::Sqlite)
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(StoreUrl::Postgres(s.to_string()))
        } else {
            Err("expected `sqlite` or a postgres://user@host:port/db URL".into())
        }
    }
}

impl Config {
    /// Where attachment bodies live.
    pub fn blob_dir(&self) -> PathBuf {
        self.blob_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("blobs"))
    }
}
