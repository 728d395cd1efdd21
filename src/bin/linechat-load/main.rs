//! linechat-load: drives thousands of TCP chat clients from one thread with
//! one mio Poll, against linechat or, for comparison, IRC, NATS and Redis.
//! Only loopback targets are accepted: this is a local benchmark tool.

mod clock;
mod engine;
mod floor_server;
mod payload;
mod proto;
mod report;
mod scenario;
mod wire;

use clap::{Args, Parser, Subcommand, ValueEnum};
use proto::{
    floor::Floor, irc::Irc, linechat::Linechat, nats::Nats, nats_js::NatsJs, redis::Redis,
    redis_streams::RedisStreams,
};
use scenario::Settings;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use wire::Wire;

#[derive(Parser)]
#[command(
    version,
    about = "Load and benchmark tool for linechat (and IRC/NATS/Redis peers)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    common: Common,
}

#[derive(Clone, Copy, ValueEnum)]
enum Proto {
    Linechat,
    /// linechat over WebSocket (its `--ws-listen` address; `--wss-listen`
    /// with --tls-ca): the upgrade, then lines in masked text frames of at
    /// most 16 KiB (the server's `--ws-max-frame` must allow them).
    Ws,
    /// linechat over TLS (its `--tls-listen` address): `linechat` with
    /// --tls-ca, which this needs.
    Tls,
    Irc,
    Nats,
    Redis,
    /// Redis Streams (XADD, XREAD BLOCK): what Redis persists, with AOF on.
    /// Fanout and latency only.
    RedisStreams,
    /// NATS JetStream, file storage, push consumers. Fanout and latency only.
    NatsJs,
    /// The load tool's own `floor-server`: a baseline, not a chat server.
    Floor,
}

#[derive(Args)]
struct Common {
    /// Wire protocol of the server under test.
    #[arg(long, global = true, value_enum, default_value_t = Proto::Linechat)]
    proto: Proto,
    /// Server address; must be a loopback address.
    #[arg(long, global = true, default_value = "127.0.0.1:7000")]
    addr: SocketAddr,
    /// Another node of the same cluster (repeatable; loopback only): the
    /// clients are shared out over --addr and these, round robin, so
    /// client 0 (the first publisher) is on --addr.
    #[arg(long, global = true)]
    also_addr: Vec<SocketAddr>,
    /// Connect over TLS (to linechat's `--tls-listen` address), trusting the
    /// certificates in this PEM file (e.g. tls/cert.pem from
    /// scripts/tls-cert.sh). NATS clients start TLS after the server's
    /// plaintext INFO, as nats-server asks; the other adapters from the
    /// first byte.
    #[arg(long, global = true)]
    tls_ca: Option<PathBuf>,
    /// Where the linechat STATS side connection goes, over plain TCP
    /// (default: --addr; give the plain listener when --addr is TLS or
    /// WebSocket).
    #[arg(long, global = true)]
    stats_addr: Option<SocketAddr>,
    /// Measured run time in seconds (after the warm-up).
    #[arg(long, global = true, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, global = true, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds allowed for all clients to connect, log in and join.
    #[arg(long, global = true, default_value_t = 600.0)]
    handshake_timeout: f64,
    /// Clients connecting/handshaking at the same time (kept below common
    /// listen backlogs of 128 so connect storms do not overflow them).
    #[arg(long, global = true, default_value_t = 100)]
    concurrency: usize,
    /// Message payload size in bytes.
    #[arg(long, short = 'b', global = true, default_value_t = 128)]
    bytes: usize,
    /// Write the results as JSON to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Server process id, to report its memory (VmRSS).
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Tag that makes user and room names unique (default: this pid).
    #[arg(long, global = true)]
    tag: Option<String>,
    /// IRC only: "NAME:PASSWORD" of an operator block; publishers OPER up
    /// and set user mode +F, ngIRCd's only way to relax its flood control.
    #[arg(long, global = true)]
    irc_oper: Option<String>,
}

/// What to run: a scenario against a server, or the floor server itself.
#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Scenario(Scenario),
    /// Not a scenario: runs the baseline server that `--proto floor`
    /// drives (one write per subscriber socket per loop turn, nothing more).
    FloorServer {
        #[arg(long, default_value = "127.0.0.1:7999")]
        listen: SocketAddr,
    },
}

