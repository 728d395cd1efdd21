//! Several nodes in one test: separate server processes on one PostgreSQL
//! database (`LINECHAT_TEST_POSTGRES`, a database of its own per test) and
//! one Redis (`LINECHAT_TEST_REDIS`, channels under a prefix of their own
//! per test), clients on different nodes. A test that restarts Redis runs
//! its own redis-server on an ephemeral port, so other tests are unaffected.
//! Skipped when the servers are not named, unless
//! `LINECHAT_REDIS_TEST=require` (as in `.ci/run`), which fails them.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::pg::TestDb;
use common::{Client, Server, TIMEOUT, befriend, msg};

struct Cluster {
    db: TestDb,
    redis: String,
    prefix: String,
    nodes: Vec<Server>,
}

/// The test Redis's URL, or `None` (said) when cluster tests are not
/// asked for.
fn redis_url() -> Option<String> {
    match std::env::var("LINECHAT_TEST_REDIS") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert_ne!(
                std::env::var("LINECHAT_REDIS_TEST").as_deref(),
                Ok("require"),
                "LINECHAT_REDIS_TEST=require but LINECHAT_TEST_REDIS is not set"
            );
            eprintln!("cluster tests skipped: LINECHAT_TEST_REDIS is not set");
            None
        }
    }
}

impl Cluster {
    /// `n` nodes on a new database, on the test Redis.
    fn start(n: usize) -> Option<Cluster> {
        Cluster::on_redis(n, &redis_url()?)
    }

    /// `n` nodes on a new database, on the test Redis, each with `extra`
    /// flags.
    fn start_with(n: usize, extra: &[&str]) -> Option<Cluster> {
        Cluster::on_redis_with(n, &redis_url()?, extra)
    }

    /// `n` nodes on a new database, on the Redis at `redis`.
    fn on_redis(n: usize, redis: &str) -> Option<Cluster> {
        Cluster::on_redis_with(n, redis, &[])
    }

    fn on_redis_with(n: usize, redis: &str, extra: &[&str]) -> Option<Cluster> {
        let db = TestDb::create()?;
        // The database's name is unique to this test: so are the channels.
        let prefix = db.name.clone();
        let mut cluster = Cluster {
            db,
            redis: redis.to_string(),
            prefix,
            nodes: Vec::new(),
        };
        for _ in 0..n {
            let node = Server::with_args(&[&cluster.args()[..], extra].concat());
            cluster.nodes.push(node);
        }
        Some(cluster)
    }

    fn args(&self) -> [&str; 10] {
        [
            "--store",
            &self.db.url,
            "--bus",
            &self.redis,
            "--bus-prefix",
            &self.prefix,
            "--bus-position-check",
            "1",
            "--bus-presence-ttl",
            "1",
        ]
    }
}

