//! The storage thread's work per message, without the network: commits
//! ROUNDS group commits of BATCH messages each (spread over 100
//! conversations, as the durable load scenario does) into a fresh SQLite
//! store in a temporary folder, indexing them for SEARCH every EVERY rounds
//! (0: only at the end), and prints the messages per second and the CPU
//! this thread spent per message (user and system time, from /proc), then
//! the CPU per message of the indexing left at the end.
//!
//! Usage: `cargo run --release --example store-commit -- [ROUNDS [BATCH [EVERY]]]`
//! (defaults 200, 1000, 20).

use std::time::Instant;

use linechat::store::{Backend, ConvId, Post, Request, SqliteBackend, UserId, Write, run_round};

fn arg(n: usize, default: usize) -> usize {
    match std::env::args().nth(n) {
        None => default,
        Some(a) => a.parse().unwrap_or_else(|_| {
            eprintln!("argument {n} must be a number, not {a:?}");
            std::process::exit(2)
        }),
    }
}

/// CPU seconds this thread has used.
fn cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) / per_sec
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (rounds, batch, every) = (arg(1, 200), arg(2, 1000), arg(3, 20));
    let dir = tempfile::tempdir()?;
    let mut db = SqliteBackend::open(dir.path(), dir.path().join("blobs"))?;
    let text = "a chat message of about the length people type, with some words in it".to_string();
    let (started, cpu_before) = (Instant::now(), cpu());
    for round in 0..rounds {
        let requests: Vec<Request<()>> = (0..batch)
            .map(|i| {
                let post = Post {
                    conv: ConvId(((round * batch + i) % 100) as u32),
                    id: uuid::Uuid::now_v7(),
                    sender: UserId(1),
                    at: 0,
                    text: text.clone(),
                    blob: None,
                    reply_to: None,
                };
                Request::write(vec![Write::Post(post)], Some(()))
            })
            .collect();
        run_round(&mut db, requests);
        if every > 0 && round % every == every - 1 {
            while db.background(usize::MAX)? {}
        }
    }
    let messages = (rounds * batch) as f64;
    let (wall, used) = (started.elapsed().as_secs_f64(), cpu() - cpu_before);
    println!(
        "{messages} messages in {wall:.2} s: {:.0}/s, {:.2} us CPU per message (indexed every {every} rounds)",
        messages / wall,
        used * 1e6 / messages
    );
    let cpu_before = cpu();
    while db.background(usize::MAX)? {}
    println!(
        "indexing what was left: {:.2} us CPU per message",
        (cpu() - cpu_before) * 1e6 / messages
    );
    Ok(())
}
