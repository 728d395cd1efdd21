//! Attachments over real sockets: binary bodies, limits, access, lifecycle
//! (the round trip and the access cases on PostgreSQL too, when
//! `LINECHAT_TEST_POSTGRES` names a server).

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{Client, Server, befriend, each_store, msg};

/// Every awkward byte: LF, CR, NUL, 0xFF (telnet IAC), invalid UTF-8.
fn awkward(len: usize) -> Vec<u8> {
    let pattern = [b'\n', b'\r', 0, 0xFF, 0xFF, b'a', 0xC3, 0x28, b' '];
    (0..len).map(|i| pattern[i % pattern.len()]).collect()
}

fn attach(c: &mut Client, conv: &str, name: &str, mime: &str, body: &[u8]) {
    let mut wire = format!("ATTACH {conv} {name} {mime} {}\n", body.len()).into_bytes();
    wire.extend_from_slice(body);
    c.send_raw(&wire);
}

/// FETCH's answer: the BLOB header, the body, then `OK FETCH`.
fn fetch(c: &mut Client, id: &str) -> Result<(String, Vec<u8>), String> {
    c.send(&format!("FETCH {id}"));
    let header = c.line();
    if header.starts_with("ERR ") {
        return Err(header);
    }
    let size: usize = header.split(' ').nth(2).unwrap().parse().unwrap();
    let body = c.read_raw(size);
    assert_eq!(c.line(), "", "a LF ends the body");
    c.expect(&format!("OK FETCH {id}"));
    Ok((header, body))
}

/// The blob id at the end of an `OK ATTACH` line.
fn blob_of(ok: &str) -> String {
    ok.rsplit(' ').next().unwrap().to_string()
}

/// On either store.
#[test]
fn binary_attachment_roundtrip_history_and_restart() {
    each_store(binary_attachment_roundtrip_history_and_restart_on);
}

fn binary_attachment_roundtrip_history_and_restart_on(store: &[&str]) {
    let mut s = Server::with_args(store);
    let [mut a, mut b] = s.room_with("#files", ["alice", "bob"]);
    a.ignored.push("RECEIPT ");
    let body = awkward(10_000);
    attach(
        &mut a,
        "#files",
        "data.bin",
        "application/octet-stream",
        &body,
    );
    let ok = a.expect_prefix("OK ATTACH #files 1 ");
    let id = blob_of(&ok);
    assert_eq!(id.len(), 64);
    let shown = format!("[file {id} application/octet-stream 10000 data.bin]");
    assert_eq!(msg(&b.line()), format!("MSG #files 1 alice {shown}"));
    let (header, got) = fetch(&mut b, &id).unwrap();
    assert_eq!(header, format!("BLOB {id} 10000 application/octet-stream"));
    assert!(got == body, "the fetched bytes differ");
    // An image is an image; the next command right behind a body works.
    let mut wire = b"ATTACH #files cat.png image/PNG 4\n\x89PNG".to_vec();
    wire.extend_from_slice(b"PING after\n");
    a.send_raw(&wire);
    let ok = a.line();
    assert!(ok.starts_with("OK ATTACH #files 2 "), "{ok}");
    a.expect("OK PONG after");
    let cat = blob_of(&ok);
    assert_eq!(
        msg(&b.line()),
        format!("MSG #files 2 alice [image {cat} image/png 4 cat.png]")
    );
    b.send("HISTORY #files");
    b.expect_prefix("HISTORY #files 1 ");
    b.expect_prefix("HISTORY #files 2 ");
    b.expect("OK HISTORY #files 2");
    // SAY cannot pass itself off as an attachment.
    a.send(&format!("SAY #files [file {cat} image/png 4 fake.png]"));
    a.expect(
        "ERR BAD_TEXT text starting with [file, [image or [re is reserved for attachments and replies",
    );

    s.restart();
    let mut b = s.client();
    b.login("bob");
    assert!(
        fetch(&mut b, &id).unwrap().1 == body,
        "the fetched bytes differ"
    );
    assert_eq!(fetch(&mut b, &cat).unwrap().1, b"\x89PNG");
}

