//! Durable history over real server processes: restarts, kill -9, offline
//! delivery, SYNC after a slow-consumer drop, receipts, paging, search,
//! edits and deletions; the restart, kill -9, login SYNC, search and edit
//! cases on PostgreSQL too when `LINECHAT_TEST_POSTGRES` names a server.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Client, Server, all_history, each_store, history, msg};

/// A fresh data dir logs one creation line; an older one one migration line.
#[test]
fn schema_creation_and_upgrade_are_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::startup_log(dir.path());
    let schema: Vec<&str> = log.lines().filter(|l| l.contains("schema")).collect();
    assert_eq!(schema.len(), 1, "{log}");
    assert!(
        schema[0].ends_with("storage: created database, schema 9"),
        "{log}"
    );
    // Back to schema 2: the migrations after it only added the blob tables,
    // dropped stale rows, made the full-text index contentless, added
    // replies, reactions, blocks and moderation, dropped the index's row
    // sizes, and added push and the change log.
    let conn = rusqlite::Connection::open(dir.path().join("linechat.db")).unwrap();
    conn.execute_batch(
        "DROP TABLE blob_refs; DROP TABLE blobs; DROP TABLE fts_done;
         ALTER TABLE messages DROP COLUMN reply_to; DROP TABLE reactions; DROP TABLE blocks;
         DROP TABLE bans; DROP TABLE mutes; DROP TABLE audit; ALTER TABLE convs DROP COLUMN topic;
         DROP TABLE pushers; DROP TABLE push_queue; DROP TABLE change_log;
         PRAGMA user_version = 2;",
    )
    .unwrap();
    drop(conn);
    let log = common::startup_log(dir.path());
    let schema: Vec<&str> = log.lines().filter(|l| l.contains("schema")).collect();
    assert_eq!(schema.len(), 1, "{log}");
    assert!(
        schema[0].ends_with("storage schema migrated from 2 to 9"),
        "{log}"
    );
    assert!(
        common::startup_log(dir.path())
            .lines()
            .all(|l| !l.contains("schema"))
    );
}

/// On either store (SQLite, PostgreSQL).
#[test]
fn everything_survives_a_restart() {
    each_store(everything_survives_a_restart_on);
}

fn everything_survives_a_restart_on(store: &[&str]) {
    let mut s = Server::with_args(store);
    {
        let mut alice = s.user("alice");
        let mut bob = s.user("bob");
        let _carol = s.user("carol");
        alice.send("FRIEND ADD bob");
        alice.expect("OK FRIEND ADD bob pending");
        bob.expect("FRIEND REQUEST alice");
        bob.send("FRIEND ACCEPT alice");
        bob.expect("OK FRIEND ACCEPT alice");
        alice.expect("FRIEND ACCEPTED bob");
        alice.send("FRIEND ADD carol");
        alice.expect("OK FRIEND ADD carol pending");
        alice.send("CREATE #team");
        alice.expect("OK CREATE #team");
        alice.send("ADD #team bob");
        alice.expect("OK ADD #team bob");
        alice.send("SAY #team first");
        alice.expect_prefix("OK SAY #team 1 ");
        alice.expect("RECEIPT #team 1 bob delivered");
        alice.send("SAY @bob psst");
        alice.expect_prefix("OK SAY @bob 1 ");
        alice.expect("RECEIPT @bob 1 bob delivered");
        // Killed while everyone is still connected: nobody logged out, so
        // nobody has a last-seen time (closing the clients first would race
        // the server recording it).
        s.restart();
    }
    let mut alice = s.client();
    alice.login("alice");
    alice.send("FRIEND LIST");
    alice.expect("FRIENDINFO bob offline never");
    alice.expect("OK FRIEND LIST 1");
    alice.send("FRIEND REQUESTS");
    alice.expect_prefix("REQUEST out bob accepted ");
    alice.expect_prefix("REQUEST out carol pending ");
    alice.expect("OK FRIEND REQUESTS 2");
    alice.send("ROOMS");
    alice.expect("ROOM #team group 2 admin");
    alice.expect("OK ROOMS 1");
    assert_eq!(history(&mut alice, "HISTORY #team"), ["1 alice sent first"]);
    assert_eq!(history(&mut alice, "HISTORY @bob"), ["1 alice sent psst"]);
    alice.send("SAY #team second");
    alice.expect_prefix("OK SAY #team 2 ");
    let mut mallory = s.user("mallory");
    mallory.send("JOIN #team");
    mallory.expect("ERR INVITE_ONLY #team is invite-only; an admin must ADD you");
}

