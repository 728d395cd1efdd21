//! Test harness: runs the real server binary on an ephemeral port with a
//! temporary data dir, and talks to it over real TCP sockets. Every read has
//! a timeout, so a missing line fails the test instead of hanging it.

#![allow(dead_code)]

pub mod gateway;
pub mod pg;
pub mod tls;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Server {
    child: Child,
    pub addr: String,
    /// The TLS listener's address, for a server started with `--tls-listen`.
    pub tls_addr: Option<String>,
    /// The WebSocket listener's address, for a server started with `--ws-listen`.
    pub ws_addr: Option<String>,
    /// The wss listener's address, for a server started with `--wss-listen`.
    pub wss_addr: Option<String>,
    dir: Option<tempfile::TempDir>,
    data: PathBuf,
    extra: Vec<String>,
    ulimit: Option<u32>,
    /// Set for a server started with [`Server::logged`]: reads its stderr.
    log: Option<JoinHandle<String>>,
}

impl Server {
    pub fn start() -> Server {
        Server::with_args(&[])
    }

    /// Starts the server with extra flags (cheap argon2 unless overridden).
    pub fn with_args(extra: &[&str]) -> Server {
        Server::spawn_with(extra, None)
    }

    /// Starts the server with extra flags and, optionally, a file-descriptor
    /// limit (`ulimit -n`).
    pub fn spawn_with(extra: &[&str], ulimit: Option<u32>) -> Server {
        Server::spawn_logged(extra, ulimit, false)
    }

    /// Starts the server with extra flags, logging at `info`;
    /// [`Server::terminate_logged`] returns what it logged.
    pub fn logged(extra: &[&str]) -> Server {
        Server::spawn_logged(extra, None, true)
    }

    fn spawn_logged(extra: &[&str], ulimit: Option<u32>, logged: bool) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().to_path_buf();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, (addr, tls_addr, ws_addr, wss_addr), log) =
            spawn(&data, &extra, "127.0.0.1:0", ulimit, logged);
        Server {
            child,
            addr,
            tls_addr,
            ws_addr,
            wss_addr,
            dir: Some(dir),
            data,
            extra,
            ulimit,
            log,
        }
    }

    /// Starts the server on a data dir the caller owns (and removes).
    pub fn on_dir(data: &Path, extra: &[&str]) -> Server {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, (addr, tls_addr, ws_addr, wss_addr), log) =
            spawn(data, &extra, "127.0.0.1:0", None, false);
        Server {
            child,
            addr,
            tls_addr,
            ws_addr,
            wss_addr,
            dir: None,
            data: data.to_path_buf(),
            extra,
            ulimit: None,
            log,
        }
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        terminate(&mut self.child)
    }

    /// For a server started with [`Server::logged`]: sends SIGTERM, waits
    /// for a clean exit and returns everything it logged.
    pub fn terminate_logged(&mut self) -> String {
        let status = self.terminate();
        assert!(status.success(), "{status:?}");
        self.log
            .take()
            .expect("started with Server::logged")
            .join()
            .expect("log reader")
    }

    /// The server's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// User plus system CPU time the server has used, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name, which is in parentheses.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the process (SIGKILL) and starts it again on the same data dir
    /// and port.
    pub fn restart(&mut self) {
        self.kill();
        let (child, (addr, tls_addr, ws_addr, wss_addr), log) =
            spawn(&self.data, &self.extra, &self.addr, self.ulimit, false);
        self.child = child;
        self.addr = addr;
        self.tls_addr = tls_addr;
        self.ws_addr = ws_addr;
        self.wss_addr = wss_addr;
        self.log = log;
    }

    /// Like [`Server::restart`], with `extra` flags in place of the ones
    /// it was started with.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.extra = extra.iter().map(|s| s.to_string()).collect();
        self.restart();
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.addr)
    }

    /// A connected client already registered (or logged in) as `user`.
    pub fn user(&self, user: &str) -> Client {
        let mut c = self.client();
        c.send(&format!("REGISTER {user} password1"));
        let reply = c.line();
        if reply.starts_with("ERR USER_EXISTS") {
            c.login(user);
        } else {
            assert_eq!(reply, format!("OK REGISTER {user}"));
        }
        c
    }

    /// `users`, logged in (registered if new), all members of `room`: the
    /// first creates it, each later one joins, and every earlier member has
    /// read the `JOINED` line of each later one.
    pub fn room_with<const N: usize>(&self, room: &str, users: [&str; N]) -> [Client; N] {
        let mut clients = users.map(|user| self.user(user));
        for (i, user) in users.iter().enumerate() {
            let (earlier, rest) = clients.split_at_mut(i);
            rest[0].send(&format!("JOIN {room}"));
            let how = if i == 0 { "created" } else { "joined" };
            rest[0].expect(&format!("OK JOIN {room} {how}"));
            for member in earlier {
                member.expect(&format!("JOINED {room} {user}"));
            }
        }
        clients
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        self.dir.take();
    }
}