#[test]
fn oversized_or_refused_uploads_are_skipped_and_the_session_goes_on() {
    let s = Server::with_args(&["--max-attachment", "1000"]);
    let [mut a] = s.room_with("#r", ["alice"]);
    let mut wire = b"ATTACH #r big.bin application/octet-stream 2000\n".to_vec();
    wire.extend_from_slice(&awkward(2000));
    wire.extend_from_slice(b"PING 1\n");
    // Refused targets and bad names still have their body skipped.
    wire.extend_from_slice(b"ATTACH #nowhere x.bin text/plain 5\nPING\nPING 2\n");
    wire.extend_from_slice(b"ATTACH #r bad/name textplain 3\n\n\n\nPING 3\n");
    a.send_raw(&wire);
    a.expect("ERR TOO_LARGE attachments are at most 1000 bytes");
    a.expect("OK PONG 1");
    a.expect("ERR NO_SUCH_ROOM no such room");
    a.expect("OK PONG 2");
    a.expect("ERR BAD_MIME a MIME type looks like type/subtype, e.g. image/png");
    a.expect("OK PONG 3");
    a.send("ATTACH #r x.bin text/plain many");
    a.expect("ERR BAD_ARGS wrong arguments for ATTACH; try HELP ATTACH");
    a.send("HISTORY #r");
    a.expect("OK HISTORY #r 0");
}

#[test]
fn a_short_body_then_close_publishes_nothing() {
    let s = Server::start();
    let [mut a, mut b] = s.room_with("#r", ["alice", "bob"]);
    let mut short = b"ATTACH #r cut.bin application/octet-stream 100\n".to_vec();
    short.extend_from_slice(&[0xFF; 40]);
    a.send_raw(&short);
    a.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(a.until_closed().iter().all(|l| !l.starts_with("OK ATTACH")));
    b.expect_prefix("PRESENCE alice offline ");
    b.send("HISTORY #r");
    b.expect("OK HISTORY #r 0");
}

#[test]
fn only_members_fetch_and_deleting_the_last_reference_removes_the_blob() {
    each_store(only_members_fetch_and_deleting_the_last_reference_removes_the_blob_on);
}

fn only_members_fetch_and_deleting_the_last_reference_removes_the_blob_on(store: &[&str]) {
    let s = Server::with_args(store);
    let mut a = s.user("alice");
    let mut m = s.user("mallory");
    a.send("CREATE #private");
    a.expect("OK CREATE #private");
    let body = awkward(3000);
    attach(
        &mut a,
        "#private",
        "one.bin",
        "application/octet-stream",
        &body,
    );
    let id = blob_of(&a.expect_prefix("OK ATTACH #private 1 "));
    attach(
        &mut a,
        "#private",
        "two.bin",
        "application/octet-stream",
        &body,
    );
    assert_eq!(
        blob_of(&a.expect_prefix("OK ATTACH #private 2 ")),
        id,
        "same bytes, one blob"
    );
    assert_eq!(
        fetch(&mut m, &id),
        Err("ERR NO_SUCH_BLOB no such blob, or not in a conversation of yours".to_string())
    );
    m.send("FETCH not-a-blob");
    m.expect("ERR NO_SUCH_BLOB no such blob, or not in a conversation of yours");
    let file = s.data_dir().join("blobs").join(&id[..2]).join(&id);
    assert!(file.exists());
    a.send("DELETE #private 1");
    a.expect("OK DELETE #private 1");
    assert_eq!(
        fetch(&mut a, &id).unwrap().1,
        body,
        "still held by message 2"
    );
    a.send("DELETE #private 2");
    a.expect("OK DELETE #private 2");
    assert!(fetch(&mut a, &id).is_err());
    assert!(!file.exists(), "the unreferenced blob is gone from disk");
}

