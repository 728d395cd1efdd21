//! What a traffic scenario's figures count: the publishes sent inside the
//! measurement window, and every reply, delivery and latency sample of
//! those, whenever it arrives (the drain after the window included). A
//! delivery of a warm-up publish never counts, nor one that was sent after
//! the window closed, so deliveries per publish cannot exceed the number of
//! recipients and every latency sample is one counted delivery.

use super::Counts;
use crate::report::latency_histogram;
use hdrhistogram::Histogram;
use std::collections::VecDeque;

/// Marks a bound that is not set yet (warm-up not over, window not closed).
const UNSET: u64 = u64::MAX;

pub struct Measured {
    /// Whether publishes are answered (then `published` counts accepts).
    acks: bool,
    /// Per publisher: publishes sent so far; the n-th has seq n.
    sent: Vec<u64>,
    /// Per publisher: replies so far. Servers answer a connection's
    /// publishes in order, so the n-th reply answers seq n.
    replied: Vec<u64>,
    /// Per publisher: first seq sent inside the window.
    first: Vec<u64>,
    /// Per publisher: last seq sent inside the window.
    last: Vec<u64>,
    /// Per publisher, where publishes are answered: the recipients of each
    /// measured publish not answered yet, oldest first.
    unanswered: Vec<VecDeque<u64>>,
    /// Between `open` and `close`.
    in_window: bool,
    /// Measured publishes answered with an error.
    refused: u64,
    /// Deliveries the measured publishes should make (the accepted ones,
    /// where publishes are answered).
    expected: u64,
    /// The figures of the measured publishes.
    pub counts: Counts,
    pub hist: Histogram<u64>,
    /// Everything by arrival time, warm-up and drain included: only for
    /// the progress line.
    pub arrived: Counts,
}

impl Measured {
    pub fn new(publishers: usize, acks: bool) -> Self {
        Measured {
            acks,
            sent: vec![0; publishers],
            replied: vec![0; publishers],
            first: vec![UNSET; publishers],
            last: vec![UNSET; publishers],
            unanswered: vec![VecDeque::new(); publishers],
            in_window: false,
            refused: 0,
            expected: 0,
            counts: Counts::default(),
            hist: latency_histogram(),
            arrived: Counts::default(),
        }
    }

    /// Publishes that publisher `p` has sent.
    pub fn sent(&self, p: usize) -> u64 {
        self.sent[p]
    }

    /// Publishes of publisher `p` not answered yet.
    pub fn unanswered(&self, p: usize) -> u64 {
        self.sent[p] - self.replied[p]
    }

    /// Whether publisher `p`'s message `seq` was sent in the window; false
    /// for a publisher index that is not one (a payload not of this run).
    fn is_measured(&self, p: usize, seq: u64) -> bool {
        let (Some(&first), Some(&last)) = (self.first.get(p), self.last.get(p)) else {
            return false;
        };
        first <= seq && seq <= last
    }

    /// The warm-up is over: publishes from now on are measured.
    pub fn open(&mut self) {
        for (first, &sent) in self.first.iter_mut().zip(&self.sent) {
            *first = sent + 1;
        }
        self.in_window = true;
    }

    /// The window is over: later publishes are not measured.
    pub fn close(&mut self) {
        self.last.copy_from_slice(&self.sent);
        self.in_window = false;
    }

    /// Records publisher `p`'s next publish, meant for `recipients`
    /// clients; returns its seq for the payload.
    pub fn publish(&mut self, p: usize, recipients: u64) -> u64 {
        self.sent[p] += 1;
        let seq = self.sent[p];
        if self.acks {
            if self.is_measured(p, seq) {
                self.unanswered[p].push_back(recipients);
            }
        } else {
            self.arrived.published += 1;
            if self.is_measured(p, seq) {
                self.counts.published += 1;
                self.expected += recipients;
            }
        }
        seq
    }

    /// Publisher `p`'s message `seq`, received `latency_ns` after it was sent.
    pub fn delivered(&mut self, p: usize, seq: u64, latency_ns: u64) {
        self.arrived.delivered += 1;
        if self.is_measured(p, seq) {
            self.counts.delivered += 1;
            let _ = self.hist.record(latency_ns / 1000);
        }
    }

