//! Several server processes on one PostgreSQL database, and a database that
//! goes away and comes back. Each test has a database of its own on the
//! server `LINECHAT_TEST_POSTGRES` names (`.ci/run` starts one); without it
//! they are skipped, and say so (`LINECHAT_PG_TEST=require` fails them).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::pg::TestDb;
use common::{Client, Server, TIMEOUT, msg};

/// A node on `url`, whose clients skip receipts (not what these tests are about).
fn node(url: &str) -> Server {
    Server::with_args(&["--store", url])
}

fn quiet(mut c: Client) -> Client {
    c.ignored = vec!["RECEIPT"];
    c
}

/// Two nodes take one name at the same moment: the database's unique
/// constraint lets exactly one have it, and the other is told the name is
/// taken, as on one node.
#[test]
fn one_name_registered_on_two_nodes_at_once_goes_to_one() {
    let Some(db) = TestDb::create() else { return };
    let (a, b) = (node(&db.url), node(&db.url));
    let (mut on_a, mut on_b) = (a.client(), b.client());
    on_a.send("REGISTER carol password1");
    on_b.send("REGISTER carol password1");
    let mut answers = [on_a.line(), on_b.line()];
    answers.sort();
    assert_eq!(
        answers,
        [
            "ERR USER_EXISTS that user name is taken",
            "OK REGISTER carol"
        ]
    );
    // Whichever won, the account is the one in the database: a node that
    // starts now knows it.
    let c = node(&db.url);
    let mut carol = c.client();
    carol.login("carol");
}

/// Two nodes found one room at the same moment: the unique room name lets
/// one founding commit, and the other JOIN is told the room exists.
#[test]
fn one_room_founded_on_two_nodes_at_once_goes_to_one() {
    let Some(db) = TestDb::create() else { return };
    let (a, b) = (node(&db.url), node(&db.url));
    let (mut alice, mut bob) = (a.user("alice"), b.user("bob"));
    alice.send("JOIN #same");
    bob.send("JOIN #same");
    let mut answers = [alice.line(), bob.line()];
    answers.sort();
    assert_eq!(
        answers,
        [
            "ERR ROOM_EXISTS #same already exists",
            "OK JOIN #same created"
        ]
    );
}

/// Bob is kicked on node A while node B, which has not heard of it, still
/// counts him a member: the store checks his membership inside the SAY's
/// own transaction, so node B refuses it. Seqs come from the database too:
/// node A's next message follows the one bob sent through node B.
#[test]
fn a_member_kicked_on_one_node_cannot_say_on_another() {
    let Some(db) = TestDb::create() else { return };
    let a = node(&db.url);
    let mut alice = quiet(a.user("alice"));
    let mut bob_a = quiet(a.user("bob"));
    alice.send("CREATE #g");
    alice.expect("OK CREATE #g");
    alice.send("ADD #g bob");
    alice.expect("OK ADD #g bob");
    bob_a.expect("ADDED #g bob alice");
    let b = node(&db.url);
    let mut bob_b = quiet(b.client());
    bob_b.login("bob");
    bob_b.send("SAY #g from node b");
    bob_b.expect_prefix("OK SAY #g 1 ");
    alice.send("SAY #g from node a");
    alice.expect_prefix("OK SAY #g 2 ");
    // (Node B's message reaches node A's sessions once nodes share a bus.)
    assert_eq!(msg(&bob_a.line()), "MSG #g 2 alice from node a");
    alice.send("KICK #g bob");
    alice.expect("OK KICK #g bob");
    bob_a.expect("KICKED #g bob alice");
    bob_b.send("SAY #g am I still here?");
    bob_b.expect("ERR NOT_MEMBER you are not a member of #g");
    alice.send("HISTORY #g");
    for want in ["#g 1 bob from node b", "#g 2 alice from node a"] {
        assert_eq!(history_row(&alice.line()), want);
    }
    alice.expect("OK HISTORY #g 2");
}

/// A HISTORY line without its msgid, time and state: `<conv> <seq> <sender> <text>`.
fn history_row(line: &str) -> String {
    let p: Vec<&str> = line.splitn(8, ' ').collect();
    assert_eq!((p[0], p.len()), ("HISTORY", 8), "{line}");
    format!("{} {} {} {}", p[1], p[2], p[4], p[7])
}

/// A TCP proxy in front of the real PostgreSQL that the test can cut (every
/// connection closed, new ones closed at once) and restore, or set to cut
/// one connection at a COMMIT (a [`Trap`]).
struct Proxy {
    addr: String,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    trap: Arc<Mutex<Option<Trap>>>,
}

/// Cut the connection at the first COMMIT after `marker` went through it:
/// before PostgreSQL gets the COMMIT, or after it has answered (the answer
/// never reaching the node).
struct Trap {
    marker: &'static [u8],
    after_commit: bool,
}

