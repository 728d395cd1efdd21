//! What the other nodes of a cluster must hear of this node's work.
//!
//! With `--bus`, the hub hands the driver a [`Shared`] for each committed
//! change it made (after the commit, never before) and for each typing
//! notice and receipt, which are not stored and travel between nodes only
//! this way. The driver publishes them; another node feeds them back to its
//! hub through [`Hub::remote`], which applies a change with the same
//! [`Hub::apply`] as local commits and tells its own sessions. Messages,
//! this node's and the bus's, reach the tables through the
//! [`super::Sequencer`], which reads what the bus lost from the store;
//! node-wide changes through the `ChangeLog`, which reads it from the
//! store's change log.

use super::changes::{LOG_READ_ROWS, Ready};
use super::output::{Audience, Emit, Event, Progress};
use super::sync::Cursor;
use super::{
    Change, ConvId, Hub, Msg, MsgState, Out, Pending, Posted, Reply, Seq, SessionId, UserId,
};
use crate::store::{Answer, Query, Request, StoredMessage, Write};

/// Messages one read of a conversation's gap asks the store for; a longer
/// gap takes several reads, one after the other.
pub const FILL_ROWS: usize = 256;

/// A fact for the other nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shared {
    /// A committed change. Sessions named in it (origins) are this node's
    /// and mean nothing elsewhere; the bus drops them.
    Change(Change),
    /// A committed node-wide change and its change log entry's id: every
    /// node applies these in id order (`ChangeLog`), reading from the log
    /// what the bus lost.
    Logged { id: u64, change: Change },
    /// `user` is typing in `conv`.
    Typing { conv: ConvId, user: UserId },
    /// `user` has read `conv` up to `seq` (on the node that says so).
    Read {
        conv: ConvId,
        user: UserId,
        seq: Seq,
    },
    /// `reader` has `sender`'s messages of `conv` up to `seq`.
    Receipt {
        conv: ConvId,
        seq: Seq,
        reader: UserId,
        sender: UserId,
        progress: Progress,
    },
}

impl Shared {
    /// The conversation whose nodes need it; `None` for what every node
    /// needs (accounts, friendships, who is in which conversation, and
    /// edits, so the recent messages each node keeps stay right).
    pub fn conv(&self) -> Option<ConvId> {
        match self {
            Shared::Change(Change::Posted { conv, .. })
            | Shared::Typing { conv, .. }
            | Shared::Receipt { conv, .. }
            | Shared::Read { conv, .. } => Some(*conv),
            Shared::Change(_) | Shared::Logged { .. } => None,
        }
    }
}

/// Bus channels to start and stop listening to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Subscriptions {
    pub subscribe: Vec<ConvId>,
    pub unsubscribe: Vec<ConvId>,
}

impl Hub {
    /// Hands what `shared` makes to the driver for the other nodes, when
    /// there are any (made only then: a single node pays nothing).
    pub(super) fn share(&self, shared: impl FnOnce() -> Shared, out: &mut Out) {
        if self.cfg.clustered {
            out.bus.push(shared());
        }
    }

    /// With `--bus`, a node-wide change's writes carry its change log
    /// entry.
    pub(super) fn log_write(&self, writes: &mut Vec<Write>, change: impl FnOnce() -> Change) {
        if self.cfg.clustered {
            writes.push(Write::Log(Box::new(change())));
        }
    }

    /// A node-wide change that has no write of its own (AWAY, a pusher the
    /// gateway rejected) is logged alone, and published once it is.
    pub(super) fn log_alone(&self, change: Change, out: &mut Out) {
        if self.cfg.clustered {
            let write = Write::Log(Box::new(change.clone()));
            out.store
                .push(Request::write(vec![write], Some(Pending::Logged(change))));
        }
    }

    /// A node-wide change of this node's is committed as change log entry
    /// `id` (`None`: no `--bus`): the other nodes hear of it with the id,
    /// and this node counts the entry as applied.
    pub(super) fn logged(&mut self, id: Option<u64>, change: Change, out: &mut Out) {
        let Some(id) = id else {
            return;
        };
        let ready = self.changes.offer(id, None, self.now());
        self.changes_ready(ready, out);
        out.bus.push(Shared::Logged { id, change });
    }