    /// Client `i` had a publish accepted (only protocols with acks).
    pub fn accepted(&mut self, i: usize) {
        self.arrived.published += 1;
        if let Some(recipients) = self.answer(i) {
            self.counts.published += 1;
            self.expected += recipients;
        }
    }

    /// Client `i` got an error reply: the answer to its next publish where
    /// publishes are answered, otherwise counted if it came in the window.
    pub fn rejected(&mut self, i: usize, line: &[u8]) {
        self.arrived.errors += 1;
        if self.arrived.errors <= 5 {
            log::warn!("error reply: {}", String::from_utf8_lossy(line));
        }
        let counts = if self.acks && i < self.sent.len() {
            let refused = self.answer(i).is_some();
            self.refused += u64::from(refused);
            refused
        } else {
            self.in_window
        };
        if counts {
            self.counts.errors += 1;
        }
    }

    /// A client lost its connection; counted if that happened in the window.
    pub fn closed(&mut self) {
        self.arrived.closed += 1;
        if self.in_window {
            self.counts.closed += 1;
        }
    }

    /// Takes publisher `i`'s next reply; the recipients of the publish it
    /// answers if that one is measured.
    fn answer(&mut self, i: usize) -> Option<u64> {
        self.replied[i] += 1;
        if self.is_measured(i, self.replied[i]) {
            self.unanswered[i].pop_front()
        } else {
            None
        }
    }

    /// After `close`: the measured publishes not refused, which each delivery
    /// counted is one of. Once every reply is in, that is `counts.published`;
    /// before, it still bounds deliveries per publish by the recipients.
    pub fn deliverable(&self) -> u64 {
        let sent: u64 = (self.first.iter().zip(&self.last))
            .map(|(&first, &last)| (last + 1).saturating_sub(first))
            .sum();
        sent - self.refused
    }

    /// After `close`: every measured publish is answered (where publishes
    /// are) and every delivery it should make has arrived.
    pub fn settled(&self) -> bool {
        let answered = !self.acks || self.replied.iter().zip(&self.last).all(|(r, l)| r >= l);
        answered && self.counts.delivered >= self.expected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_publishes_sent_in_the_window_count_wherever_their_deliveries_land() {
        let mut m = Measured::new(1, false);
        let warm = m.publish(0, 2);
        m.open();
        let inside = m.publish(0, 2);
        m.close();
        let after = m.publish(0, 2);
        // The warm-up message is delivered late, inside the window.
        m.delivered(0, warm, 5_000);
        m.delivered(0, inside, 7_000);
        assert!(!m.settled());
        // The drain brings the second delivery; the late publish never counts.
        m.delivered(0, inside, 9_000);
        m.delivered(0, after, 1_000);
        assert!(m.settled());
        assert_eq!((m.counts.published, m.counts.delivered), (1, 2));
        assert_eq!(m.deliverable(), 1);
        assert_eq!(m.hist.len(), 2);
        assert_eq!(m.arrived.delivered, 4);
    }

    #[test]
    fn replies_answer_publishes_in_order() {
        let mut m = Measured::new(2, true);
        m.publish(0, 1);
        m.open();
        m.publish(0, 1);
        m.publish(0, 1);
        m.publish(1, 1);
        m.close();
        // Publisher 0's first reply answers its warm-up publish.
        m.rejected(0, b"ERR X");
        assert_eq!(m.counts.errors, 0);
        m.rejected(0, b"ERR X");
        m.accepted(0);
        assert_eq!((m.counts.published, m.counts.errors), (1, 1));
        m.delivered(0, 3, 1);
        // Delivered before its reply: the publish counts for the fan-out.
        m.delivered(1, 1, 1);
        assert_eq!(m.deliverable(), 2);
        assert!(!m.settled(), "publisher 1 is not answered yet");
        m.accepted(1);
        // The rejected publish is expected to reach no one.
        assert!(m.settled());
        assert_eq!((m.counts.published, m.counts.delivered), (2, 2));
    }
}