#[derive(Subcommand)]
pub enum Scenario {
    /// S subscribers in one room, P publishers as fast as the server takes
    /// it, each at most W messages ahead of the slowest subscriber.
    Fanout {
        #[arg(long, short = 's', default_value_t = 1000)]
        subscribers: usize,
        #[arg(long, short = 'p', default_value_t = 1)]
        publishers: usize,
        #[arg(long, short = 'w', default_value_t = 1024)]
        window: u64,
    },
    /// S subscribers, publishers at a fixed total rate; delivery latency.
    Latency {
        #[arg(long, short = 's', default_value_t = 1000)]
        subscribers: usize,
        #[arg(long, short = 'p', default_value_t = 1)]
        publishers: usize,
        /// Total messages per second over all publishers.
        #[arg(long, short = 'r', default_value_t = 50.0)]
        rate: f64,
    },
    /// N rooms of K members plus direct messages at a fixed total rate.
    Rooms {
        #[arg(long, short = 'n', default_value_t = 100)]
        rooms: usize,
        #[arg(long, short = 'k', default_value_t = 10)]
        room_size: usize,
        /// Total messages per second.
        #[arg(long, short = 'r', default_value_t = 5000.0)]
        rate: f64,
        /// Fraction of messages sent as direct messages.
        #[arg(long, default_value_t = 0.5)]
        direct_ratio: f64,
    },
    /// N rooms of K members, every member publishing into its room with at
    /// most W unanswered: messages committed per second (linechat's STATS)
    /// and the CPU of each server thread, storage's per message.
    Durable {
        #[arg(long, short = 'n', default_value_t = 100)]
        rooms: usize,
        #[arg(long, short = 'k', default_value_t = 10)]
        room_size: usize,
        #[arg(long, short = 'w', default_value_t = 16)]
        window: u64,
    },
    /// C idle logged-in sessions, each in a room; server memory per session.
    Connections {
        #[arg(long, short = 'c', default_value_t = 10000)]
        connections: usize,
        #[arg(long, short = 'k', default_value_t = 10)]
        room_size: usize,
        /// Seconds to keep the sessions connected after all are logged in.
        #[arg(long, default_value_t = 5.0)]
        hold: f64,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let c = &cli.common;
    if let Some(addr) = std::iter::once(&c.addr)
        .chain(&c.also_addr)
        .find(|a| !a.ip().is_loopback())
    {
        eprintln!("refusing {addr}: only loopback addresses may be targeted");
        return ExitCode::from(2);
    }
    let scenario = match cli.command {
        Command::Scenario(scenario) => scenario,
        Command::FloorServer { listen } => return serve_floor(listen),
    };
    if c.bytes < payload::MIN_SIZE {
        eprintln!("--bytes must be at least {}", payload::MIN_SIZE);
        return ExitCode::from(2);
    }
    let tls = match c.tls_ca.as_deref().map(linechat::stream::client_config) {
        None if matches!(c.proto, Proto::Tls) => {
            eprintln!("--proto tls needs --tls-ca (the server's certificate, PEM)");
            return ExitCode::from(2);
        }
        None => None,
        Some(Ok(config)) => Some(config),
        Some(Err(e)) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
    let settings = Settings {
        addr: c.addr,
        also_addrs: c.also_addr.clone(),
        wire: Wire {
            tls,
            ws: matches!(c.proto, Proto::Ws),
        },
        stats_addr: c.stats_addr.unwrap_or(c.addr),
        duration: secs(c.duration),
        warmup: secs(c.warmup),
        handshake_timeout: secs(c.handshake_timeout),
        concurrency: c.concurrency.max(1),
        bytes: c.bytes,
        server_pid: c.server_pid,
        tag: c
            .tag
            .clone()
            .unwrap_or_else(|| std::process::id().to_string()),
        irc_oper: c.irc_oper.as_ref().map(|o| o.replacen(':', " ", 1)),
    };
    raise_fd_limit();
    // Hard stop no matter what a loop does: handshake (plus the two friend
    // setup rounds of `rooms`) + run + slack.
    let hold = match scenario {
        Scenario::Connections { hold, .. } => secs(hold),
        _ => Duration::ZERO,
    };
    let limit = settings.handshake_timeout * 3 + settings.warmup + settings.duration + hold;
    std::thread::spawn(move || {
        std::thread::sleep(limit + Duration::from_secs(60));
        eprintln!("\nhard deadline reached, exiting");
        std::process::exit(3);
    });
    let result = match c.proto {
        Proto::Linechat | Proto::Ws | Proto::Tls => scenario::run::<Linechat>(&settings, &scenario),
        Proto::Irc => scenario::run::<Irc>(&settings, &scenario),
        Proto::Nats => scenario::run::<Nats>(&settings, &scenario),
        Proto::Redis => scenario::run::<Redis>(&settings, &scenario),
        Proto::RedisStreams => scenario::run::<RedisStreams>(&settings, &scenario),
        Proto::NatsJs => scenario::run::<NatsJs>(&settings, &scenario),
        Proto::Floor => scenario::run::<Floor>(&settings, &scenario),
    };
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    report.print_table();
    if let Some(path) = &c.json {
        let text = serde_json::to_string_pretty(&report).expect("report serializes");
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn serve_floor(listen: SocketAddr) -> ExitCode {
    if !listen.ip().is_loopback() {
        eprintln!("refusing {listen}: the floor server listens on loopback only");
        return ExitCode::from(2);
    }
    match floor_server::run(listen) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Thousands of sockets need more than the usual 1024 descriptors.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a properly initialised struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