    /// Applies the changes now in order, and reads the log if told to.
    ///
    /// A conversation's members are looked up when events are routed,
    /// after the whole batch: when several changes are applied at once,
    /// each one's events are pinned to the members of its time, so that a
    /// KICK later in the batch does not hide an EDIT before it from the
    /// kicked member.
    fn changes_ready(&mut self, ready: Ready, out: &mut Out) {
        let several = ready.apply.len() > 1;
        for change in ready.apply {
            let from = out.emits.len();
            self.apply(change, out);
            if several {
                self.pin_members(&mut out.emits[from..]);
            }
        }
        if let Some(after) = ready.fetch {
            read_log(after, out);
        }
    }

    /// Turns each event's audience of a conversation's members into those
    /// users, as they are now. (Another node's changes leave out no session
    /// of this node's, so nothing else of the audience is lost.)
    fn pin_members(&self, emits: &mut [Emit]) {
        for emit in emits {
            let Emit::Event(to, _) = emit else {
                continue;
            };
            let Audience::Members {
                conv,
                plus,
                except: None,
            } = *to
            else {
                continue;
            };
            let mut users: Vec<UserId> = self
                .convs
                .get(conv)
                .map_or_else(Vec::new, |c| c.members.iter().map(|m| m.user).collect());
            if let Some(p) = plus.filter(|p| !users.contains(p)) {
                users.push(p);
            }
            *to = Audience::Users(users);
        }
    }

    /// The store's change log entries past this node's position.
    pub(super) fn log_read(&mut self, answer: Answer, out: &mut Out) {
        let entries = match answer {
            Answer::Log(entries) => entries,
            _ => Vec::new(),
        };
        let ready = self.changes.read(entries, self.now());
        self.changes_ready(ready, out);
    }

    /// Reads the change log past this node's position (after the bus
    /// reconnects, and at each position check): what Redis lost.
    pub fn catch_up_changes(&mut self, out: &mut Out) {
        if !self.cfg.clustered {
            return;
        }
        if let Some(after) = self.changes.want(self.now()) {
            read_log(after, out);
        }
    }

    /// A fact another node published.
    pub fn remote(&mut self, shared: Shared, out: &mut Out) {
        self.flush_posts(out);
        match shared {
            Shared::Change(Change::Posted { conv, posts }) => self.sequence(conv, posts, out),
            Shared::Change(change) => self.apply(change, out),
            Shared::Logged { id, change } => {
                let ready = self.changes.offer(id, Some(change), self.now());
                self.changes_ready(ready, out);
            }
            Shared::Typing { conv, user } => {
                let Some(c) = self.convs.get(conv) else {
                    return;
                };
                let others = c.members.iter().map(|m| m.user).filter(|&u| u != user);
                out.event(
                    Audience::Users(others.collect()),
                    Event::Typing { conv, user },
                );
            }
            Shared::Receipt {
                conv,
                seq,
                reader,
                sender,
                progress,
            } => super::sync::tell_receipt(conv, seq, reader, sender, progress, out),
            Shared::Read { conv, user, seq } => self.read_elsewhere(user, conv, seq, None, out),
        }
    }

    /// Whether this node listens to `conv` on the bus (and so has heard
    /// all of it, up to the bus's delay).
    pub(super) fn listens_to(&self, conv: ConvId) -> bool {
        self.subscribed.contains(&conv)
    }

    /// Asks the store for the newest messages of `conv`, which this node
    /// has not listened to, to take as its copy without telling anyone
    /// ([`Hub::warmed`]). Asked in the turn that makes the node listen,
    /// before the subscription's own catch-up read, so that read and the
    /// bus bring only what comes later (for a JOIN elsewhere, one read
    /// later: its joiner's sessions hear nothing live meanwhile).
    pub(super) fn warm(&self, conv: ConvId, joiner: Option<(UserId, Seq)>, out: &mut Out) {
        let query = Query::Before {
            conv,
            before: Seq::MAX,
            limit: self.cfg.recent.max(1),
        };
        out.store
            .push(Request::query(query, Pending::Warmed { conv, joiner }));
    }

