//! Node-wide changes in the change log's order (`--bus`).
//!
//! Every node-wide change (an account, a conversation, a membership, a
//! friendship, an edit...) is appended to the store's change log by the
//! transaction that makes it, and the entry's id travels with it on the
//! bus. A node applies entries strictly in id order, each once: the next id
//! at once, an id it has passed is a duplicate, and one past a gap is held
//! while the log is read from the store. Its own commits' entries count
//! too (applied when they commit, so only their ids are kept). The log is
//! also read after the bus reconnects and at each position check, which
//! catches changes published while Redis was unreachable: pub/sub would
//! otherwise lose them for good, since nothing else re-reads them.

use std::collections::BTreeMap;

use super::Change;
use super::order::{FILL_RETRY_MS, MAX_HELD};
use crate::store::LogEntry;

/// Entries one read of the log asks for.
pub const LOG_READ_ROWS: usize = 256;

#[derive(Debug, Default)]
pub struct ChangeLog {
    /// Every entry up to this id is applied here.
    applied: u64,
    /// Entries past a gap: a change heard on the bus, or `None` for this
    /// node's own (applied when it committed).
    held: BTreeMap<u64, Option<Change>>,
    /// When the log past `applied` was last asked for (Unix ms), while
    /// that read is out.
    asked_at: Option<i64>,
    /// Another read is wanted once the one out is answered.
    again: bool,
    /// Changes dropped as applied already (STATS `bus_log_duplicates`).
    pub duplicates: u64,
    /// Changes dropped because `MAX_HELD` were held (read from the log
    /// instead).
    pub overflow: u64,
    /// Entries gone from the log before this node read them
    /// (`store::change_log::LOG_KEPT`): this node's tables may miss them
    /// until it restarts (STATS `bus_log_lost`).
    pub lost: u64,
}

/// What to do after an offer or a read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// Apply these, in this order.
    pub apply: Vec<Change>,
    /// Read the log past this id and hand the entries to
    /// [`ChangeLog::read`].
    pub fetch: Option<u64>,
}

impl ChangeLog {
    /// The log as the tables loaded at startup stand: everything up to
    /// `head` is in them.
    pub fn starting_at(head: u64) -> ChangeLog {
        ChangeLog {
            applied: head,
            ..ChangeLog::default()
        }
    }

    /// Entry `id`: a change heard on the bus (`Some`), or this node's own
    /// commit (`None`, applied already).
    pub fn offer(&mut self, id: u64, change: Option<Change>, now: i64) -> Ready {
        if id <= self.applied {
            self.duplicates += u64::from(change.is_some());
            return Ready::default();
        }
        match change {
            // Room is kept for this node's own: dropping one would apply
            // it twice once read from the log.
            Some(_) if self.held.len() >= MAX_HELD => self.overflow += 1,
            change => {
                self.held.entry(id).or_insert(change);
            }
        }
        self.release(now)
    }

    /// The store's answer to a read of the log past [`Ready::fetch`]:
    /// `entries` oldest first.
    pub fn read(&mut self, entries: Vec<LogEntry>, now: i64) -> Ready {
        self.asked_at = None;
        let full = entries.len() >= LOG_READ_ROWS;
        let mut ready = Ready::default();
        for entry in entries {
            if entry.id <= self.applied {
                continue;
            }
            if entry.id > self.applied + 1 {
                let missing = entry.id - self.applied - 1;
                self.lost += missing;
                log::error!(
                    "change log: {missing} entries after {} were dropped before this node read them; its tables may miss them until it restarts",
                    self.applied
                );
            }
            self.applied = entry.id;
            // This node's own entry is applied already; a held bus copy is
            // the same change as the log's.
            let own = matches!(self.held.remove(&entry.id), Some(None));
            if !own && let Some(change) = entry.change {
                ready.apply.push(change);
            }
        }
        self.held.retain(|&id, _| id > self.applied);
        let mut rest = self.release(now);
        ready.apply.append(&mut rest.apply);
        ready.fetch = rest.fetch;
        if (full || std::mem::take(&mut self.again)) && ready.fetch.is_none() {
            ready.fetch = self.want(now);
        }
        ready
    }

    /// Asks for the log past what is applied (after a bus reconnect, at a
    /// position check); with a read out, once more after it.
    pub fn want(&mut self, now: i64) -> Option<u64> {
        let asked = self.ask(now);
        self.again |= asked.is_none();
        asked
    }

    /// The position to read past, unless a read is out and not overdue.
    fn ask(&mut self, now: i64) -> Option<u64> {
        if self
            .asked_at
            .is_some_and(|at| now.saturating_sub(at) < FILL_RETRY_MS)
        {
            return None;
        }
        self.asked_at = Some(now);
        Some(self.applied)
    }

