//! Gapless, ordered messages from an at-most-once bus.
//!
//! Redis pub/sub may drop a message (a subscription dies, Redis restarts)
//! and this node's own commits may come back from its storage thread after
//! a later message another node committed. The [`Sequencer`] sits between
//! both sources and the tables: given the seq last delivered in a
//! conversation, the next one is delivered at once, one already delivered
//! is dropped, and one past a gap is held while the missing range is read
//! from the store (the caller sends the query the [`Offer`] asks for and
//! offers its answer like any other messages). It holds no I/O and reads
//! no clock: the time is passed in.

use std::collections::BTreeMap;

use super::{ConvId, IdMap, Posted, Seq};

/// Messages held past a gap in one conversation; later ones are dropped
/// and read from the store by the fills that close the gap instead.
pub const MAX_HELD: usize = 1024;

/// How long a read of a gap may take before it is asked again (the store
/// may have failed it, or the answer was lost with the session that
/// waited for it).
pub const FILL_RETRY_MS: i64 = 2_000;

#[derive(Debug, Default)]
pub struct Sequencer {
    gaps: IdMap<ConvId, Gap>,
    /// Messages dropped as already delivered (STATS `bus_duplicates`).
    pub duplicates: u64,
    /// Messages dropped because `MAX_HELD` were held already.
    pub overflow: u64,
}

/// A conversation with messages missing before the ones held.
#[derive(Debug, Default)]
struct Gap {
    held: BTreeMap<Seq, Posted>,
    /// The newest seq known to exist, held or not.
    top: Seq,
    /// When the missing range was last asked for (Unix ms).
    asked_at: Option<i64>,
}

/// What to do with offered messages.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Offer {
    /// Deliver these now, in this order: they follow the last delivered.
    pub deliver: Vec<Posted>,
    /// Read the messages after this seq from the store and offer them.
    pub fetch: Option<Seq>,
}

impl Sequencer {
    /// Offers messages of `conv`, whose last delivered seq is `last`.
    pub fn offer(&mut self, conv: ConvId, last: Seq, posts: Vec<Posted>, now: i64) -> Offer {
        let gap = self.gaps.entry(conv).or_default();
        for p in posts {
            let seq = p.msg.seq;
            gap.top = gap.top.max(seq);
            if seq <= last {
                self.duplicates += 1;
                continue;
            }
            // The copy that names its sender's session wins: that session
            // has its own answer and must not hear it again.
            if let Some(held) = gap.held.get_mut(&seq) {
                self.duplicates += 1;
                if held.origin.is_none() {
                    *held = p;
                }
                continue;
            }
            // At the bound the newest held message makes room for an older
            // one (the next to deliver must always fit); either way, what
            // is dropped is read from the store later.
            if gap.held.len() >= MAX_HELD {
                self.overflow += 1;
                match gap.held.last_key_value() {
                    Some((&newest, _)) if newest > seq => {
                        gap.held.remove(&newest);
                    }
                    _ => continue,
                }
            }
            gap.held.insert(seq, p);
        }
        let mut offer = Offer::default();
        let mut next = last.next();
        while let Some(p) = gap.held.remove(&next) {
            offer.deliver.push(p);
            next = next.next();
        }
        let last = next.prev();
        if gap.top <= last {
            self.gaps.remove(&conv);
            return offer;
        }
        // What is held is past a gap: ask for the gap, unless a read of it
        // is under way and not yet overdue.
        if gap.asked_at.is_none_or(|at| now - at >= FILL_RETRY_MS) {
            gap.asked_at = Some(now);
            offer.fetch = Some(last);
        }
        offer
    }

    /// The store answered the read of `conv`'s gap; offer the answer next.
    /// The next offer asks again if the gap is not closed by it.
    pub fn answered(&mut self, conv: ConvId) {
        if let Some(gap) = self.gaps.get_mut(&conv) {
            gap.asked_at = None;
        }
    }

    /// Conversations whose gap read has gone unanswered for
    /// `FILL_RETRY_MS`: the caller offers them nothing, which asks again.
    pub fn overdue(&self, now: i64) -> Vec<ConvId> {
        self.gaps
            .iter()
            .filter(|(_, g)| g.asked_at.is_some_and(|at| now - at >= FILL_RETRY_MS))
            .map(|(&conv, _)| conv)
            .collect()
    }