    /// `user`, with sessions here, joined `conv` on another node, and this
    /// node does not listen to it. Nothing reaches those sessions live
    /// until the store has said where the JOIN put the user's cursor (where
    /// the conversation ended when it committed) and the copy is warmed:
    /// then they get what was said after the JOIN, and live delivery goes
    /// on from there.
    pub(super) fn joined_elsewhere(&mut self, conv: ConvId, user: UserId, out: &mut Out) {
        for sid in self.sessions_of(user).to_vec() {
            self.streamed.cover(conv, sid, Seq::MAX);
        }
        let query = Query::Ends {
            user,
            convs: vec![conv],
        };
        out.store
            .push(Request::query(query, Pending::JoinedAt { conv, user }));
    }

    /// Where the JOIN elsewhere put the joiner's cursor; the copy is warmed
    /// next.
    pub(super) fn joined_at(&mut self, conv: ConvId, user: UserId, answer: Answer, out: &mut Out) {
        let at = match answer {
            Answer::Ends(ends) => ends.first().map_or(Seq::ZERO, |e| e.delivered),
            _ => Seq::ZERO,
        };
        self.warm(conv, Some((user, at)), out);
    }

    /// What was said in a conversation before this node listened to it is
    /// history, not news: it becomes the node's copy (its recent messages
    /// and last seq) and is delivered to no one. Only sessions that just
    /// arrived can be members here then, and they get it as such: the
    /// JOIN's replay, the LOGIN's SYNC. A `joiner` who joined elsewhere
    /// (with where that JOIN put their cursor) gets what the copy holds
    /// past it, and live delivery from the copy's end.
    pub(super) fn warmed(
        &mut self,
        conv: ConvId,
        joiner: Option<(UserId, Seq)>,
        answer: Answer,
        out: &mut Out,
    ) {
        let recent = self.cfg.recent;
        if let (Answer::Messages(mut msgs), Some(c)) = (answer, self.convs.get_mut(conv)) {
            msgs.sort_by_key(|m| m.seq);
            if let Some(last) = msgs.last().map(|m| m.seq).filter(|&l| l > c.last_seq) {
                let skip = msgs.len().saturating_sub(recent);
                c.recent = msgs.into_iter().skip(skip).map(Msg::from).collect();
                c.last_seq = last;
            }
        }
        let Some((user, at)) = joiner else {
            return;
        };
        // Gone again meanwhile (LEAVE, KICK): nothing to send, and nothing
        // held back from their sessions should they come back.
        let Some(c) = self.convs.get(conv).filter(|c| c.member(user).is_some()) else {
            self.joined_elsewhere_undone(conv, user);
            return;
        };
        let last = c.last_seq;
        let posts: Vec<Posted> = c
            .recent
            .iter()
            .filter(|m| m.seq > at && m.state != MsgState::Deleted)
            .map(|m| Posted {
                origin: None,
                msg: m.clone(),
            })
            .collect();
        let cursor = self.cursors.entry((user, conv)).or_default();
        cursor.delivered = cursor.delivered.max(at);
        cursor.read = cursor.read.max(at);
        for sid in self.sessions_of(user).to_vec() {
            self.streamed.cover(conv, sid, last);
        }
        if !posts.is_empty() {
            let to = Audience::user(user, None);
            let synced = Vec::new();
            out.event(
                to,
                Event::Messages {
                    conv,
                    posts,
                    synced,
                },
            );
        }
    }

    /// A JOIN elsewhere that this node will not complete (undone meanwhile,
    /// or its read failed): the joiner's sessions hear `conv` live again.
    pub(super) fn joined_elsewhere_undone(&mut self, conv: ConvId, user: UserId) {
        for sid in self.sessions_of(user).to_vec() {
            self.streamed.uncover(conv, sid);
        }
    }