/// Runs `test` with the flags of each store: SQLite (no flag), then
/// PostgreSQL in a database of its own when `LINECHAT_TEST_POSTGRES` names a
/// server (see [`pg`]).
pub fn each_store(mut test: impl FnMut(&[&str])) {
    test(&[]);
    if let Some(db) = pg::TestDb::create() {
        test(&["--store", &db.url]);
    }
}

/// Starts the server on `data` with `RUST_LOG=info`, stops it (SIGTERM) once
/// it listens, and returns what it logged.
pub fn startup_log(data: &Path) -> String {
    let (mut child, _, log) = spawn(data, &[], "127.0.0.1:0", None, true);
    terminate(&mut child);
    log.expect("logged").join().expect("log reader")
}

/// Sends SIGTERM and waits for the process to exit.
fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    child.wait().expect("wait")
}

/// Starts the binary and waits for its listen line (and, with `--tls-listen`
/// among the flags, the TLS one); returns the plain and TLS addresses. With `logged`, it logs
/// at `info` and a thread collects its stderr (read as it comes, so a busy
/// log cannot fill the pipe and stall the server).
/// The listeners' addresses a server printed: plain, then TLS, WebSocket
/// and wss when started with them.
type Listeners = (String, Option<String>, Option<String>, Option<String>);

fn spawn(
    data: &Path,
    extra: &[String],
    listen: &str,
    ulimit: Option<u32>,
    logged: bool,
) -> (Child, Listeners, Option<JoinHandle<String>>) {
    let mut args: Vec<String> = vec![
        "--listen".into(),
        listen.into(),
        "--data-dir".into(),
        data.display().to_string(),
    ];
    if !extra.iter().any(|a| a.starts_with("--argon2")) {
        args.extend(["--argon2-memory-kib", "64", "--argon2-iterations", "1"].map(String::from));
    }
    args.extend(extra.iter().cloned());
    let bin = env!("CARGO_BIN_EXE_linechat");
    let mut cmd = match ulimit {
        None => Command::new(bin),
        Some(n) => {
            let mut c = Command::new("sh");
            c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), bin]);
            c
        }
    };
    let level = if logged {
        "info".into()
    } else {
        std::env::var("RUST_LOG").unwrap_or("warn".into())
    };
    let mut child = cmd
        .args(&args)
        .env("RUST_LOG", level)
        .stdout(Stdio::piped())
        .stderr(if logged {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .spawn()
        .expect("starting linechat");
    let log = child.stderr.take().map(|mut stderr| {
        std::thread::spawn(move || {
            let mut text = String::new();
            stderr.read_to_string(&mut text).expect("reading stderr");
            text
        })
    });
    let stdout = child.stdout.take().expect("stdout");
    let mut reader = BufReader::new(stdout);
    let mut listen_line = |prefix: &str| {
        let mut line = String::new();
        reader.read_line(&mut line).expect("reading a listen line");
        line.trim()
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("expected {prefix:?}..., got {line:?}"))
            .to_string()
    };
    let addr = listen_line("linechat listening on ");
    let tls_addr = extra
        .iter()
        .any(|a| a == "--tls-listen")
        .then(|| listen_line("linechat tls listening on "));
    // main prints the listeners in this order: plain, tls, ws, wss.
    let ws_addr = extra
        .iter()
        .any(|a| a == "--ws-listen")
        .then(|| listen_line("linechat ws listening on "));
    let wss_addr = extra
        .iter()
        .any(|a| a == "--wss-listen")
        .then(|| listen_line("linechat wss listening on "));
    (child, (addr, tls_addr, ws_addr, wss_addr), log)
}

/// The byte stream a [`Client`] talks over: a TCP socket, or a TLS stream
/// over one (whose socket carries the read timeouts).
pub trait Wire: Read + Write {
    fn socket(&self) -> &TcpStream;
}

