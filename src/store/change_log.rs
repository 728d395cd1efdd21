//! The change log (`--bus`): the node-wide changes (accounts, conversations,
//! memberships, friendships, edits, reactions, moderation, away, pushers) in
//! commit order, each appended by the transaction that makes the change.
//!
//! Redis pub/sub is at most once: a change published while Redis was
//! unreachable, or dropped on the way, would never reach the other nodes'
//! tables. Each node therefore remembers the last entry it applied and reads
//! the log past it when the bus reconnects, on its position check, and when
//! an entry heard on the bus is not the next one (`chat::ChangeLog`). The
//! entries' ids are gapless and in commit order: they come from one counter
//! that each logging transaction moves on and holds until it commits.
//!
//! An entry holds the change in the bus codec's form: one encoding for a
//! change in flight and at rest, versioned the same way.

use super::{Answer, Assigned, LogEntry};
use crate::chat::{Change, Msg, Shared};

/// Entries kept: each logging commit deletes those older than the newest
/// minus this. A node further behind than that (one that could not read
/// the database for that many changes) logs the loss and should restart.
pub const LOG_KEPT: u64 = 100_000;

/// The oldest id a commit that reached `head` keeps.
pub(super) fn keep_from(head: u64) -> u64 {
    head.saturating_sub(LOG_KEPT)
}

/// The entry for `change`, completed by what its transaction assigned
/// before it (a new account's or conversation's id) or answered (an edit's
/// message), and encoded.
fn entry(change: &Change, assigned: &[Assigned], answer: Option<&Answer>) -> Vec<u8> {
    let mut change = change.clone();
    match &mut change {
        Change::Registered { user, .. } => {
            if let Some(id) = assigned.iter().rev().find_map(Assigned::user) {
                *user = id;
            }
        }
        Change::Founded { conv, .. } => {
            if let Some(id) = assigned.iter().rev().find_map(Assigned::conv) {
                *conv = id;
            }
        }
        Change::Changed { msg, .. } => {
            if let Some(Answer::Changed { msg: stored, .. }) = answer {
                *msg = Msg::from(stored.clone());
            }
        }
        _ => {}
    }
    // At rest the publishing node means nothing: 0.
    crate::bus::codec::encode(0, &Shared::Change(change))
}

/// A commit's log write: its entry, completed by what the commit assigned
/// before it, goes to `append` (which stores it and gives its id), and the
/// id joins what the commit assigned.
pub(super) fn append_committed<E>(
    change: &Change,
    assigned: &mut Vec<Assigned>,
    append: impl FnOnce(Vec<u8>) -> Result<u64, E>,
) -> Result<(), E> {
    let id = append(entry(change, assigned, None))?;
    assigned.push(Assigned::Log(id));
    Ok(())
}

/// The log writes that came with a query, appended after it so that an
/// edit's entry holds the message as the query left it; an edit's answer
/// records the last entry. Returns that entry's id, if any.
pub(super) fn append_answered<E>(
    logs: &[&Change],
    answer: &mut Answer,
    mut append: impl FnMut(Vec<u8>) -> Result<u64, E>,
) -> Result<Option<u64>, E> {
    let mut last = None;
    for change in logs {
        last = Some(append(entry(change, &[], Some(answer)))?);
    }
    if let Answer::Changed { logged, .. } = answer {
        *logged = last;
    }
    Ok(last)
}

/// Reads back an entry; one this build cannot decode is logged and kept
/// as a hole, so that the ids still count.
pub(super) fn decode(id: u64, bytes: &[u8]) -> LogEntry {
    let change = match crate::bus::codec::decode(bytes) {
        Ok(env) => match env.shared {
            Shared::Change(change) => Some(change),
            other => {
                log::warn!("change log entry {id} is not a change: {other:?}");
                None
            }
        },
        Err(e) => {
            log::warn!("change log entry {id} skipped: {e}");
            None
        }
    };
    LogEntry { id, change }
}

/// The log writes of `writes`, and the rest.
pub(super) fn split<'w>(writes: &[&'w super::Write]) -> (Vec<&'w Change>, Vec<&'w super::Write>) {
    let mut logs = Vec::new();
    let mut rest = Vec::new();
    for w in writes {
        match w {
            super::Write::Log(change) => logs.push(&**change),
            other => rest.push(*other),
        }
    }
    (logs, rest)
}

/// How many of `writes` are log writes.
pub(super) fn count(writes: &[&super::Write]) -> usize {
    writes
        .iter()
        .filter(|w| matches!(w, super::Write::Log(_)))
        .count()
}