    /// A JOIN of a conversation this node does not listen to: the store is
    /// asked for the conversation's newest messages first, and the reply's
    /// replay is made from them when the JOIN commits. Until then, and up
    /// to the replay's last seq, nothing reaches the joiner's session live
    /// ([`super::sync::Streamed`]), so the replay and live delivery meet
    /// without a gap or a repeat, as on one node.
    pub(super) fn join_cold(&mut self, join: ColdJoin, mut writes: Vec<Write>, out: &mut Out) {
        let (sid, conv) = (join.sid, join.conv);
        self.streamed.cover(conv, sid, Seq::MAX);
        self.warm(conv, None, out);
        self.log_write(&mut writes, || join.change.clone());
        let pending = Pending::ColdJoined(Box::new(join));
        out.store.push(Request::write(writes, Some(pending)));
        out.defer(sid);
    }

    /// A cold JOIN committed: its replay is the node's copy as it is now,
    /// the joiner's cursors are at its end, and live delivery to the
    /// session starts after it.
    pub(super) fn cold_joined(&mut self, join: ColdJoin, log: Option<u64>, out: &mut Out) {
        let ColdJoin {
            sid,
            uid,
            conv,
            mut reply,
            events,
            change,
        } = join;
        if let Reply::Joined { replay, .. } = &mut reply {
            *replay = self.replay(conv);
        }
        let last = self.convs.get(conv).map_or(Seq::ZERO, |c| c.last_seq);
        self.streamed.cover(conv, sid, last);
        // In memory only: the JOIN's own write (`Write::JoinCursor`) put the
        // stored cursors at the end its transaction saw, which is no earlier.
        let cursor = Cursor {
            delivered: last,
            read: last,
        };
        self.cursors.insert((uid, conv), cursor);
        self.replied(sid, reply, events, Some(change), log, out);
    }

    /// Committed messages of `conv`, from any source, into the tables in
    /// seq order, each once; a gap is read from the store.
    pub(super) fn sequence(&mut self, conv: ConvId, posts: Vec<Posted>, out: &mut Out) {
        let Some(c) = self.convs.get(conv) else {
            return;
        };
        let now = self.now();
        let offer = self.sequencer.offer(conv, c.last_seq, posts, now);
        if !offer.deliver.is_empty() {
            let posts = offer.deliver;
            self.apply(Change::Posted { conv, posts }, out);
        }
        if let Some(after) = offer.fetch {
            self.read_after(conv, after, out);
        }
    }

    fn read_after(&self, conv: ConvId, after: Seq, out: &mut Out) {
        let query = Query::After {
            conv,
            after,
            limit: FILL_ROWS,
        };
        out.store
            .push(Request::query(query, Pending::Fill { conv }));
    }

    /// The store's messages for a gap or a position check.
    pub(super) fn filled(&mut self, conv: ConvId, answer: Answer, out: &mut Out) {
        self.sequencer.answered(conv);
        let Answer::Messages(msgs) = answer else {
            return;
        };
        let posts = msgs.into_iter().map(stored_post).collect();
        self.sequence(conv, posts, out);
    }

    /// Reads whatever the store has past the last seq delivered in each of
    /// `convs`: after a new subscription, after the bus reconnected, and
    /// periodically for every subscribed conversation (a subscription can
    /// die silently: publishes succeed and nothing arrives).
    pub fn catch_up(&mut self, convs: &[ConvId], out: &mut Out) {
        for &conv in convs {
            if let Some(c) = self.convs.get(conv) {
                self.read_after(conv, c.last_seq, out);
            }
        }
    }

    /// The conversations this node listens to on the bus.
    pub fn subscribed(&self) -> Vec<ConvId> {
        self.subscribed.iter().copied().collect()
    }