impl Wire for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }
}

pub struct Client<S: Wire = TcpStream> {
    pub stream: S,
    buf: Vec<u8>,
    /// Lines starting with these are dropped unread (for tests about
    /// something else, e.g. receipts in the social tests).
    pub ignored: Vec<&'static str>,
}

impl Client {
    /// Connects and consumes the greeting.
    pub fn connect(addr: &str) -> Client {
        let mut c = Client::connect_raw(addr);
        let hello = c.line();
        assert!(hello.starts_with("HELLO linechat "), "{hello}");
        c
    }

    pub fn connect_raw(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        Client::over(stream)
    }

    pub fn shutdown_write(&mut self) {
        self.stream.shutdown(Shutdown::Write).unwrap();
    }
}

impl<S: Wire> Client<S> {
    /// A client over an already connected stream.
    pub fn over(stream: S) -> Client<S> {
        Client {
            stream,
            buf: Vec::new(),
            ignored: Vec::new(),
        }
    }

    /// Logs in as `user` and reads up to the end of the implied SYNC;
    /// returns the MSG lines it delivered.
    pub fn login(&mut self, user: &str) -> Vec<String> {
        self.send(&format!("LOGIN {user} password1"));
        self.expect(&format!("OK LOGIN {user}"));
        let mut msgs = Vec::new();
        loop {
            let l = self.line();
            if l.starts_with("OK SYNC ") {
                return msgs;
            }
            msgs.push(l);
        }
    }

    pub fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes());
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// The next line, or a panic after the timeout.
    pub fn line(&mut self) -> String {
        self.try_line(TIMEOUT)
            .unwrap_or_else(|| panic!("no line within {TIMEOUT:?}"))
    }

    /// The next line that is not a `RECEIPT`: readers send those at their
    /// own pace, so where they fall among other lines is not fixed.
    pub fn news(&mut self) -> String {
        loop {
            let l = self.line();
            if !l.starts_with("RECEIPT ") {
                return l;
            }
        }
    }

    /// [`Client::expect`], passing over `RECEIPT`s.
    pub fn expect_news(&mut self, want: &str) {
        assert_eq!(self.news(), want);
    }

    /// [`Client::expect_prefix`], passing over `RECEIPT`s.
    pub fn expect_news_prefix(&mut self, prefix: &str) -> String {
        let l = self.news();
        assert!(l.starts_with(prefix), "expected {prefix:?}..., got {l:?}");
        l
    }

    /// The next line, or None if none arrives within `wait` (or the peer closed).
    pub fn try_line(&mut self, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line);
                if self.ignored.iter().any(|p| text.starts_with(p)) {
                    continue;
                }
                return Some(text.trim_end_matches(['\r', '\n']).to_string());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.stream
                .socket()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None;
                }
                // A reset, or a TLS stream cut without close_notify.
                Err(e) if is_cut(&e) => return None,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Exactly `n` raw bytes (a FETCH body), whatever they contain.
    pub fn read_raw(&mut self, n: usize) -> Vec<u8> {
        let deadline = Instant::now() + TIMEOUT;
        while self.buf.len() < n {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("only {} of {n} bytes", self.buf.len()));
            self.stream.socket().set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("closed after {} of {n} bytes", self.buf.len()),
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e) => panic!("read: {e}"),
            }
        }
        self.buf.drain(..n).collect()
    }

    pub fn expect(&mut self, want: &str) {
        assert_eq!(self.line(), want);
    }

    /// The next line, which must start with `prefix`.
    pub fn expect_prefix(&mut self, prefix: &str) -> String {
        let l = self.line();
        assert!(l.starts_with(prefix), "expected {prefix:?}..., got {l:?}");
        l
    }

    /// Asserts nothing arrives for a short while.
    pub fn expect_silence(&mut self) {
        if let Some(l) = self.try_line(Duration::from_millis(300)) {
            panic!("expected nothing, got {l:?}");
        }
    }

    /// Sends PING and returns every line before its answer: a barrier that
    /// proves all earlier output has arrived.
    pub fn sync(&mut self) -> Vec<String> {
        self.send("PING barrier");
        let mut lines = Vec::new();
        loop {
            let l = self.line();
            if l == "OK PONG barrier" {
                return lines;
            }
            lines.push(l);
        }
    }

    /// Reads until the peer closes the connection, which must happen within
    /// the timeout; returns the number of bytes that came.
    pub fn read_to_eof(&mut self) -> usize {
        let deadline = Instant::now() + TIMEOUT;
        let mut total = std::mem::take(&mut self.buf).len();
        let mut chunk = [0u8; 65536];
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("still open after {TIMEOUT:?} and {total} bytes"));
            self.stream.socket().set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut chunk) {
                Ok(0) => return total,
                Ok(n) => total += n,
                Err(e) if is_cut(&e) => return total,
                Err(e) => panic!("read after {total} bytes: {e}"),
            }
        }
    }

    /// Runs STATS and returns its rows as (name, value), checking the count
    /// its `OK STATS <n>` line gives.
    pub fn stats(&mut self) -> Vec<(String, u64)> {
        self.send("STATS");
        let mut rows = Vec::new();
        loop {
            let l = self.line();
            if let Some(n) = l.strip_prefix("OK STATS ") {
                assert_eq!(n.parse::<usize>().ok(), Some(rows.len()), "{l}");
                return rows;
            }
            let (name, value) = l
                .strip_prefix("STAT ")
                .and_then(|r| r.split_once(' '))
                .unwrap_or_else(|| panic!("not a STAT row: {l:?}"));
            rows.push((name.to_string(), value.parse().expect("a number")));
        }
    }

    /// One STATS counter.
    pub fn stat(&mut self, name: &str) -> u64 {
        let rows = self.stats();
        rows.iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no STAT {name} in {rows:?}"))
            .1
    }

    /// Reads until the peer closes the connection; returns what came.
    pub fn until_closed(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(l) = self.try_line(TIMEOUT) {
            lines.push(l);
        }
        lines
    }
}

