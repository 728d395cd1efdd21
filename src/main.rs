use clap::Parser;

use linechat::config::Config;
use linechat::server::Server;

/// Large allocations (argon2's ~19 MiB per hash, attachment bodies) get
/// their own mappings and go back to the OS when freed. glibc would otherwise
/// raise its mmap threshold after the first such free and keep later ones in
/// the worker threads' heaps, where they would sit in RSS for good.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_frees_to_the_os() {
    // SAFETY: mallopt only adjusts allocator tuning; called once at startup,
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_frees_to_the_os() {}

fn main() {
    return_large_frees_to_the_os();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cfg = Config::parse();
    let mut server = match Server::new(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("linechat: {e}");
            std::process::exit(1);
        }
    };
    match server.local_addr() {
        // Printed on stdout so scripts and tests started with port 0 learn it.
        Ok(addr) => println!("linechat listening on {addr}"),
        Err(e) => {
            eprintln!("linechat: {e}");
            std::process::exit(1);
        }
    }
    for (front, addr) in [
        ("tls", server.tls_local_addr()),
        ("ws", server.ws_local_addr()),
        ("wss", server.wss_local_addr()),
    ] {
        match addr {
            Some(Ok(addr)) => println!("linechat {front} listening on {addr}"),
            Some(Err(e)) => {
                eprintln!("linechat: {e}");
                std::process::exit(1);
            }
            None => {}
        }
    }
    if let Err(e) = server.run() {
        eprintln!("linechat: event loop failed: {e}");
        std::process::exit(1);
    }
}