/// Writers pipeline SAYs into one room until the server is killed with
/// SIGKILL; returns what was acknowledged and, after a restart, the seqs and
/// msgids of the room's whole history.
fn kill_9_while_writing(level: &str, store: &[&str]) -> (Vec<String>, Vec<u64>, HashSet<String>) {
    let mut s = Server::with_args(&[&["--durability", level], store].concat());
    let writers = 4;
    let mut clients: Vec<Client> = (0..writers).map(|i| s.user(&format!("w{i}"))).collect();
    for c in &mut clients {
        c.send("JOIN #log");
        c.expect_prefix("OK JOIN #log");
    }
    // Each writer pipelines SAYs in batches in its own thread and records
    // what was acknowledged, until the server dies under it.
    let (ack_tx, ack_rx) = std::sync::mpsc::channel::<()>();
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(w, mut c)| {
            let acks = ack_tx.clone();
            std::thread::spawn(move || {
                use std::io::Write;
                let mut acked = Vec::new();
                for round in 0..1000 {
                    let batch: String = (0..20)
                        .map(|n| format!("SAY #log w{w}-{round}-{n}\n"))
                        .collect();
                    if c.stream.write_all(batch.as_bytes()).is_err() {
                        break;
                    }
                    let mut got = 0;
                    while got < 20 {
                        let Some(l) = c.try_line(Duration::from_secs(5)) else {
                            return acked;
                        };
                        if l.starts_with("OK SAY") {
                            acked.push(l);
                            got += 1;
                            let _ = acks.send(());
                        }
                    }
                }
                acked
            })
        })
        .collect();
    for _ in 0..1000 {
        ack_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("writers stalled");
    }
    s.kill();
    let acked: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(acked.len() >= 1000, "{level}: {} acked", acked.len());
    s.restart();
    let mut reader = s.user("reader");
    reader.send("JOIN #log");
    reader.expect_prefix("OK JOIN #log joined");
    let kept = all_history(&mut reader, "#log");
    let seqs: Vec<u64> = kept.iter().map(|(seq, _)| *seq).collect();
    let ids: HashSet<String> = kept.into_iter().map(|(_, id)| id).collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "{level}: seqs are gapless from 1");
    // SEARCH finds the newest message of a writer, which the crash may have
    // left unindexed: the index catches up at start and before a SEARCH.
    let newest = history(&mut reader, "HISTORY #log LIMIT 5")
        .pop()
        .expect("the newest message");
    let (seq, text) = {
        let p: Vec<&str> = newest.split(' ').collect();
        (p[0].to_string(), p[3].to_string())
    };
    // Its words (`w1-12-3`: w1, 12, 3) may also match another message
    // (`w1-3-12`), which comes after it, newest first.
    reader.send(&format!("SEARCH #log {text}"));
    reader.expect_prefix(&format!("FOUND #log {seq} "));
    loop {
        let l = reader.line();
        if l.starts_with("OK SEARCH #log ") {
            break;
        }
        assert!(l.starts_with("FOUND #log "), "{l}");
    }
    (acked, seqs, ids)
}

/// `sync` and `write` promise that an acknowledged message survives a crash
/// of linechat: after kill -9 every one is in history, without a gap.
#[test]
fn kill_9_loses_no_acknowledged_message_at_sync_and_write() {
    for level in ["sync", "write"] {
        each_store(|store| {
            let (acked, _, ids) = kill_9_while_writing(level, store);
            for a in &acked {
                let id = a.rsplit(' ').next().unwrap();
                assert!(
                    ids.contains(id),
                    "{level} {store:?}: acknowledged {a} is in history"
                );
            }
        });
    }
}

/// `async` acknowledges before the commit, so kill -9 may take the newest
/// acknowledged messages; what survives is still a gapless prefix: every
/// acknowledged message up to the last seq kept is there, under its seq.
#[test]
fn kill_9_under_async_keeps_a_gapless_prefix() {
    let (acked, seqs, ids) = kill_9_while_writing("async", &[]);
    let kept = seqs.last().copied().unwrap_or(0);
    for a in &acked {
        // OK SAY #log <seq> <msgid>
        let mut words = a.split(' ').skip(3);
        let seq: u64 = words.next().unwrap().parse().unwrap();
        let id = words.next().unwrap();
        if seq <= kept {
            assert!(ids.contains(id), "acknowledged {a} is in history");
        }
    }
}

