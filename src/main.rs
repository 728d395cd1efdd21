use clap::Parser;

use linechat::config::Config;
use linechat::server::Server;

fn main() {
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
    if let Err(e) = server.run() {
        eprintln!("linechat: event loop failed: {e}");
        std::process::exit(1);
    }
}
