//! Faults a test can make, beyond kill -9 (tests/durability.rs): here, a
//! full disk. Nothing acknowledged may be lost, and the sessions go on.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A tmpfs of `size` mounted for the test's lifetime: a disk that really
/// fills up. Needs root; unmounted on drop.
struct SmallDisk {
    mnt: PathBuf,
}

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root, as CI has: {status}"
        );
        SmallDisk {
            mnt: at.to_path_buf(),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

#[test]
fn a_full_disk_refuses_messages_with_storage_errors_and_loses_none_it_acknowledged() {
    // Mounting needs root. CI runs as root, so there it always runs; a
    // developer's `cargo test` as another user says it was skipped.
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: the full-disk test mounts a tmpfs, which needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&tmp.path().join("disk"), "640k");
    let data = disk.mnt.join("data");
    let mut s = Server::on_dir(&data, &[]);
    let mut alice = s.user("alice");
    alice.send("JOIN #r");
    alice.expect("OK JOIN #r created");
    let filler = "x".repeat(3000);
    let mut acked = Vec::new();
    let mut refused = 0;
    for i in 0..1000 {
        alice.send(&format!("SAY #r {i} {filler}"));
        let reply = alice.line();
        if reply.starts_with("OK SAY #r ") {
            assert_eq!(refused, 0, "a message was acknowledged after a refusal");
            acked.push(reply);
        } else {
            assert_eq!(
                reply,
                "ERR STORAGE the server could not save that; try again"
            );
            refused += 1;
            if refused == 5 {
                break;
            }
        }
    }
    assert_eq!(refused, 5, "the disk never filled ({} acked)", acked.len());
    assert!(!acked.is_empty(), "the disk was full from the start");
    // The session goes on: what needs no disk still works.
    alice.send("PING still-here");
    alice.expect("OK PONG still-here");
    alice.send("WHO #r");
    alice.expect("MEMBER #r alice online admin");
    alice.expect("OK WHO #r 1");

    // Stop it hard, move the data to a roomy disk, start again.
    s.kill();
    let roomy = tmp.path().join("roomy");
    let copied = Command::new("cp")
        .args(["-a"])
        .arg(&data)
        .arg(&roomy)
        .status()
        .unwrap();
    assert!(copied.success());
    drop(disk);
    let s = Server::on_dir(&roomy, &[]);
    let mut alice = s.client();
    alice.login("alice");
    let history = all_history(&mut alice, "#r");
    let seqs: Vec<u64> = history.iter().map(|(seq, _)| *seq).collect();
    let expected: Vec<u64> = (1..=acked.len() as u64).collect();
    assert_eq!(seqs, expected, "exactly the acknowledged messages, gapless");
    let ids: HashSet<&str> = history.iter().map(|(_, id)| id.as_str()).collect();
    for a in &acked {
        assert!(ids.contains(a.rsplit(' ').next().unwrap()), "{a} was lost");
    }
    alice.send("SAY #r after");
    alice.expect_prefix(&format!("OK SAY #r {} ", acked.len() + 1));
}