/// Speaking in a conversation reads what came before, so the earlier
/// senders get the same read receipt a READ would send, and STATUS agrees.
#[test]
fn saying_something_sends_read_receipts_for_earlier_messages() {
    let s = Server::start();
    let [mut alice, mut bob] = s.room_with("#r", ["alice", "bob"]);
    bob.send("SAY #r question");
    bob.expect_prefix("OK SAY #r 1 ");
    assert_eq!(msg(&alice.line()), "MSG #r 1 bob question");
    bob.expect("RECEIPT #r 1 alice delivered");
    alice.send("SAY #r answer");
    alice.expect_prefix("OK SAY #r 2 ");
    assert_eq!(msg(&bob.line()), "MSG #r 2 alice answer");
    bob.expect("RECEIPT #r 1 alice read");
    alice.expect("RECEIPT #r 2 bob delivered");
    bob.send("STATUS #r 1");
    bob.expect("STATUS #r 1 alice read");
    bob.expect("OK STATUS #r 1 1");
}

/// On either store.
#[test]
fn offline_user_gets_missed_messages_on_login_once() {
    each_store(offline_user_gets_missed_messages_on_login_once_on);
}

fn offline_user_gets_missed_messages_on_login_once_on(store: &[&str]) {
    let s = Server::with_args(store);
    let [mut alice, mut bob] = s.room_with("#r", ["alice", "bob"]);
    alice.send("SAY #r before");
    alice.expect_prefix("OK SAY #r 1 ");
    assert_eq!(msg(&bob.line()), "MSG #r 1 alice before");
    alice.expect("RECEIPT #r 1 bob delivered");
    bob.send("QUIT");
    bob.expect("OK QUIT bye");
    assert!(bob.until_closed().is_empty());
    alice.expect_prefix("PRESENCE bob offline ");
    for i in 2..=5 {
        alice.send(&format!("SAY #r missed {i}"));
        alice.expect_prefix(&format!("OK SAY #r {i} "));
    }
    let mut bob = s.client();
    let got: Vec<String> = bob.login("bob").iter().map(|l| msg(l)).collect();
    assert_eq!(
        got,
        [
            "MSG #r 2 alice missed 2",
            "MSG #r 3 alice missed 3",
            "MSG #r 4 alice missed 4",
            "MSG #r 5 alice missed 5"
        ]
    );
    bob.send("SYNC");
    bob.expect("OK SYNC 0");
    // A client that tracks its own position asks for exactly what it lacks.
    bob.send("SYNC #r 3");
    assert_eq!(msg(&bob.line()), "MSG #r 4 alice missed 4");
    assert_eq!(msg(&bob.line()), "MSG #r 5 alice missed 5");
    bob.expect("OK SYNC 2");
    // A newcomer gets recent history with JOIN, and SYNC only after that.
    let mut carol = s.user("carol");
    carol.send("JOIN #r");
    carol.expect("OK JOIN #r joined");
    assert_eq!(carol.sync().len(), 5);
    drop(carol);
    let mut carol = s.client();
    assert!(carol.login("carol").is_empty());
}

#[test]
fn dropped_slow_consumer_catches_up_with_sync() {
    let s = Server::with_args(&["--max-outbox", "65536"]);
    let [mut sender, mut slow] = s.room_with("#burst", ["sender", "slow"]);
    let text = "q".repeat(3000);
    let total = 3000;
    for batch in 0..(total / 100) {
        let mut lines = String::new();
        for _ in 0..100 {
            lines.push_str(&format!("SAY #burst {text}\n"));
        }
        sender.send_raw(lines.as_bytes());
        let mut acked = 0;
        while acked < 100 {
            let l = sender.line();
            if l.starts_with("OK SAY") {
                acked += 1;
                let want = format!("OK SAY #burst {} ", batch * 100 + acked);
                assert!(l.starts_with(&want), "{l}");
            }
        }
    }
    // What the dropped connection still had in the kernel's buffers.
    let mut seen: Vec<u64> = Vec::new();
    for l in slow.until_closed() {
        let p: Vec<&str> = l.splitn(7, ' ').collect();
        if p.len() == 7 && p[0] == "MSG" && p[6] == text {
            seen.push(p[2].parse().unwrap());
        }
    }
    assert!(
        (seen.len() as u64) < total as u64,
        "it was dropped mid-burst"
    );
    let mut again = s.client();
    for l in again.login("slow") {
        seen.push(msg(&l).split(' ').nth(2).unwrap().parse().unwrap());
    }
    seen.dedup();
    let expected: Vec<u64> = (1..=total as u64).collect();
    assert_eq!(seen, expected, "every message, in order, duplicates aside");
}