#[test]
fn direct_attachments_and_big_fetches_stream_within_the_outbox_limit() {
    let s = Server::with_args(&["--max-outbox", "65536"]);
    let mut a = s.user("alice");
    let mut b = s.user("bob");
    befriend(&mut a, "alice", &mut b, "bob");
    let body = awkward(3 << 20);
    attach(&mut a, "@bob", "big.bin", "application/octet-stream", &body);
    let id = blob_of(&a.expect_prefix("OK ATTACH @bob 1 "));
    let shown = msg(&b.line());
    assert_eq!(
        shown,
        format!("MSG @alice 1 alice [file {id} application/octet-stream 3145728 big.bin]")
    );
    // 3 MiB through a 64 KiB outbox: streamed, not dropped.
    assert!(
        fetch(&mut b, &id).unwrap().1 == body,
        "the fetched bytes differ"
    );
    b.send("PING done");
    b.expect("OK PONG done");
}

#[test]
fn two_parallel_8_mib_uploads_do_not_hold_up_chat() {
    let s = Server::start();
    let [mut chat_a, mut chat_b] = s.room_with("#busy", ["chatty", "reader"]);
    let uploads: Vec<_> = (0..2)
        .map(|n| {
            let mut up = s.user(&format!("up{n}"));
            up.send("JOIN #busy");
            up.expect("OK JOIN #busy joined");
            std::thread::spawn(move || {
                let body = awkward(8 << 20);
                let header = format!(
                    "ATTACH #busy big{n}.bin application/octet-stream {}\n",
                    body.len()
                );
                up.send_raw(header.as_bytes());
                // Sent in slices, as a phone on a real link would.
                for part in body.chunks(256 * 1024) {
                    up.stream.write_all(part).unwrap();
                }
                loop {
                    let l = up.line();
                    if l.starts_with("OK ATTACH") {
                        return l;
                    }
                }
            })
        })
        .collect();
    // An uploader that is done disconnects, which its room hears as PRESENCE.
    chat_a
        .ignored
        .extend(["RECEIPT ", "JOINED ", "MSG ", "PRESENCE "]);
    chat_b.ignored.extend(["JOINED ", "RECEIPT ", "PRESENCE "]);
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let t = Instant::now();
        chat_a.send(&format!("SAY #busy ping {i}"));
        chat_a.expect_prefix("OK SAY #busy ");
        loop {
            let l = chat_b.line();
            if l.contains(&format!(" ping {i}")) {
                break;
            }
        }
        worst = worst.max(t.elapsed());
    }
    for u in uploads {
        assert!(u.join().unwrap().starts_with("OK ATTACH #busy "));
    }
    assert!(
        worst < Duration::from_millis(500),
        "worst chat round trip {worst:?}"
    );
}

#[test]
fn events_wait_until_a_fetch_body_is_done_and_attachments_cannot_be_edited() {
    let s = Server::start();
    let [mut a, mut b] = s.room_with("#r", ["alice", "bob"]);
    b.ignored.push("RECEIPT ");
    a.ignored.push("RECEIPT ");
    let body = awkward(4 << 20);
    attach(&mut b, "#r", "big.bin", "application/octet-stream", &body);
    let id = blob_of(&b.expect_prefix("OK ATTACH #r 1 "));
    a.line();
    // alice talks while bob downloads; bob reads nothing until he FETCHes.
    let chatter = {
        let mut stream = a.stream.try_clone().unwrap();
        std::thread::spawn(move || {
            for i in 0..50 {
                stream
                    .write_all(format!("SAY #r during {i}\n").as_bytes())
                    .unwrap();
            }
        })
    };
    b.send(&format!("FETCH {id}"));
    let mut before = 0;
    let header = loop {
        let l = b.line();
        if l.starts_with("BLOB ") {
            break l;
        }
        assert!(l.starts_with("MSG #r "), "{l}");
        before += 1;
    };
    assert_eq!(
        header,
        format!("BLOB {id} {} application/octet-stream", body.len())
    );
    assert!(b.read_raw(body.len()) == body, "no line inside the file");
    assert_eq!(b.line(), "");
    b.expect(&format!("OK FETCH {id}"));
    chatter.join().unwrap();
    for i in before..50 {
        assert_eq!(msg(&b.line()), format!("MSG #r {} alice during {i}", i + 2));
    }
    // Events flow freely again once the download is over.
    a.send("SAY #r after");
    assert_eq!(msg(&b.line()), "MSG #r 52 alice after");
    b.send("EDIT #r 1 not a file");
    b.expect("ERR NOT_EDITABLE an attachment cannot be edited; DELETE it and send another");
}