/// COMMIT as the client library sends it: a simple query message.
const COMMIT: &[u8] = b"Q\0\0\0\x0bCOMMIT\0";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

impl Proxy {
    fn to(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let trap = Arc::new(Mutex::new(None::<Trap>));
        let (cut2, open2, trap2) = (Arc::clone(&cut), Arc::clone(&open), Arc::clone(&trap));
        // Lives until the test process ends, blocked in accept.
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if cut2.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let mut open = open2.lock().unwrap();
                let swallow = Arc::new(AtomicBool::new(false));
                let (swallowed_tx, swallowed) = std::sync::mpsc::channel::<()>();
                let (mut from, mut to) = (server.try_clone().unwrap(), client.try_clone().unwrap());
                let swallow2 = Arc::clone(&swallow);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n @ 1..) = from.read(&mut buf) {
                        if swallow2.load(Ordering::SeqCst) {
                            let _ = swallowed_tx.send(());
                            return;
                        }
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(Shutdown::Write);
                });
                let (mut from, mut to) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let trap = Arc::clone(&trap2);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    let mut marked = false;
                    while let Ok(n @ 1..) = from.read(&mut buf) {
                        let chunk = &buf[..n];
                        let mut armed = trap.lock().unwrap();
                        if let Some(t) = armed.as_ref() {
                            marked |= contains(chunk, t.marker);
                            if marked && contains(chunk, COMMIT) {
                                let after_commit = t.after_commit;
                                *armed = None;
                                drop(armed);
                                if after_commit {
                                    swallow.store(true, Ordering::SeqCst);
                                    let _ = to.write_all(chunk);
                                    let _ = swallowed.recv_timeout(TIMEOUT);
                                }
                                let _ = from.shutdown(Shutdown::Both);
                                let _ = to.shutdown(Shutdown::Both);
                                return;
                            }
                        }
                        drop(armed);
                        if to.write_all(chunk).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(Shutdown::Write);
                });
                open.extend([client, server]);
            }
        });
        Proxy {
            addr,
            cut,
            open,
            trap,
        }
    }

    fn trap(&self, marker: &'static [u8], after_commit: bool) {
        *self.trap.lock().unwrap() = Some(Trap {
            marker,
            after_commit,
        });
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// `postgres://user@host:port/db` -> (`host:port`, the URL with `addr` instead).
fn via(url: &str, addr: &str) -> (String, String) {
    let at = url.rfind('@').expect("user@ in the URL") + 1;
    let slash = at + url[at..].find('/').expect("/database in the URL");
    let upstream = url[at..slash].to_string();
    (upstream, format!("{}{addr}{}", &url[..at], &url[slash..]))
}

/// A node on a fresh database reached through a [`Proxy`], and alice and
/// bob in `#r`, where alice has said "one" (seq 1) and bob heard it. The
/// database and the server live as long as the test holds them.
fn behind_a_proxy() -> Option<(TestDb, Proxy, Server, Client, Client)> {
    let db = TestDb::create()?;
    let (upstream, url) = via(&db.url, "PROXY");
    let proxy = Proxy::to(upstream);
    let url = url.replace("PROXY", &proxy.addr);
    let s = node(&url);
    let [mut alice, mut bob] = s.room_with("#r", ["alice", "bob"]).map(quiet);
    alice.send("SAY #r one");
    alice.expect_prefix("OK SAY #r 1 ");
    assert_eq!(msg(&bob.line()), "MSG #r 1 alice one");
    Some((db, proxy, s, alice, bob))
}

/// While PostgreSQL cannot be reached, a command that must be saved gets
/// `ERR UNAVAILABLE` and is not acknowledged (nor delivered); what memory
/// answers keeps working. Once it is back the node reconnects by itself,
/// and the failed SAY took no seq.
#[test]
fn an_unreachable_database_fails_writes_and_the_node_recovers() {
    let Some((_db, proxy, s, mut alice, mut bob)) = behind_a_proxy() else {
        return;
    };

    proxy.cut();
    let unavailable =
        "ERR UNAVAILABLE the database is unreachable; nothing was saved, try again shortly";
    alice.send("SAY #r two");
    alice.expect(unavailable);
    let mut carol = s.client();
    carol.send("REGISTER carol password1");
    carol.expect(unavailable);
    // Nothing was delivered, and memory still answers.
    assert!(bob.sync().is_empty());
    bob.send("WHO #r");
    bob.expect("MEMBER #r alice online admin");
    bob.expect("MEMBER #r bob online member");
    bob.expect("OK WHO #r 2");
    bob.send("HISTORY #r");
    assert_eq!(history_row(&bob.line()), "#r 1 alice one");
    bob.expect("OK HISTORY #r 1");

    proxy.restore();
    // The node reconnects on a request after its backoff (at most 2 s):
    // until then a SAY may still be refused.
    let deadline = Instant::now() + TIMEOUT;
    let ok = loop {
        alice.send("SAY #r three");
        let l = alice.line();
        if l != unavailable {
            break l;
        }
        assert!(
            Instant::now() < deadline,
            "no reconnection within {TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(ok.starts_with("OK SAY #r 2 "), "{ok}");
    assert_eq!(msg(&bob.line()), "MSG #r 2 alice three");
    carol.send("REGISTER carol password1");
    carol.expect("OK REGISTER carol");
}

/// A COMMIT whose connection breaks may or may not have taken effect: the
/// node asks PostgreSQL which (`txid_status`) once it can, and answers by
/// that: OK (and the message is delivered) if it committed, UNAVAILABLE,
/// with nothing saved, if it did not.
#[test]
fn a_commit_cut_off_is_answered_by_what_postgres_did() {
    let Some((_db, proxy, _s, mut alice, mut bob)) = behind_a_proxy() else {
        return;
    };

    proxy.trap(b"kept across the cut", true);
    alice.send("SAY #r kept across the cut");
    alice.expect_prefix("OK SAY #r 2 ");
    assert_eq!(msg(&bob.line()), "MSG #r 2 alice kept across the cut");

    proxy.trap(b"lost with the cut", false);
    alice.send("SAY #r lost with the cut");
    alice.expect(
        "ERR UNAVAILABLE the database is unreachable; nothing was saved, try again shortly",
    );
    alice.send("SAY #r after");
    alice.expect_prefix("OK SAY #r 3 ");
    assert_eq!(msg(&bob.line()), "MSG #r 3 alice after");
    bob.send("HISTORY #r");
    for want in [
        "#r 1 alice one",
        "#r 2 alice kept across the cut",
        "#r 3 alice after",
    ] {
        assert_eq!(history_row(&bob.line()), want);
    }
    bob.expect("OK HISTORY #r 3");
    for (row, n) in [("committed", 1), ("aborted", 1), ("unknown", 0)] {
        assert_eq!(alice.stat(&format!("storage_in_doubt_{row}")), n, "{row}");
    }
}

/// `--durability async` lets the hub choose ids and seqs, which only a
/// single writer may do: with a shared store the server refuses to start,
/// before it connects, and says why.
#[test]
fn async_durability_is_refused_with_postgres() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_linechat"))
        .args(["--listen", "127.0.0.1:0", "--durability", "async"])
        .args(["--store", "postgres://nobody@127.0.0.1:1/none"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "linechat: --durability async needs the single-writer SQLite store: \
         with PostgreSQL, use sync or write\n"
    );
}

/// A node loads its tables from the database at startup: with none to
/// reach, it exits at once and says why.
#[test]
fn a_node_without_its_database_exits_saying_why() {
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_linechat"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .args(["--store", "postgres://nobody@127.0.0.1:1/none"])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "linechat: storage: unreachable: postgres: error connecting to server: \
         Connection refused (os error 111)\n"
    );
}

/// Two nodes write one conversation at once, each as fast as its client
/// pipelines: the counter row gives every message its own seq, gapless
/// across both nodes, and every acknowledged message is stored under the
/// seq its OK named.
#[test]
fn two_nodes_writing_one_room_at_once_share_one_gapless_sequence() {
    let Some(db) = TestDb::create() else { return };
    let a = node(&db.url);
    let [alice, bob_on_a] = a.room_with("#r", ["alice", "bob"]);
    drop(bob_on_a);
    // Started now, node B loads the room and bob's membership.
    let b = node(&db.url);
    let mut bob = b.client();
    bob.login("bob");
    const ROUNDS: usize = 10;
    const PER_ROUND: usize = 20;
    let writers: Vec<_> = [(alice, "a"), (bob, "b")]
        .into_iter()
        .map(|(mut c, who)| {
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for round in 0..ROUNDS {
                    let batch: String = (0..PER_ROUND)
                        .map(|n| format!("SAY #r {who}-{round}-{n}\n"))
                        .collect();
                    c.send_raw(batch.as_bytes());
                    while acked.len() < (round + 1) * PER_ROUND {
                        let l = c.line();
                        // OK SAY #r <seq> <msgid>; MSG and RECEIPT lines pass by.
                        if let Some(ok) = l.strip_prefix("OK SAY #r ") {
                            let (seq, id) = ok.split_once(' ').unwrap();
                            acked.push((seq.parse::<u64>().unwrap(), id.to_string()));
                        }
                    }
                }
                acked
            })
        })
        .collect();
    let mut acked: Vec<(u64, String)> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    acked.sort();
    // A node started afterwards reads the room back from the database.
    let c = node(&db.url);
    let mut reader = c.client();
    reader.login("alice");
    let stored = common::all_history(&mut reader, "#r");
    let total = (2 * ROUNDS * PER_ROUND) as u64;
    assert_eq!(
        stored.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    assert_eq!(stored, acked);
}