#[test]
fn receipts_and_status_in_a_group() {
    let s = Server::start();
    let mut a = s.user("alice");
    let mut b = s.user("bob");
    let mut c = s.user("carol");
    a.send("CREATE #trio");
    a.expect("OK CREATE #trio");
    a.send("ADD #trio bob");
    a.expect("OK ADD #trio bob");
    a.send("ADD #trio carol");
    a.expect("OK ADD #trio carol");
    b.sync();
    c.sync();
    c.send("QUIT");
    c.expect("OK QUIT bye");
    a.expect_prefix("PRESENCE carol offline ");
    b.expect_prefix("PRESENCE carol offline ");

    a.send("SAY #trio hello both");
    a.expect_prefix("OK SAY #trio 1 ");
    assert_eq!(msg(&b.line()), "MSG #trio 1 alice hello both");
    a.expect("RECEIPT #trio 1 bob delivered");
    a.send("STATUS #trio 1");
    a.expect("STATUS #trio 1 bob delivered");
    a.expect("STATUS #trio 1 carol sent");
    a.expect("OK STATUS #trio 1 2");

    b.send("READ #trio 1");
    b.expect("OK READ #trio 1");
    a.expect("RECEIPT #trio 1 bob read");

    let mut c = s.client();
    let missed: Vec<String> = c.login("carol").iter().map(|l| msg(l)).collect();
    assert_eq!(missed, ["MSG #trio 1 alice hello both"]);
    a.expect("PRESENCE carol online");
    a.expect("RECEIPT #trio 1 carol delivered");
    a.send("STATUS #trio 1");
    a.expect("STATUS #trio 1 bob read");
    a.expect("STATUS #trio 1 carol delivered");
    a.expect("OK STATUS #trio 1 2");
    c.send("READ #trio 1");
    c.expect("OK READ #trio 1");
    a.expect("RECEIPT #trio 1 carol read");
    // Reading again changes nothing and sends nothing.
    c.send("READ #trio 1");
    c.expect("OK READ #trio 1");
    assert!(a.sync().is_empty());
    c.send("READ #trio 9");
    c.expect("ERR NO_SUCH_MESSAGE no such message");

    let mut m = s.user("mallory");
    m.send("STATUS #trio 1");
    m.expect("ERR NOT_MEMBER you are not a member of #trio");
}

#[test]
fn history_pages_back_through_ten_thousand_messages() {
    let s = Server::with_args(&["--durability", "async"]);
    let [mut a] = s.room_with("#long", ["alice"]);
    let total = 10_000;
    let mut batch = String::new();
    for n in 1..=total {
        batch.push_str(&format!("SAY #long m{n}\n"));
    }
    a.send_raw(batch.as_bytes());
    for n in 1..=total {
        a.expect_prefix(&format!("OK SAY #long {n} "));
    }
    // Default page: the newest 50, oldest first.
    let page = history(&mut a, "HISTORY #long");
    assert_eq!(page.len(), 50);
    assert_eq!(
        page[0],
        format!("{} alice sent m{}", total - 49, total - 49)
    );
    assert_eq!(page[49], format!("{total} alice sent m{total}"));
    // Walk back to the start in pages of 500 (memory first, then disk).
    let mut before = total + 1;
    let mut seen = 0;
    while before > 1 {
        let page = history(&mut a, &format!("HISTORY #long BEFORE {before} LIMIT 500"));
        assert!(!page.is_empty(), "page before {before}");
        let first: usize = page[0].split(' ').next().unwrap().parse().unwrap();
        for (k, row) in page.iter().enumerate() {
            let n = first + k;
            assert_eq!(row, &format!("{n} alice sent m{n}"));
        }
        assert_eq!(first + page.len(), before);
        seen += page.len();
        before = first;
    }
    assert_eq!(seen, total);
    assert!(history(&mut a, "HISTORY #long BEFORE 1").is_empty());
    // LIMIT is capped at 500.
    assert_eq!(history(&mut a, "HISTORY #long LIMIT 100000").len(), 500);
}

/// On either store: FTS5 on SQLite, tsvector and GIN on PostgreSQL.
#[test]
fn search_finds_words_and_refuses_non_members() {
    each_store(search_finds_words_and_refuses_non_members_on);
}

