//! The browser client in a real browser: headless Chromium (driven by
//! Selenium from tests/browser/page.py) registers, joins a room, and talks
//! with a plain TCP client; it sees the TCP client's typing, its message and
//! its read receipt, and shows markup in a message as text; it uploads an
//! image and shows it inline, and downloads the TCP client's file; it shows
//! where its message stands (STATUS) and the members (WHO), and once made
//! an admin (OP) it kicks the TCP client; after a server restart it
//! reconnects and catches up with what it missed. A screenshot is saved in
//! the target directory.
//!
//! Needs Debian's chromium, chromium-driver and python3-selenium, which
//! `.ci/run` installs and then sets LINECHAT_BROWSER_TEST=require. Without
//! them, a plain `cargo test` says so and passes this test by.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::Server;

/// Longest wait for the page's next step (Chromium's start included).
const STEP: Duration = Duration::from_secs(60);

/// The next line of `c` that starts with `prefix`, passing over the
/// others (the page's TYPING and RECEIPT events come and go as it works).
fn until(c: &mut common::Client, prefix: &str) -> String {
    loop {
        let l = c.line();
        if l.starts_with(prefix) {
            return l;
        }
    }
}

fn browser_available() -> bool {
    let files = ["/usr/bin/chromium", "/usr/bin/chromedriver"];
    let selenium = Command::new("python3")
        .args(["-c", "import selenium"])
        .env("PYTHONPATH", "/usr/lib/python3/dist-packages")
        .status()
        .is_ok_and(|s| s.success());
    files.iter().all(|f| std::path::Path::new(f).exists()) && selenium
}

#[test]
fn a_browser_and_a_tcp_client_talk_in_a_room() {
    if !browser_available() {
        assert_ne!(
            std::env::var("LINECHAT_BROWSER_TEST").as_deref(),
            Ok("require"),
            "chromium, chromedriver or python3-selenium missing"
        );
        eprintln!("browser test skipped: chromium, chromedriver or python3-selenium missing");
        return;
    }
    // A port of our own, so that the server can come back on it after a
    // restart and the page reconnect to it.
    let ws = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string();
    let mut s = Server::with_args(&["--ws-listen", &ws]);
    let mut bob = s.user("bob");
    bob.send("JOIN #web");
    bob.expect_prefix("OK JOIN #web");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-client.png");
    let _ = std::fs::remove_file(&shot);
    let mut page = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/page.py"
        ))
        .arg(format!("http://{ws}/"))
        .arg(&shot)
        .env("PYTHONPATH", "/usr/lib/python3/dist-packages")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting page.py");
    let mut to_page = page.stdin.take().unwrap();
    let from_page = BufReader::new(page.stdout.take().unwrap());
    let (tx, steps) = mpsc::channel();
    std::thread::spawn(move || {
        for line in from_page.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut step = |want: &str| {
        let got = steps.recv_timeout(STEP);
        if got.as_deref() != Ok(want) {
            let _ = page.kill();
            panic!("page: wanted {want}, got {got:?}");
        }
    };
    step("JOINED");
    assert_eq!(until(&mut bob, "JOINED "), "JOINED #web alice");
    step("SAID");
    // MSG <conv> <seq> <msgid> <sender> <time> <text>
    let said = until(&mut bob, "MSG ");
    let fields: Vec<&str> = said.splitn(7, ' ').collect();
    assert_eq!(
        (fields[1], fields[2], fields[4], fields[6]),
        (
            "#web",
            "1",
            "alice",
            "hi from the browser <img src=x onerror=alert(1)>"
        ),
        "{said}"
    );
    bob.send("TYPING #web");
    until(&mut bob, "OK TYPING");
    writeln!(to_page, "TYPING").unwrap();
    step("SAW_TYPING");
    bob.send("SAY #web hi from nc");
    until(&mut bob, "OK SAY #web 2 ");
    writeln!(to_page, "SAID").unwrap();
    // The page uploads an image and shows it; it tells its SHA-256 and size.
    let attached = steps.recv_timeout(STEP).expect("the page attached a file");
    let (sha, size) = attached
        .strip_prefix("ATTACHED ")
        .and_then(|rest| rest.split_once(' '))
        .unwrap_or_else(|| panic!("page: {attached}"));
    let image = until(&mut bob, "MSG ");
    let fields: Vec<&str> = image.splitn(7, ' ').collect();
    assert_eq!(
        (fields[1], fields[2], fields[4], fields[6]),
        (
            "#web",
            "3",
            "alice",
            &*format!("[image {sha} image/png {size} upload.png]")
        ),
        "{image}"
    );
    step("SHOWN");
    bob.send("ATTACH #web notes.txt text/plain 11");
    bob.send_raw(b"hello file\n");
    until(&mut bob, "OK ATTACH #web 4 ");
    writeln!(to_page, "FILE").unwrap();
    step("DOWNLOADED");
    step("STATUS");
    step("MEMBERS");
    bob.send("OP #web alice");
    until(&mut bob, "OK OP #web alice");
    writeln!(to_page, "OPPED").unwrap();
    step("KICKED");
    assert_eq!(until(&mut bob, "KICKED "), "KICKED #web bob alice");
    // The server goes down; while the page cannot reach it, bob says
    // something; once it is back, the page catches up.
    s.restart_with(&[]);
    step("OFFLINE");
    let mut bob = s.user("bob");
    bob.send("JOIN #web");
    bob.expect_prefix("OK JOIN #web");
    bob.send("SAY #web said while you were away");
    until(&mut bob, "OK SAY #web 5 ");
    s.restart_with(&["--ws-listen", &ws]);
    writeln!(to_page, "SAID_AWAY").unwrap();
    step("CAUGHT_UP");
    step("DONE");
    drop(to_page);
    let status = page.wait().expect("waiting for page.py");
    assert!(status.success(), "page.py: {status}");
    assert!(shot.exists(), "screenshot saved");
    eprintln!("screenshot: {}", shot.display());
}