/// An attachment older than what memory keeps (`--recent 2`) is still not
/// editable, nor anyone else's message editable; its sender deletes it, the
/// deletion reaches the room in order, and its file goes.
#[test]
fn old_attachments_are_not_editable_but_their_sender_deletes_them() {
    let s = Server::with_args(&["--recent", "2"]);
    let mut a = s.user("alice");
    let mut b = s.user("bob");
    a.ignored.push("RECEIPT ");
    b.ignored.push("RECEIPT ");
    a.send("JOIN #r");
    a.expect("OK JOIN #r created");
    b.send("JOIN #r");
    b.expect("OK JOIN #r joined");
    a.expect("JOINED #r bob");
    attach(&mut b, "#r", "old.txt", "text/plain", b"kept a while");
    let id = blob_of(&b.expect_prefix("OK ATTACH #r 1 "));
    for i in 2..=4 {
        b.send(&format!("SAY #r filler {i}"));
        b.expect_prefix(&format!("OK SAY #r {i} "));
    }
    for _ in 1..=4 {
        a.expect_prefix("MSG #r ");
    }
    b.send("EDIT #r 1 not a file");
    b.send("EDIT #r 2 filler again");
    b.expect("ERR NOT_EDITABLE an attachment cannot be edited; DELETE it and send another");
    b.expect("OK EDIT #r 2");
    a.expect_prefix("EDITED #r 2 ");
    a.send("EDIT #r 1 mine");
    a.expect("ERR NOT_YOURS only its sender (or, to delete, an admin) can change that message");
    // SEARCH is answered by storage too: its answer must not overtake the
    // DELETE's second round.
    b.send("DELETE #r 1");
    b.send("SEARCH #r filler");
    b.expect("OK DELETE #r 1");
    for seq in [4, 3, 2] {
        b.expect_prefix(&format!("FOUND #r {seq} "));
    }
    b.expect("OK SEARCH #r 3");
    a.expect("DELETED #r 1 bob");
    assert!(!s.data_dir().join("blobs").join(&id[..2]).join(&id).exists());
    b.send("DELETE #r 1");
    b.expect("ERR NO_SUCH_MESSAGE no such message");
}

#[test]
fn the_body_of_an_attach_line_that_does_not_parse_is_never_run() {
    let s = Server::start();
    let [mut a, mut b] = s.room_with("#room", ["alice", "bob"]);
    b.ignored.push("PRESENCE ");
    // A file name with a space: the line does not parse, but its last word
    // is the size, so the body is read and dropped, not run.
    let body = b"SAY #room from the file\n";
    let mut wire = format!("ATTACH #room my file.txt text/plain {}\n", body.len()).into_bytes();
    wire.extend_from_slice(body);
    wire.extend_from_slice(b"PING after\n");
    a.send_raw(&wire);
    a.expect("ERR BAD_ARGS wrong arguments for ATTACH; try HELP ATTACH");
    a.expect("OK PONG after");
    b.send("HISTORY #room");
    b.expect("OK HISTORY #room 0");
    // A size that is meant but unreadable loses the framing: ERR, then close.
    a.send_raw(b"ATTACH #room x.txt text/plain 12k\nSAY #room from the file\n");
    a.expect(
        "ERR BAD_ARGS the ATTACH size must be a number of bytes; closing the connection, since its body cannot be told from commands",
    );
    assert!(a.until_closed().is_empty());
    b.send("HISTORY #room");
    b.expect("OK HISTORY #room 0");
}

#[test]
fn an_attach_far_over_the_limit_is_refused_and_the_connection_closed() {
    let s = Server::with_args(&["--max-attachment", "1000"]);
    let mut a = s.user("alice");
    let started = Instant::now();
    a.send_raw(b"ATTACH #r big.bin application/octet-stream 99999999999\nPING\n");
    a.expect(
        "ERR TOO_LARGE attachments are at most 1000 bytes; closing the connection instead of reading the body",
    );
    assert!(a.until_closed().is_empty());
    assert!(started.elapsed() < common::TIMEOUT);
}