/// The peer ended the stream abruptly: a reset, or a TLS stream cut without
/// close_notify.
fn is_cut(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof
    )
}

/// A MSG line without its id and time: `MSG <conv> <seq> <sender> <text>`.
pub fn msg(line: &str) -> String {
    let p: Vec<&str> = line.splitn(7, ' ').collect();
    assert_eq!(p[0], "MSG", "{line}");
    assert_eq!(p.len(), 7, "{line}");
    format!("{} {} {} {} {}", p[0], p[1], p[2], p[4], p[6])
}

/// Makes `a` (named `an`) and `b` (named `bn`) friends: `a` asks, `b`
/// accepts, each sees the other's step.
pub fn befriend(a: &mut Client, an: &str, b: &mut Client, bn: &str) {
    a.send(&format!("FRIEND ADD {bn}"));
    a.expect(&format!("OK FRIEND ADD {bn} pending"));
    b.expect(&format!("FRIEND REQUEST {an}"));
    b.send(&format!("FRIEND ACCEPT {an}"));
    b.expect(&format!("OK FRIEND ACCEPT {an}"));
    a.expect(&format!("FRIEND ACCEPTED {bn}"));
}

/// `HISTORY` data lines without id and time: `<seq> <sender> <state> <text>`.
pub fn history(c: &mut Client, cmd: &str) -> Vec<String> {
    c.send(cmd);
    let mut rows = Vec::new();
    loop {
        let l = c.line();
        if l.starts_with("OK HISTORY") {
            return rows;
        }
        if !l.starts_with("HISTORY ") {
            continue;
        }
        let p: Vec<&str> = l.splitn(8, ' ').collect();
        rows.push(format!("{} {} {} {}", p[2], p[4], p[6], p[7]));
    }
}

/// `HISTORY` of `conv`, every page: (seq, msgid) oldest first.
pub fn all_history(c: &mut Client, conv: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut before = u64::MAX;
    loop {
        c.send(&format!("HISTORY {conv} BEFORE {before} LIMIT 500"));
        let mut page = Vec::new();
        loop {
            let l = c.line();
            if l.starts_with("OK HISTORY") {
                break;
            }
            // Other lines (events) may come between the pages.
            if !l.starts_with("HISTORY ") {
                continue;
            }
            let p: Vec<&str> = l.split(' ').collect();
            page.push((p[2].parse::<u64>().unwrap(), p[3].to_string()));
        }
        let Some(&(oldest, _)) = page.first() else {
            break;
        };
        page.extend(out);
        out = page;
        before = oldest;
    }
    out
}