/// Asks `ask` until it returns something, for at most [`TIMEOUT`]: for
/// what arrives from another node with no event to wait for.
fn eventually<T>(what: &str, mut ask: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(t) = ask() {
            return t;
        }
        assert!(Instant::now() < deadline, "{what}: not within {TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `cmd` until its answer no longer starts with `not_yet` (another
/// node's change has not reached this one); returns the answer's first
/// line.
fn until_known(c: &mut Client, cmd: &str, not_yet: &str) -> String {
    eventually(cmd, || {
        c.send(cmd);
        Some(c.line()).filter(|line| !line.starts_with(not_yet))
    })
}

/// `c`'s node knows public room `room`.
fn wait_for_room(c: &mut Client, room: &str) {
    let mut line = until_known(c, &format!("WHO {room}"), "ERR NO_SUCH_ROOM");
    while !line.starts_with(&format!("OK WHO {room}")) {
        assert!(line.starts_with(&format!("MEMBER {room} ")), "{line}");
        line = c.line();
    }
}

/// `c`'s node knows user `name`.
fn wait_for_user(c: &mut Client, name: &str) {
    let line = until_known(c, &format!("PRESENCE {name}"), "ERR NO_SUCH_USER");
    assert!(line.starts_with(&format!("OK PRESENCE {name} ")), "{line}");
}

/// alice on node 0 and bob on node 1, both in `room`.
fn room_on_two_nodes(cl: &Cluster, room: &str) -> (Client, Client) {
    let mut alice = cl.nodes[0].user("alice");
    let mut bob = cl.nodes[1].user("bob");
    alice.send(&format!("JOIN {room}"));
    alice.expect(&format!("OK JOIN {room} created"));
    wait_for_room(&mut bob, room);
    bob.send(&format!("JOIN {room}"));
    bob.expect(&format!("OK JOIN {room} joined"));
    alice.expect(&format!("JOINED {room} bob"));
    // Receipts, and presence as heartbeats tell it, are not what these
    // tests are about.
    alice.ignored.extend(["RECEIPT ", "PRESENCE "]);
    bob.ignored.extend(["RECEIPT ", "PRESENCE "]);
    (alice, bob)
}

#[test]
fn a_room_spans_nodes_in_order() {
    let Some(cl) = Cluster::start(2) else {
        return;
    };
    let (mut alice, mut bob) = room_on_two_nodes(&cl, "#r");
    alice.send("SAY #r hello from a");
    alice.expect_prefix("OK SAY #r 1 ");
    assert_eq!(msg(&bob.line()), "MSG #r 1 alice hello from a");
    bob.send("SAY #r hello from b");
    bob.expect_prefix("OK SAY #r 2 ");
    assert_eq!(msg(&alice.line()), "MSG #r 2 bob hello from b");

    // Both talk at once: each hears all of the other's messages, in seq
    // order, and the seqs of both together are gapless.
    const N: usize = 30;
    for i in 0..N {
        alice.send(&format!("SAY #r a{i}"));
        bob.send(&format!("SAY #r b{i}"));
    }
    let mut seqs = Vec::new();
    for (me, other, c) in [("alice", "bob", &mut alice), ("bob", "alice", &mut bob)] {
        let (mut acks, mut heard) = (0, Vec::new());
        while acks < N || heard.len() < N {
            let line = c.line();
            if let Some(rest) = line.strip_prefix("OK SAY #r ") {
                acks += 1;
                seqs.push(rest.split(' ').next().unwrap().parse::<u64>().unwrap());
            } else {
                let p: Vec<&str> = line.splitn(7, ' ').collect();
                assert_eq!((p[0], p[1], p[4]), ("MSG", "#r", other), "{me}: {line}");
                heard.push(p[2].parse::<u64>().unwrap());
            }
        }
        assert!(heard.is_sorted(), "{me} heard out of order: {heard:?}");
        c.expect_silence();
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (3..3 + 2 * N as u64).collect::<Vec<_>>());
    // One PUBLISH per message (batched by commit), none lost here.
    assert!(alice.stat("bus_published") > 0);
    assert_eq!(alice.stat("bus_publish_dropped"), 0);
    assert_eq!(bob.stat("bus_held_dropped"), 0);
}

#[test]
fn a_direct_conversation_spans_nodes_with_typing_and_receipts() {
    let Some(cl) = Cluster::start(2) else {
        return;
    };
    let (mut alice, mut bob) = friends_on_two_nodes(&cl);
    // Presence as heartbeats tell it is presence_is_cluster_wide's.
    alice.ignored.push("PRESENCE ");
    bob.ignored.push("PRESENCE ");
    alice.send("SAY @bob hi bob");
    alice.expect_prefix("OK SAY @bob 1 ");
    assert_eq!(msg(&bob.line()), "MSG @alice 1 alice hi bob");
    bob.send("SAY @alice hi alice");
    bob.expect_prefix("OK SAY @alice 2 ");
    // Receipts and typing are not stored: they reach a node only once it
    // listens to the conversation, which it starts to when it first hears
    // of it. Those of messages 1 and 2 may be lost to that race; from
    // here on both nodes listen.
    alice.ignored.push("RECEIPT @bob 1 ");
    bob.ignored.push("RECEIPT @alice 2 ");
    assert_eq!(msg(&alice.line()), "MSG @bob 2 bob hi alice");
    alice.send("SAY @bob again");
    alice.expect_prefix("OK SAY @bob 3 ");
    assert_eq!(msg(&bob.line()), "MSG @alice 3 alice again");
    // The delivery receipt crosses back to alice's node.
    alice.expect("RECEIPT @bob 3 bob delivered");
    bob.send("TYPING @alice");
    bob.expect("OK TYPING @alice");
    alice.expect("TYPING @bob bob");
    bob.send("READ @alice 3");
    bob.expect("OK READ @alice 3");
    alice.expect("RECEIPT @bob 3 bob read");
}

/// A redis-server of the test's own on an ephemeral port, stopped (by its
/// pid) when dropped.
struct OwnRedis {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl OwnRedis {
    fn start() -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("temp dir");
        let child = OwnRedis::spawn(port, dir.path());
        OwnRedis { child, port, dir }
    }

    fn spawn(port: u16, dir: &std::path::Path) -> Child {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's redis-server package)");
        let deadline = Instant::now() + TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A new server on the same port, after [`OwnRedis::kill`].
    fn restart(&mut self) {
        self.kill();
        self.child = OwnRedis::spawn(self.port, self.dir.path());
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Two nodes on a Redis this test may kill, with alice (node 0) and bob
/// (node 1) in `#r`.
fn room_on_a_redis_of_its_own() -> Option<(OwnRedis, Cluster, Client, Client)> {
    redis_url()?;
    let redis = OwnRedis::start();
    let cl = Cluster::on_redis(2, &redis.url())?;
    let (alice, bob) = room_on_two_nodes(&cl, "#r");
    Some((redis, cl, alice, bob))
}

#[test]
fn delivery_resumes_after_a_redis_restart() {
    let Some((mut redis, _cl, mut alice, mut bob)) = room_on_a_redis_of_its_own() else {
        return;
    };
    alice.send("SAY #r before");
    alice.expect_prefix("OK SAY #r 1 ");
    assert_eq!(msg(&bob.line()), "MSG #r 1 alice before");

    // Redis is gone: each node still serves its own sessions, and what
    // alice says meanwhile reaches bob from the store once Redis is back.
    redis.kill();
    alice.send("SAY #r during");
    alice.expect_prefix("OK SAY #r 2 ");
    bob.send("PING local");
    bob.expect("OK PONG local");
    redis.restart();
    assert_eq!(msg(&bob.line()), "MSG #r 2 alice during");
    // And the bus carries new messages again, both ways.
    alice.send("SAY #r after");
    alice.expect_prefix("OK SAY #r 3 ");
    assert_eq!(msg(&bob.line()), "MSG #r 3 alice after");
    bob.send("SAY #r back");
    bob.expect_prefix("OK SAY #r 4 ");
    assert_eq!(msg(&alice.line()), "MSG #r 4 bob back");
    assert_eq!(bob.stat("bus_reconnects"), 1);
    assert_eq!(alice.stat("bus_reconnects"), 1);
}

/// Node-wide changes made while Redis is down are not lost for the other
/// nodes: each is in the change log, which their position checks read
/// (every second here) without waiting for Redis; bob's node applies them
/// in commit order, and the bus carries the next ones once Redis is back.
#[test]
fn node_wide_changes_made_while_redis_is_down_reach_the_other_nodes() {
    let Some((mut redis, cl, mut alice, mut bob)) = room_on_a_redis_of_its_own() else {
        return;
    };
    alice.send("SAY #r hi");
    let said = alice.expect_prefix("OK SAY #r 1 ");
    let msgid = said.rsplit(' ').next().unwrap().to_string();
    assert_eq!(msg(&bob.line()), "MSG #r 1 alice hi");

    redis.kill();
    // On node 0: an edit, a topic, a new account with a new room, a kick.
    alice.send("EDIT #r 1 hello");
    alice.expect("OK EDIT #r 1");
    alice.send("TOPIC #r quiet please");
    alice.expect("OK TOPIC #r");
    let mut carol = cl.nodes[0].user("carol");
    carol.send("JOIN #s");
    carol.expect("OK JOIN #s created");
    alice.send("KICK #r bob");
    alice.expect("OK KICK #r bob");
    // bob's node reads them from the change log, in order.
    bob.expect(&format!("EDITED #r 1 {msgid} alice hello"));
    bob.expect("TOPICSET #r alice quiet please");
    bob.expect("KICKED #r bob alice");
    bob.send("SAY #r still here?");
    bob.expect("ERR NOT_MEMBER you are not a member of #r");
    // carol's account and room are known there too.
    let mut carol_on_1 = cl.nodes[1].client();
    carol_on_1.login("carol");
    carol_on_1.send("WHO #s");
    let line = carol_on_1.line();
    assert!(line.starts_with("MEMBER #s carol "), "{line}");
    carol_on_1.expect("OK WHO #s 1");

    // With Redis back, the bus carries node-wide changes again.
    redis.restart();
    carol.send("FRIEND ADD bob");
    carol.expect("OK FRIEND ADD bob pending");
    bob.expect("FRIEND REQUEST carol");
    for c in [&mut alice, &mut bob] {
        assert_eq!(c.stat("bus_log_lost"), 0);
        assert_eq!(c.stat("bus_log_held"), 0);
    }
}

/// A node that listened to none of a conversation (no member logged in
/// there) knows no seq of it past its start; LOGIN there still brings
/// what was said, because SYNC asks the store where each conversation
/// ends (one query for them all).
#[test]
fn a_login_on_a_node_that_heard_nothing_syncs_from_the_store() {
    let Some(cl) = Cluster::start(2) else {
        return;
    };
    let mut alice = cl.nodes[0].user("alice");
    alice.ignored.extend(["RECEIPT ", "PRESENCE "]);
    let mut bob = cl.nodes[0].user("bob");
    alice.send("JOIN #q");
    alice.expect("OK JOIN #q created");
    bob.send("JOIN #q");
    bob.expect("OK JOIN #q joined");
    alice.expect("JOINED #q bob");
    bob.send("QUIT");
    bob.until_closed();
    alice.send("SAY #q one");
    alice.expect_prefix("OK SAY #q 1 ");
    alice.send("SAY #q two");
    alice.expect_prefix("OK SAY #q 2 ");
    // Node 1 has heard that bob is in #q, and nothing said there.
    let mut carol = cl.nodes[1].user("carol");
    eventually("node 1 knows bob is in #q", || {
        carol.send("WHO #q");
        let mut members = Vec::new();
        loop {
            let line = carol.line();
            if line.starts_with("OK WHO") || line.starts_with("ERR ") {
                break;
            }
            members.push(line);
        }
        members
            .iter()
            .any(|m| m.starts_with("MEMBER #q bob "))
            .then_some(())
    });
    let mut bob = cl.nodes[1].client();
    let missed: Vec<String> = bob.login("bob").iter().map(|l| msg(l)).collect();
    assert_eq!(missed, ["MSG #q 1 alice one", "MSG #q 2 alice two"]);
}

/// A JOIN on a node that does not listen to the room replays the room's
/// newest messages (up to `--recent`, 100) from the store, as one node
/// would, instead of sending everything that node never heard as news;
/// the joiner's other session, on a node that does not listen either,
/// hears of the JOIN and then only what is said after it.
#[test]
fn a_join_where_no_member_listens_replays_only_the_newest() {
    let Some(cl) = Cluster::start(3) else {
        return;
    };
    let mut alice = cl.nodes[0].user("alice");
    alice.ignored.extend(["RECEIPT ", "PRESENCE "]);
    alice.send("JOIN #q");
    alice.expect("OK JOIN #q created");
    for i in 1..=150 {
        alice.send(&format!("SAY #q m{i}"));
    }
    for i in 1..=150 {
        alice.expect_prefix(&format!("OK SAY #q {i} "));
    }
    let mut bob = cl.nodes[1].user("bob");
    bob.ignored.extend(["RECEIPT ", "PRESENCE "]);
    wait_for_room(&mut bob, "#q");
    bob.send("JOIN #q");
    bob.expect("OK JOIN #q joined");
    for i in 51..=150 {
        assert_eq!(msg(&bob.line()), format!("MSG #q {i} alice m{i}"));
    }
    alice.expect("JOINED #q bob");
    alice.send("SAY #q after");
    alice.expect_prefix("OK SAY #q 151 ");
    assert_eq!(msg(&bob.line()), "MSG #q 151 alice after");

    // carol has a session on node 0 and one on node 2, where nobody is
    // in #q, and joins on node 0.
    let mut carol0 = cl.nodes[0].user("carol");
    let mut carol2 = cl.nodes[2].client();
    eventually("node 2 knows carol", || {
        carol2.send("LOGIN carol password1");
        (carol2.line() == "OK LOGIN carol").then_some(())
    });
    carol2.expect("OK SYNC 0");
    carol2.ignored.extend(["RECEIPT ", "PRESENCE "]);
    carol0.send("JOIN #q");
    carol0.expect("OK JOIN #q joined");
    let replay: Vec<String> = (0..100).map(|_| msg(&carol0.line())).collect();
    assert_eq!(replay.last().unwrap(), "MSG #q 151 alice after");
    carol2.expect("JOINED #q carol");
    // Node 2 takes the room's end from the store (a message said while
    // it does so would count as before the JOIN there).
    eventually("node 2 has #q up to 151", || {
        carol2.send("INBOX");
        let line = carol2.line();
        carol2.expect("OK INBOX 1");
        line.starts_with("INBOX #q public 151 ").then_some(())
    });
    alice.expect("JOINED #q carol");
    alice.send("SAY #q hello carol");
    alice.expect_prefix("OK SAY #q 152 ");
    assert_eq!(msg(&carol2.line()), "MSG #q 152 alice hello carol");
    bob.expect("JOINED #q carol");
    assert_eq!(msg(&bob.line()), "MSG #q 152 alice hello carol");
}

/// A delivered cursor that one node saved (four times a second) is where
/// the user's SYNC starts on another node: a LOGIN there brings only what
/// they did not get.
#[test]
fn a_login_on_another_node_starts_at_the_cursor_saved_elsewhere() {
    let Some(cl) = Cluster::start(2) else {
        return;
    };
    let (mut alice, mut bob) = room_on_two_nodes(&cl, "#r");
    for i in 1..=3 {
        alice.send(&format!("SAY #r m{i}"));
        alice.expect_prefix(&format!("OK SAY #r {i} "));
    }
    for i in 1..=3 {
        assert_eq!(msg(&bob.line()), format!("MSG #r {i} alice m{i}"));
    }
    let mut db = postgres::Client::connect(&cl.db.url, postgres::NoTls).unwrap();
    eventually("node 1 saves bob's cursor", || {
        let row = db
            .query_opt(
                "SELECT k.delivered FROM cursors k
                 JOIN users u ON u.id = k.user_id JOIN convs c ON c.id = k.conv
                 WHERE u.name = 'bob' AND c.name = '#r'",
                &[],
            )
            .unwrap();
        row.filter(|r| r.get::<_, i64>(0) == 3)
    });
    bob.send("QUIT");
    bob.until_closed();
    alice.send("SAY #r m4");
    alice.expect_prefix("OK SAY #r 4 ");
    // Node 0 never delivered anything to bob.
    let mut bob = cl.nodes[0].client();
    let missed: Vec<String> = bob.login("bob").iter().map(|l| msg(l)).collect();
    assert_eq!(missed, ["MSG #r 4 alice m4"]);
}

#[test]
fn a_killed_node_loses_nothing_acknowledged_and_its_clients_sync_elsewhere() {
    let Some(mut cl) = Cluster::start(2) else {
        return;
    };
    let (mut alice, mut bob) = room_on_two_nodes(&cl, "#r");
    const N: u64 = 20;
    for i in 1..=N {
        alice.send(&format!("SAY #r m{i}"));
    }
    for i in 1..=N {
        alice.expect_prefix(&format!("OK SAY #r {i} "));
    }
    // bob hears them all before node 0 dies.
    for i in 1..=N {
        assert_eq!(msg(&bob.line()), format!("MSG #r {i} alice m{i}"));
    }
    cl.nodes[0].kill();
    alice.until_closed();
    // Meanwhile bob goes on talking on node 1.
    bob.send("SAY #r while you were away");
    bob.expect_prefix(&format!("OK SAY #r {} ", N + 1));

    // alice reconnects to node 1: her LOGIN's SYNC brings what she missed,
    // and HISTORY holds every acknowledged message, gapless.
    let started = Instant::now();
    let mut alice = cl.nodes[1].client();
    let missed = alice.login("alice");
    eprintln!("reconnect to synced: {:?}", started.elapsed());
    let missed: Vec<String> = missed.iter().map(|l| msg(l)).collect();
    assert!(
        missed.ends_with(&[format!("MSG #r {} bob while you were away", N + 1)]),
        "{missed:?}"
    );
    let history = common::all_history(&mut alice, "#r");
    let seqs: Vec<u64> = history.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=N + 1).collect::<Vec<_>>());
}

/// Friends on two nodes; returns (alice on node 0, bob on node 1).
fn friends_on_two_nodes(cl: &Cluster) -> (Client, Client) {
    let mut alice = cl.nodes[0].user("alice");
    let mut bob = cl.nodes[1].user("bob");
    wait_for_user(&mut alice, "bob");
    wait_for_user(&mut bob, "alice");
    common::befriend(&mut alice, "alice", &mut bob, "bob");
    (alice, bob)
}

/// Reads `c`'s lines until `want` (bounded by [`TIMEOUT`] per line),
/// asserting every line before it is one of `between`'s.
fn expect_after(c: &mut Client, want: &str, between: &[&str]) {
    loop {
        let line = c.line();
        if line == want {
            return;
        }
        assert!(
            between.iter().any(|p| line.starts_with(p)),
            "waiting for {want:?}, got {line:?}"
        );
    }
}

#[test]
fn presence_is_cluster_wide() {
    let Some(mut cl) = Cluster::start(3) else {
        return;
    };
    let (mut alice, mut bob) = friends_on_two_nodes(&cl);
    // bob is on another node, and online once a heartbeat has told
    // alice's node (which may announce it, if that came after the
    // friendship).
    eventually("bob online for alice", || {
        alice.send("PRESENCE bob");
        let mut line = alice.line();
        if line == "PRESENCE bob online" {
            line = alice.line();
        }
        assert!(line.starts_with("OK PRESENCE bob "), "{line}");
        (line == "OK PRESENCE bob online").then_some(())
    });
    alice.send("FRIEND LIST");
    expect_after(
        &mut alice,
        "FRIENDINFO bob online",
        &["PRESENCE bob online"],
    );
    alice.expect("OK FRIEND LIST 1");

    // A second session of bob, on the third node: not news to anyone.
    let mut bob2 = cl.nodes[2].client();
    bob2.login("bob");
    // Only bob's last session anywhere going takes him offline, once bob's
    // first node has heard of the second session (a heartbeat; before it,
    // bob would flap offline and online again).
    let mut node1 = cl.nodes[1].user("carol");
    eventually("node 1 hears of bob on node 2", || {
        (node1.stat("bus_online_elsewhere") == 2).then_some(())
    });
    bob.send("QUIT");
    bob.until_closed();
    alice.expect_silence();
    alice.send("PRESENCE bob");
    alice.expect("OK PRESENCE bob online");
    drop(bob2);
    let line = alice.line();
    assert!(line.starts_with("PRESENCE bob offline "), "{line}");

    // A node stopped for longer than the TTL (1 s here) shows its users
    // offline; continued, it renews their presence.
    let mut bob = cl.nodes[1].client();
    bob.login("bob");
    alice.expect("PRESENCE bob online");
    let node = cl.nodes[1].pid() as libc::pid_t;
    assert_eq!(unsafe { libc::kill(node, libc::SIGSTOP) }, 0);
    let line = alice.line();
    assert!(line.starts_with("PRESENCE bob offline "), "{line}");
    assert_eq!(unsafe { libc::kill(node, libc::SIGCONT) }, 0);
    alice.expect("PRESENCE bob online");
    // And one that dies takes them offline within the TTL plus a heartbeat.
    cl.nodes[1].kill();
    let line = alice.line();
    assert!(line.starts_with("PRESENCE bob offline "), "{line}");
}

#[test]
fn one_user_on_two_nodes_gets_everything() {
    let Some(cl) = Cluster::start(2) else {
        return;
    };
    let (mut alice, mut bob) = room_on_two_nodes(&cl, "#r");
    // alice's second session is on bob's node.
    let mut alice2 = cl.nodes[1].client();
    alice2.login("alice");
    alice2.ignored.extend(["RECEIPT ", "PRESENCE "]);
    alice.send("SAY #r from node 0");
    alice.expect_prefix("OK SAY #r 1 ");
    assert_eq!(msg(&bob.line()), "MSG #r 1 alice from node 0");
    assert_eq!(msg(&alice2.line()), "MSG #r 1 alice from node 0");
    // Her read cursor follows her between nodes (read_cursors_and_away_cross_nodes).
    alice.ignored.push("UNREAD ");
    alice2.send("SAY #r from node 1");
    alice2.expect_prefix("OK SAY #r 2 ");
    assert_eq!(msg(&bob.line()), "MSG #r 2 alice from node 1");
    assert_eq!(msg(&alice.line()), "MSG #r 2 alice from node 1");
    // Membership news reaches both of her sessions too.
    bob.send("LEAVE #r");
    bob.expect("OK LEAVE #r");
    alice.expect("LEFT #r bob");
    alice2.expect("LEFT #r bob");
}

/// A message committed but never published (its node's PUBLISH lost) is
/// found by the other nodes' position checks (every second here), and a
/// bus message that does not decode is counted and dropped.
#[test]
fn a_lost_publish_is_found_by_the_position_check() {
    let Some(cl) = Cluster::start(2) else {
        return;
    };
    let (mut alice, mut bob) = room_on_two_nodes(&cl, "#r");
    alice.send("SAY #r published");
    alice.expect_prefix("OK SAY #r 1 ");
    assert_eq!(msg(&bob.line()), "MSG #r 1 alice published");
    // As if a node committed seq 2 and died before its PUBLISH.
    let mut db = postgres::Client::connect(&cl.db.url, postgres::NoTls).unwrap();
    db.batch_execute(
        "UPDATE convs SET last_seq = 2 WHERE name = '#r';
         INSERT INTO messages (conv, seq, msgid, sender, at, text)
         SELECT c.id, 2, decode(repeat('ab', 16), 'hex'), u.id, 0, 'never published'
         FROM convs c, users u WHERE c.name = '#r' AND u.name = 'alice';",
    )
    .unwrap();
    assert_eq!(msg(&bob.line()), "MSG #r 2 alice never published");
    assert_eq!(msg(&alice.line()), "MSG #r 2 alice never published");

    let redis = redis::Client::open(cl.redis.as_str()).unwrap();
    let mut redis = redis.get_connection().unwrap();
    let _: () = redis::cmd("PUBLISH")
        .arg(format!("{}:all", cl.prefix))
        .arg(&b"\x09not a bus message"[..])
        .query(&mut redis)
        .unwrap();
    eventually("bus_malformed counted", || {
        (bob.stat("bus_malformed") == 1).then_some(())
    });
    bob.send("SAY #r still here");
    bob.expect_prefix("OK SAY #r 3 ");
    assert_eq!(msg(&alice.line()), "MSG #r 3 bob still here");
}

#[test]
fn replies_reactions_topics_mutes_bans_and_blocks_cross_nodes() {
    let Some(cl) = Cluster::start(2) else {
        return;
    };
    let (mut alice, mut bob) = room_on_two_nodes(&cl, "#r");
    alice.send("SAY #r lunch?");
    alice.expect_prefix("OK SAY #r 1 ");
    assert_eq!(msg(&bob.line()), "MSG #r 1 alice lunch?");
    bob.send("REPLY #r 1 yes");
    bob.expect_prefix("OK REPLY #r 2 ");
    assert_eq!(msg(&alice.line()), "MSG #r 2 bob [re 1] yes");
    alice.send("REACT #r 2 👍");
    alice.expect("OK REACT #r 2 👍");
    bob.expect("REACTED #r 2 alice 👍");
    alice.send("TOPIC #r tea at four");
    alice.expect("OK TOPIC #r");
    bob.expect("TOPICSET #r alice tea at four");
    // bob's node keeps the mute it heard of, and enforces it.
    alice.send("MUTE #r bob 5");
    let until = alice.expect_prefix("OK MUTE #r bob ");
    let until = until.rsplit(' ').next().unwrap().to_string();
    bob.expect(&format!("MUTED #r bob alice {until}"));
    bob.send("SAY #r hm");
    bob.expect(&format!("ERR MUTED you are muted in #r until {until}"));
    alice.send("UNMUTE #r bob");
    alice.expect("OK UNMUTE #r bob");
    bob.expect("UNMUTED #r bob alice");
    alice.send("BAN #r bob");
    alice.expect("OK BAN #r bob");
    bob.expect("BANNED #r bob alice");
    bob.send("JOIN #r");
    bob.expect("ERR BANNED you are banned from #r");
    // A block made on alice's node ends the friendship on bob's too.
    befriend(&mut alice, "alice", &mut bob, "bob");
    alice.send("FRIEND BLOCK bob");
    alice.expect("OK FRIEND BLOCK bob");
    bob.expect("FRIEND REMOVED alice");
    bob.send("SAY @alice still there?");
    bob.expect("ERR NOT_FRIENDS you and alice are not friends");
}

#[test]
fn read_cursors_and_away_cross_nodes() {
    let Some(cl) = Cluster::start(2) else {
        return;
    };
    let (mut alice, mut bob) = room_on_two_nodes(&cl, "#r");
    // alice's second session is on bob's node.
    let mut alice2 = cl.nodes[1].user("alice");
    alice2.ignored.extend(["RECEIPT ", "PRESENCE "]);
    bob.send("SAY #r one");
    bob.expect_prefix("OK SAY #r 1 ");
    assert_eq!(msg(&alice.line()), "MSG #r 1 bob one");
    assert_eq!(msg(&alice2.line()), "MSG #r 1 bob one");
    // READ on one node: the session on the other hears the new count, and
    // that node's INBOX agrees.
    alice.send("READ #r 1");
    alice.expect("OK READ #r 1");
    alice2.expect("UNREAD #r 0");
    alice2.send("INBOX");
    let line = alice2.line();
    assert!(line.starts_with("INBOX #r public 1 0 0 "), "{line}");
    alice2.expect("OK INBOX 1");
    // AWAY on one node reaches the watchers on the other.
    alice.send("AWAY at lunch");
    alice.expect("OK AWAY at lunch");
    bob.ignored.retain(|p| *p != "PRESENCE ");
    expect_after(
        &mut bob,
        "PRESENCE alice away at lunch",
        &["PRESENCE alice online"],
    );
    bob.send("PRESENCE alice");
    bob.expect("OK PRESENCE alice away at lunch");
}

#[test]
fn a_cluster_sends_each_notification_once() {
    let Some(cl) = Cluster::start_with(2, &["--push-allow-private"]) else {
        return;
    };
    let (url, rx) = common::gateway::gateway(Vec::new());
    let (mut alice, mut bob) = room_on_two_nodes(&cl, "#r");
    alice.send(&format!("PUSHER ADD org.example.chat key-1 {url}"));
    alice.expect("OK PUSHER ADD org.example.chat key-1");
    alice.send("QUIT");
    alice.expect("OK QUIT bye");
    // bob's node learns of the pusher on the bus and of alice going
    // offline from the presence heartbeat; until then it queues nothing.
    let deadline = Instant::now() + TIMEOUT;
    let mut n = 0;
    let first = loop {
        n += 1;
        bob.send(&format!("SAY #r ping {n}"));
        bob.expect_prefix("OK SAY #r ");
        if let Ok((_, body)) = rx.recv_timeout(Duration::from_millis(500)) {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no notification from the cluster"
        );
    };
    assert_eq!(first["notification"]["room_id"], "#r");
    assert_eq!(first["notification"]["sender"], "bob");
    // Both nodes' push threads read the shared queue: each notification
    // goes out once.
    let event = first["notification"]["event_id"].clone();
    while let Ok((_, body)) = rx.recv_timeout(Duration::from_secs(2)) {
        assert_ne!(
            body["notification"]["event_id"], event,
            "sent twice: {body}"
        );
    }
}
