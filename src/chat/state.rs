//! The in-memory tables: the hot path that every command reads.

use std::collections::VecDeque;

use super::SessionId;
use super::types::{ConvId, ConvKind, MsgState, Seq, UserId};
use crate::store::StoredMessage;

#[derive(Debug)]
pub struct User {
    // Boxed strings: no spare capacity, 8 bytes less each, per account.
    pub name: Box<str>,
    pub phc: Box<str>,
    /// Open sessions, in login order. Online while non-empty.
    pub sessions: Vec<SessionId>,
    /// Conversations this user is a member of.
    pub convs: Vec<ConvId>,
    /// Unix ms of the last logout; `None` for never logged in.
    pub last_seen: Option<i64>,
    /// AWAY's text while the user is away; cleared when they go offline.
    pub away: Option<std::sync::Arc<str>>,
}

impl User {
    pub fn new(name: String, phc: String, last_seen: Option<i64>) -> Self {
        User {
            name: name.into_boxed_str(),
            phc: phc.into_boxed_str(),
            sessions: Vec::new(),
            convs: Vec::new(),
            last_seen,
            away: None,
        }
    }

    pub fn online(&self) -> bool {
        !self.sessions.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub user: UserId,
    pub admin: bool,
    /// Unix ms when the user joined; members are kept in this order.
    pub joined: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub seq: Seq,
    pub id: uuid::Uuid,
    pub sender: UserId,
    /// Unix ms.
    pub at: i64,
    pub text: std::sync::Arc<str>,
    pub state: MsgState,
    /// The earlier message of the conversation this one answers.
    pub reply_to: Option<Seq>,
}

impl From<StoredMessage> for Msg {
    fn from(m: StoredMessage) -> Self {
        Msg {
            seq: m.seq,
            id: m.id,
            sender: m.sender,
            at: m.at,
            text: m.text.into(),
            state: m.state,
            reply_to: m.reply_to,
        }
    }
}

#[derive(Debug)]
pub struct Conv {
    pub id: ConvId,
    pub kind: ConvKind,
    /// `#name` for rooms and groups; an internal key for direct conversations.
    pub name: String,
    /// Members in the order they joined; the first is the longest-standing.
    pub members: Vec<Member>,
    /// Seq of the newest message (0 before the first).
    pub last_seq: Seq,
    /// The newest messages, oldest first.
    pub recent: VecDeque<Msg>,
    /// Topic, bans, mutes and the audit log; boxed, since most
    /// conversations never have any.
    pub moderation: Option<Box<super::moderation::Moderation>>,
}

impl Conv {
    pub fn new(id: ConvId, kind: ConvKind, name: String) -> Self {
        Conv {
            id,
            kind,
            name,
            members: Vec::new(),
            last_seq: Seq::ZERO,
            recent: VecDeque::new(),
            moderation: None,
        }
    }

    pub fn member(&self, user: UserId) -> Option<&Member> {
        self.members.iter().find(|m| m.user == user)
    }

    pub fn is_admin(&self, user: UserId) -> bool {
        self.member(user).is_some_and(|m| m.admin)
    }

    /// Position of message `seq` in the recent buffer. Seqs there are
    /// consecutive, but a failed commit can leave a gap, hence the check.
    fn recent_index(&self, seq: Seq) -> Option<usize> {
        let first = self.recent.front()?.seq;
        let idx = usize::try_from(seq.0.checked_sub(first.0)?).ok()?;
        match self.recent.get(idx) {
            Some(m) if m.seq == seq => Some(idx),
            _ => self.recent.iter().position(|m| m.seq == seq),
        }
    }

    /// The in-memory copy of message `seq`, if it is still in the recent buffer.
    pub fn recent_msg(&self, seq: Seq) -> Option<&Msg> {
        self.recent_index(seq).map(|i| &self.recent[i])
    }

    pub fn recent_msg_mut(&mut self, seq: Seq) -> Option<&mut Msg> {
        self.recent_index(seq).map(|i| &mut self.recent[i])
    }

    /// The recent messages with seq above `after` and at most `upto`, oldest
    /// first: found by binary search (seqs ascend), since receipts ask for
    /// a few new messages after every delivery.
    pub fn recent_between(&self, after: Seq, upto: Seq) -> impl Iterator<Item = &Msg> {
        let start = self.recent.partition_point(|m| m.seq <= after);
        self.recent
            .range(start..)
            .take_while(move |m| m.seq <= upto)
    }

    /// Whether every message from `from` to the newest is in memory.
    pub fn recent_covers(&self, from: Seq) -> bool {
        let from = from.max(Seq(1));
        match self.recent.front() {
            Some(first) => first.seq <= from,
            None => self.last_seq < from,
        }
    }
}