fn search_finds_words_and_refuses_non_members_on(store: &[&str]) {
    let s = Server::with_args(store);
    let [mut a] = s.room_with("#s", ["alice"]);
    for text in [
        "the quick brown fox",
        "lazy dogs sleep",
        "a quick \"quoted\" answer",
        "Quick again",
    ] {
        a.send(&format!("SAY #s {text}"));
        a.expect_prefix("OK SAY #s ");
    }
    a.send("SEARCH #s quick");
    let mut found = Vec::new();
    loop {
        let l = a.line();
        if l.starts_with("OK SEARCH") {
            assert_eq!(l, "OK SEARCH #s 3");
            break;
        }
        found.push(l.split(' ').nth(2).unwrap().to_string());
    }
    assert_eq!(found, ["4", "3", "1"], "newest first");
    a.send("SEARCH #s BEFORE 4 quick fox");
    a.expect_prefix("FOUND #s 1 ");
    a.expect("OK SEARCH #s 1");
    a.send("SEARCH #s \"quoted\" OR");
    a.expect("OK SEARCH #s 0");
    a.send("SEARCH #s nothing-like-this");
    a.expect("OK SEARCH #s 0");
    let mut m = s.user("mallory");
    m.send("SEARCH #s quick");
    m.expect("ERR NOT_MEMBER you are not a member of #s");
}

/// On either store.
#[test]
fn typing_edit_and_delete() {
    each_store(typing_edit_and_delete_on);
}

fn typing_edit_and_delete_on(store: &[&str]) {
    let s = Server::with_args(store);
    let mut a = s.user("alice");
    let mut b = s.user("bob");
    a.send("CREATE #g");
    a.expect("OK CREATE #g");
    a.send("ADD #g bob");
    a.expect("OK ADD #g bob");
    b.sync();
    b.send("TYPING #g");
    b.expect("OK TYPING #g");
    a.expect("TYPING #g bob");
    // Rate-limited: a second TYPING right away is acknowledged, not forwarded.
    b.send("TYPING #g");
    b.expect("OK TYPING #g");
    assert!(a.sync().is_empty());

    b.send("SAY #g helo");
    b.expect_prefix("OK SAY #g 1 ");
    assert_eq!(msg(&a.line()), "MSG #g 1 bob helo");
    b.sync();
    b.send("EDIT #g 1 hello");
    b.expect("OK EDIT #g 1");
    let edited = a.expect_prefix("EDITED #g 1 ");
    assert!(edited.ends_with(" bob hello"), "{edited}");
    a.send("EDIT #g 1 hijack");
    a.expect("ERR NOT_YOURS only its sender (or, to delete, an admin) can change that message");
    assert_eq!(history(&mut a, "HISTORY #g"), ["1 bob edited hello"]);

    b.send("SAY #g oops");
    b.expect_prefix("OK SAY #g 2 ");
    a.line();
    b.sync();
    b.send("DELETE #g 2");
    b.expect("OK DELETE #g 2");
    a.expect("DELETED #g 2 bob");
    // The admin may delete anyone's message.
    a.send("DELETE #g 1");
    a.expect("OK DELETE #g 1");
    b.expect("DELETED #g 1 alice");
    a.send("DELETE #g 1");
    a.expect("ERR NO_SUCH_MESSAGE no such message");
    assert_eq!(
        history(&mut b, "HISTORY #g"),
        ["1 bob deleted ", "2 bob deleted "]
    );
    b.send("SEARCH #g hello");
    b.expect("OK SEARCH #g 0");
    b.send("DELETE #g 7");
    b.expect("ERR NO_SUCH_MESSAGE no such message");
}

/// STATS counts the messages the storage thread committed; under `write`,
/// as under `sync`, a message is committed by the time its OK arrives.
#[test]
fn stats_count_the_messages_stored() {
    let s = Server::with_args(&["--durability", "write"]);
    let mut alice = s.user("alice");
    alice.send("JOIN #count");
    alice.expect_prefix("OK JOIN #count");
    for n in 1..=3 {
        alice.send(&format!("SAY #count message {n}"));
        alice.expect_prefix(&format!("OK SAY #count {n} "));
    }
    alice.send("STATS");
    let stored = std::iter::from_fn(|| Some(alice.line()))
        .find(|l| l.starts_with("STAT messages_stored "))
        .unwrap();
    assert_eq!(stored, "STAT messages_stored 3");
}