    /// A read that went unanswered for `FILL_RETRY_MS` is asked again.
    pub fn overdue(&mut self, now: i64) -> Option<u64> {
        let late = self
            .asked_at
            .is_some_and(|at| now.saturating_sub(at) >= FILL_RETRY_MS);
        if late { self.ask(now) } else { None }
    }

    /// Changes held past a gap (STATS `bus_log_held`).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Hands out what follows `applied` without a gap; asks for the log if
    /// something held is past one (a read out now is looked at again when
    /// it is answered).
    fn release(&mut self, now: i64) -> Ready {
        let mut ready = Ready::default();
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() != self.applied + 1 {
                break;
            }
            self.applied += 1;
            if let Some(change) = entry.remove() {
                ready.apply.push(change);
            }
        }
        if !self.held.is_empty() {
            ready.fetch = self.ask(now);
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::UserId;

    fn away(user: u32) -> Change {
        Change::Away {
            user: UserId(user),
            text: None,
        }
    }

    fn entry(id: u64, user: u32) -> LogEntry {
        LogEntry {
            id,
            change: Some(away(user)),
        }
    }

    #[test]
    fn the_next_entry_is_applied_at_once_and_a_duplicate_dropped() {
        let mut log = ChangeLog::starting_at(4);
        let ready = log.offer(5, Some(away(5)), 0);
        assert_eq!(ready.apply, [away(5)]);
        assert_eq!(ready.fetch, None);
        assert_eq!(log.offer(5, Some(away(5)), 0), Ready::default());
        assert_eq!(log.duplicates, 1);
    }

    #[test]
    fn own_entries_advance_without_applying() {
        let mut log = ChangeLog::starting_at(0);
        assert_eq!(log.offer(1, None, 0), Ready::default());
        assert_eq!(log.offer(2, Some(away(2)), 0).apply, [away(2)]);
    }

    #[test]
    fn a_gap_holds_later_entries_until_the_log_is_read() {
        let mut log = ChangeLog::starting_at(0);
        let ready = log.offer(3, Some(away(3)), 0);
        assert_eq!(ready.apply, []);
        assert_eq!(ready.fetch, Some(0));
        // This node's own entry 2 commits meanwhile; a second gap offer
        // does not ask again while the read is out.
        assert_eq!(log.offer(2, None, 1), Ready::default());
        assert_eq!(log.held(), 2);
        // The read finds 1 (lost on the bus), 2 (own: not applied twice)
        // and 3.
        let ready = log.read(vec![entry(1, 1), entry(2, 2), entry(3, 3)], 2);
        assert_eq!(ready.apply, [away(1), away(3)]);
        assert_eq!(ready.fetch, None);
        assert_eq!(log.held(), 0);
    }

    #[test]
    fn a_read_wanted_while_one_is_out_follows_it() {
        let mut log = ChangeLog::starting_at(0);
        assert_eq!(log.want(0), Some(0));
        assert_eq!(log.want(1), None);
        let ready = log.read(vec![entry(1, 1)], 2);
        assert_eq!(ready.apply, [away(1)]);
        assert_eq!(ready.fetch, Some(1));
    }

    #[test]
    fn a_full_read_asks_for_the_rest() {
        let mut log = ChangeLog::starting_at(0);
        log.want(0);
        let entries = (1..=LOG_READ_ROWS as u64).map(|id| entry(id, 1)).collect();
        let ready = log.read(entries, 1);
        assert_eq!(ready.apply.len(), LOG_READ_ROWS);
        assert_eq!(ready.fetch, Some(LOG_READ_ROWS as u64));
    }

    #[test]
    fn an_unanswered_read_is_asked_again_after_the_retry_time() {
        let mut log = ChangeLog::starting_at(7);
        assert_eq!(log.want(0), Some(7));
        assert_eq!(log.overdue(FILL_RETRY_MS - 1), None);
        assert_eq!(log.overdue(FILL_RETRY_MS), Some(7));
    }

    #[test]
    fn entries_dropped_from_the_log_are_counted_as_lost() {
        let mut log = ChangeLog::starting_at(2);
        log.want(0);
        let ready = log.read(vec![entry(10, 10)], 1);
        assert_eq!(ready.apply, [away(10)]);
        assert_eq!(log.lost, 7);
    }

    #[test]
    fn held_bus_changes_are_bounded() {
        let mut log = ChangeLog::starting_at(0);
        for id in 2..(MAX_HELD as u64 + 12) {
            log.offer(id, Some(away(1)), 0);
        }
        assert_eq!(log.held(), MAX_HELD);
        assert_eq!(log.overflow, 10);
        // This node's own still count.
        log.offer(MAX_HELD as u64 + 20, None, 0);
        assert_eq!(log.held(), MAX_HELD + 1);
    }
}