    /// Messages held in all conversations (STATS `bus_held`).
    pub fn held(&self) -> usize {
        self.gaps.values().map(|g| g.held.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{Msg, MsgState, SessionId, UserId};

    const C: ConvId = ConvId(1);

    fn post(seq: u64) -> Posted {
        Posted {
            origin: None,
            msg: Msg {
                seq: Seq(seq),
                id: uuid::Uuid::from_u128(seq.into()),
                sender: UserId(1),
                at: 0,
                text: format!("m{seq}").into(),
                state: MsgState::Sent,
                reply_to: None,
            },
        }
    }

    fn seqs(offer: &Offer) -> Vec<u64> {
        offer.deliver.iter().map(|p| p.msg.seq.0).collect()
    }

    #[test]
    fn the_next_seq_is_delivered_at_once() {
        let mut s = Sequencer::default();
        let offer = s.offer(C, Seq(4), vec![post(5), post(6)], 0);
        assert_eq!(seqs(&offer), [5, 6]);
        assert_eq!(offer.fetch, None);
        assert_eq!(s.held(), 0);
    }

    #[test]
    fn a_duplicate_is_dropped() {
        let mut s = Sequencer::default();
        let offer = s.offer(C, Seq(6), vec![post(5), post(6)], 0);
        assert_eq!(offer, Offer::default());
        assert_eq!(s.duplicates, 2);
    }

    #[test]
    fn a_gap_holds_later_messages_until_the_store_fills_it() {
        let mut s = Sequencer::default();
        let offer = s.offer(C, Seq(4), vec![post(7), post(8)], 0);
        assert!(offer.deliver.is_empty());
        assert_eq!(offer.fetch, Some(Seq(4)));
        assert_eq!(s.held(), 2);
        // A later message joins the held ones without asking twice.
        let offer = s.offer(C, Seq(4), vec![post(9)], 10);
        assert_eq!(offer, Offer::default());
        // The store's answer closes the gap: all of it goes out in order.
        s.answered(C);
        let offer = s.offer(C, Seq(4), vec![post(5), post(6), post(7)], 20);
        assert_eq!(seqs(&offer), [5, 6, 7, 8, 9]);
        assert_eq!(offer.fetch, None);
        assert_eq!(s.held(), 0);
        assert_eq!(s.duplicates, 1);
    }

    #[test]
    fn a_partly_filled_gap_asks_for_the_rest() {
        let mut s = Sequencer::default();
        s.offer(C, Seq(0), vec![post(10)], 0);
        s.answered(C);
        let offer = s.offer(C, Seq(0), vec![post(1), post(2)], 5);
        assert_eq!(seqs(&offer), [1, 2]);
        assert_eq!(offer.fetch, Some(Seq(2)));
    }

    #[test]
    fn an_unanswered_fill_is_asked_again_after_the_retry_time() {
        let mut s = Sequencer::default();
        s.offer(C, Seq(1), vec![post(3)], 1_000);
        assert!(s.overdue(1_000 + FILL_RETRY_MS - 1).is_empty());
        assert_eq!(s.overdue(1_000 + FILL_RETRY_MS), [C]);
        let offer = s.offer(C, Seq(1), Vec::new(), 1_000 + FILL_RETRY_MS);
        assert_eq!(offer.fetch, Some(Seq(1)));
    }

    #[test]
    fn the_copy_naming_its_sender_wins() {
        let mut s = Sequencer::default();
        s.offer(C, Seq(0), vec![post(2)], 0);
        let mine = Posted {
            origin: Some(SessionId(7)),
            ..post(2)
        };
        s.offer(C, Seq(0), vec![mine], 0);
        let offer = s.offer(C, Seq(0), vec![post(1)], 0);
        assert_eq!(seqs(&offer), [1, 2]);
        assert_eq!(offer.deliver[1].origin, Some(SessionId(7)));
    }

    #[test]
    fn held_messages_are_bounded_and_the_rest_read_later() {
        let mut s = Sequencer::default();
        let posts = (2..(MAX_HELD as u64 + 12)).map(post).collect();
        s.offer(C, Seq(0), posts, 0);
        assert_eq!(s.held(), MAX_HELD);
        assert_eq!(s.overflow, 10);
        s.answered(C);
        // The next to deliver makes room for itself.
        let offer = s.offer(C, Seq(0), vec![post(1)], 1);
        assert_eq!(offer.deliver.len(), MAX_HELD);
        assert_eq!(s.overflow, 11);
        // The dropped ones are past the last delivered: read from the store.
        assert_eq!(offer.fetch, Some(Seq(MAX_HELD as u64)));
    }
}