    /// Gap reads that went unanswered for too long are asked again.
    pub fn retry_fills(&mut self, out: &mut Out) {
        let now = self.now();
        for conv in self.sequencer.overdue(now) {
            self.sequence(conv, Vec::new(), out);
        }
        if let Some(after) = self.changes.overdue(now) {
            read_log(after, out);
        }
    }

    /// How the channels this node listens to must change: a conversation
    /// is listened to while one of its members is logged in here.
    pub fn subscriptions(&mut self) -> Option<Subscriptions> {
        if self.touched.is_empty() {
            return None;
        }
        let mut change = Subscriptions::default();
        for conv in std::mem::take(&mut self.touched) {
            let wanted = self.members_here.get(&conv).is_some_and(|&n| n > 0);
            if wanted && self.subscribed.insert(conv) {
                change.subscribe.push(conv);
            } else if !wanted && self.subscribed.remove(&conv) {
                self.members_here.remove(&conv);
                change.unsubscribe.push(conv);
            }
        }
        (!change.subscribe.is_empty() || !change.unsubscribe.is_empty()).then_some(change)
    }

    /// `uid` logged in here (`here`: their first session) or out (their
    /// last): each of their conversations has one member more or fewer here.
    /// A conversation this node starts to listen to because of a LOGIN is
    /// warmed first ([`Hub::warm`]): its copy is brought up to date before
    /// the LOGIN's SYNC asks where it ends (so the SYNC streams all that
    /// the warming took as history), and the subscription's catch-up read
    /// has only the rest to read.
    pub(super) fn user_here(&mut self, uid: UserId, here: bool, out: &mut Out) {
        if !self.cfg.clustered {
            return;
        }
        let convs = self.convs_of(uid).to_vec();
        for conv in convs {
            let nobody = self.members_here.get(&conv).is_none_or(|&n| n == 0);
            let cold = here && nobody && !self.listens_to(conv);
            if cold {
                self.warm(conv, None, out);
            }
            self.count_here(conv, here);
        }
    }

    /// `user` joined (`joined`) or left `conv`: counted if logged in here.
    pub(super) fn member_here(&mut self, conv: ConvId, user: UserId, joined: bool) {
        if self.cfg.clustered && self.users.get(user).is_some_and(|u| u.online()) {
            self.count_here(conv, joined);
        }
    }

    fn count_here(&mut self, conv: ConvId, up: bool) {
        let n = self.members_here.entry(conv).or_default();
        *n = if up { *n + 1 } else { n.saturating_sub(1) };
        self.touched.push(conv);
    }

    /// Messages held past gaps, dropped as duplicates, and dropped at the
    /// bound of held ones (STATS).
    pub fn sequencer_counts(&self) -> (usize, u64, u64) {
        let s = &self.sequencer;
        (s.held(), s.duplicates, s.overflow)
    }

    /// Users online on other nodes, as the last presence heartbeat read
    /// (STATS).
    pub fn online_elsewhere(&self) -> usize {
        self.elsewhere.len()
    }

    /// Node-wide changes held past a gap in the change log, dropped as
    /// duplicates, dropped at the bound of held ones, and lost from the log
    /// before this node read them (STATS).
    pub fn change_log_counts(&self) -> (usize, u64, u64, u64) {
        let c = &self.changes;
        (c.held(), c.duplicates, c.overflow, c.lost)
    }
}

/// Asks the store for the change log past entry `after`.
/// A JOIN waiting for its commit, on a conversation this node did not
/// listen to.
#[derive(Debug)]
pub struct ColdJoin {
    pub(super) sid: SessionId,
    pub(super) uid: UserId,
    pub(super) conv: ConvId,
    pub(super) reply: Reply,
    pub(super) events: Vec<Emit>,
    pub(super) change: Change,
}

fn read_log(after: u64, out: &mut Out) {
    let query = Query::Log {
        after,
        limit: LOG_READ_ROWS,
    };
    out.store.push(Request::query(query, Pending::LogRead));
}

fn stored_post(m: StoredMessage) -> Posted {
    Posted {
        origin: None,
        msg: Msg::from(m),
    }
}
