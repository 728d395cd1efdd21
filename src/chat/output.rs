//! What the hub says: typed replies and events, addressed to an audience.
//!
//! The hub never writes bytes and never expands a conversation into local
//! sessions. It says *what* happened ([`Event`], [`Reply`]) and *who* should
//! hear it ([`Audience`]); `crate::fanout` finds the sessions on this node and
//! asks each session's codec for the bytes, once per event and viewer form.
//! That keeps the domain ignorant of wire formats (a WebSocket or IRC codec
//! encodes the same values) and of which node a member is on (a second node
//! fans the same event out to its own sessions).

use std::sync::Arc;

use bytes::Bytes;

use super::state::Msg;
use super::types::{AuditAction, ConvId, ConvKind, RequestState, Seq, UserId};
use super::{AuthCtx, BlobCtx, ChatError, Pending, SessionId, Shared};
use crate::protocol::{Lost, ParseError};
use crate::store::AuditRow;
use crate::{auth, blob, store};

/// Who hears an event. Resolved to sessions when it is fanned out, which
/// under `--durability sync` is after the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Every session of every member of `conv`, and of `plus` (a member who
    /// is leaving or kicked by this very change, so still hears of it),
    /// except `except` (the session that made the change, which gets a reply).
    Members {
        conv: ConvId,
        plus: Option<UserId>,
        except: Option<SessionId>,
    },
    /// Every session of `user` except `except`.
    User {
        user: UserId,
        except: Option<SessionId>,
    },
    /// Every session of each of these users (presence watchers, the other
    /// members of a small conversation): one event, encoded once for all.
    Users(Vec<UserId>),
}

impl Audience {
    pub fn members(conv: ConvId, except: Option<SessionId>) -> Self {
        Audience::Members {
            conv,
            plus: None,
            except,
        }
    }

    pub fn user(user: UserId, except: Option<SessionId>) -> Self {
        Audience::User { user, except }
    }
}

/// A message as it is published: with the session that sent it, if that is
/// on this node, which has its own `OK SAY` and does not get it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub origin: Option<SessionId>,
    pub msg: Msg,
}

/// Whether a user is online, and when they were last seen if not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    Online,
    /// Online, but away (AWAY), with the user's text.
    Away(Arc<str>),
    /// Unix ms of the last logout; `None` for never logged in.
    Offline(Option<i64>),
}

/// How far a message got with one reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Progress {
    Sent,
    Delivered,
    Read,
}

/// A change in a friendship, as one side hears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FriendNews {
    /// `other` asks to be friends.
    Request,
    /// This user (on another session) asked `other`.
    Requested,
    Accepted,
    Rejected,
    Removed,
    /// This user (on another session) blocked `other`; only they hear it.
    Blocked,
    Unblocked,
}

/// Something that happened, for everyone in an [`Audience`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Consecutive committed messages of one conversation, oldest first.
    Messages {
        conv: ConvId,
        posts: Vec<Posted>,
        /// Sessions whose SYNC stream carries this conversation through a
        /// seq: they get only the messages after it (`--bus` only; empty,
        /// and unallocated, otherwise).
        synced: Vec<(SessionId, Seq)>,
    },
    Joined {
        conv: ConvId,
        user: UserId,
    },
    Left {
        conv: ConvId,
        user: UserId,
    },
    Added {
        conv: ConvId,
        user: UserId,
        by: UserId,
    },
    Kicked {
        conv: ConvId,
        user: UserId,
        by: UserId,
    },
    Deopped {
        conv: ConvId,
        user: UserId,
        by: UserId,
    },
    Banned {
        conv: ConvId,
        user: UserId,
        by: UserId,
    },
    Unbanned {
        conv: ConvId,
        user: UserId,
        by: UserId,
    },
    /// `user` may not speak in `conv` until `until` (Unix ms).
    Muted {
        conv: ConvId,
        user: UserId,
        by: UserId,
        until: i64,
    },
    Unmuted {
        conv: ConvId,
        user: UserId,
        by: UserId,
    },
    /// `by` set the topic (`None`: cleared it).
    TopicSet {
        conv: ConvId,
        by: UserId,
        topic: Option<Arc<str>>,
    },
    /// `by` is `None` when the server promoted the longest-standing member.
    Opped {
        conv: ConvId,
        user: UserId,
        by: Option<UserId>,
    },
    Edited {
        conv: ConvId,
        msg: Msg,
        by: UserId,
    },
    Deleted {
        conv: ConvId,
        seq: Seq,
        by: UserId,
    },
    /// `reader` has message `seq` (and the sender's earlier ones).
    Receipt {
        conv: ConvId,
        seq: Seq,
        reader: UserId,
        progress: Progress,
    },
    Typing {
        conv: ConvId,
        user: UserId,
    },
    /// `user` added (or took off) `reaction` on message `seq`.
    Reaction {
        conv: ConvId,
        seq: Seq,
        user: UserId,
        reaction: Arc<str>,
        added: bool,
    },
    /// The audience's read cursor in `conv` moved: `unread` messages are
    /// past it now.
    Unread {
        conv: ConvId,
        unread: u64,
    },
    Presence {
        user: UserId,
        presence: Presence,
    },
    Friend {
        news: FriendNews,
        other: UserId,
    },
}

impl Event {
    /// The conversation the event is about, if any: its name is what may
    /// differ between viewers.
    pub fn conv(&self) -> Option<ConvId> {
        match self {
            Event::Messages { conv, .. }
            | Event::Joined { conv, .. }
            | Event::Left { conv, .. }
            | Event::Added { conv, .. }
            | Event::Kicked { conv, .. }
            | Event::Opped { conv, .. }
            | Event::Edited { conv, .. }
            | Event::Deleted { conv, .. }
            | Event::Receipt { conv, .. }
            | Event::Typing { conv, .. }
            | Event::Unread { conv, .. }
            | Event::Deopped { conv, .. }
            | Event::Banned { conv, .. }
            | Event::Unbanned { conv, .. }
            | Event::Muted { conv, .. }
            | Event::Unmuted { conv, .. }
            | Event::TopicSet { conv, .. }
            | Event::Reaction { conv, .. } => Some(*conv),
            Event::Presence { .. } | Event::Friend { .. } => None,
        }
    }
}

/// A member as WHO lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberInfo {
    pub user: UserId,
    pub online: bool,
    pub away: bool,
    pub admin: bool,
}

/// A room or group as ROOMS lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomInfo {
    pub conv: ConvId,
    pub kind: ConvKind,
    pub members: usize,
    pub admin: bool,
}

/// Each reaction on a message with how many users gave it.
pub type ReactionCounts = Vec<(Arc<str>, usize)>;

/// A conversation as INBOX lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxEntry {
    pub conv: ConvId,
    pub kind: ConvKind,
    pub last_seq: Seq,
    /// Messages past the caller's read cursor.
    pub unread: u64,
    /// Those of them that mention the caller.
    pub mentions: u64,
    /// The newest message's time (Unix ms) and sender, if the hub has it.
    pub last: Option<(i64, UserId)>,
}

/// A friend request as FRIEND REQUESTS lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestInfo {
    /// Whether the caller sent it.
    pub outgoing: bool,
    pub other: UserId,
    pub state: RequestState,
    pub at: i64,
}

/// The final answer to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Pong(Option<String>),
    Quit,
    Registered(UserId),
    LoggedIn(UserId),
    /// `replay`: the room's recent messages, which the joiner gets first.
    Joined {
        conv: ConvId,
        created: bool,
        replay: Vec<Msg>,
        topic: Option<Arc<str>>,
    },
    Created(ConvId),
    Left(ConvId),
    Who {
        conv: ConvId,
        members: Vec<MemberInfo>,
        topic: Option<Arc<str>>,
    },
    /// BAN, UNBAN, MUTE (with its end), UNMUTE or DEOP done.
    Moderated {
        conv: ConvId,
        action: AuditAction,
        user: UserId,
        until: Option<i64>,
    },
    /// TOPIC: the topic, when asked for it.
    Topic {
        conv: ConvId,
        topic: Option<Arc<str>>,
    },
    Audit {
        conv: ConvId,
        entries: Vec<AuditRow>,
    },
    Rooms(Vec<RoomInfo>),
    /// AWAY: the text now shown, or `None`: back.
    Away(Option<Arc<str>>),
    /// PUSHER ADD (`added`) or REMOVE done.
    PusherSet {
        app_id: String,
        pushkey: String,
        added: bool,
    },
    Pushers(Vec<super::Pusher>),
    Inbox(Vec<InboxEntry>),
    Added {
        conv: ConvId,
        user: UserId,
    },
    Kicked {
        conv: ConvId,
        user: UserId,
    },
    Opped {
        conv: ConvId,
        user: UserId,
    },
    Said {
        conv: ConvId,
        seq: Seq,
        id: uuid::Uuid,
    },
    Replied {
        conv: ConvId,
        seq: Seq,
        id: uuid::Uuid,
    },
    Attached {
        conv: ConvId,
        seq: Seq,
        id: uuid::Uuid,
        blob: String,
    },
    /// FRIEND ADD: `accepted` when it answered the other's pending request.
    FriendAdded {
        other: UserId,
        accepted: bool,
    },
    FriendAnswered {
        other: UserId,
        accepted: bool,
    },
    FriendRemoved(UserId),
    /// FRIEND BLOCK (`on`) or FRIEND UNBLOCK.
    Blocked {
        other: UserId,
        on: bool,
    },
    BlockList(Vec<UserId>),
    Friends(Vec<(UserId, Presence)>),
    FriendRequests(Vec<RequestInfo>),
    /// Every verb's help (`None`) or one verb's.
    Help(Option<&'static str>),
    /// `reactions`: the counts of those of `msgs` that have any, by seq.
    History {
        conv: ConvId,
        msgs: Vec<Msg>,
        reactions: Vec<(Seq, ReactionCounts)>,
    },
    Reacted {
        conv: ConvId,
        seq: Seq,
        reaction: Arc<str>,
        added: bool,
    },
    /// Who reacted how to a message, in the order they did.
    Reactions {
        conv: ConvId,
        seq: Seq,
        holders: Vec<(UserId, Arc<str>)>,
    },
    Found {
        conv: ConvId,
        msgs: Vec<Msg>,
    },
    Edited {
        conv: ConvId,
        seq: Seq,
    },
    Deleted {
        conv: ConvId,
        seq: Seq,
    },
    Synced(u64),
    Read {
        conv: ConvId,
        seq: Seq,
    },
    /// STATUS: how far message `seq` got with every member but its sender.
    Status {
        conv: ConvId,
        seq: Seq,
        members: Vec<(UserId, Progress)>,
    },
    Typing(ConvId),
    Presence {
        user: UserId,
        presence: Presence,
    },
    Fetched(String),
    Failed(ChatError),
    Refused(ParseError),
    /// The input can no longer be split into lines; the session closes.
    Lost(Lost),
}

/// Part of a streamed answer, before its final [`Reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// A chunk of a SYNC stream: messages of one conversation, which
    /// account for everything up to `upto` (deleted ones are skipped).
    Messages {
        conv: ConvId,
        msgs: Vec<Msg>,
        upto: Seq,
    },
}

/// A piece of a FETCH answer: no event may be written between its pieces
/// and the final answer, or it would land inside the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Header {
        blob: String,
        size: u64,
        mime: String,
    },
    /// Raw file bytes, not protocol text.
    Raw(Bytes),
}

/// What one session must be told or have done, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The answer to the session's current command.
    Reply(Reply),
    /// The current command's answer comes later, through `Complete`. Replies to
    /// later commands wait behind it so answers keep command order.
    Defer,
    /// The answer to the oldest deferred command.
    Complete(Reply),
    /// The final answer of a stream (SYNC), which is the newest deferred
    /// command: no command is read while it runs, but commands before it
    /// may still wait on the disk (a pipelined SAY), and their answers
    /// keep their places ahead of it.
    Finish(Reply),
    /// Part of the answer to the newest deferred command (a SYNC stream);
    /// once written, the driver reports the last seq it carried through
    /// [`super::Hub::delivered`].
    Partial(Part),
    Body(Body),
    /// Close the session once what is queued for it has been written.
    Close,
    /// Answer STATS here: the driver owns the connection-level counters.
    Stats,
}

/// One thing the hub wants said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emit {
    To(SessionId, Output),
    /// A pushed event; not ordered with respect to replies.
    Event(Audience, Event),
}

/// Everything one input made the hub want done.
#[derive(Default)]
pub struct Out {
    pub emits: Vec<Emit>,
    pub auth: Vec<auth::Job<AuthCtx>>,
    pub store: Vec<store::Request<Pending>>,
    pub blobs: Vec<blob::Job<BlobCtx>>,
    /// For the other nodes (`--bus` only).
    pub bus: Vec<Shared>,
}

impl Out {
    pub fn to(&mut self, sid: SessionId, output: Output) {
        self.emits.push(Emit::To(sid, output));
    }
    pub fn reply(&mut self, sid: SessionId, reply: Reply) {
        self.to(sid, Output::Reply(reply));
    }
    pub fn finish(&mut self, sid: SessionId, reply: Reply) {
        self.to(sid, Output::Finish(reply));
    }
    pub fn complete(&mut self, sid: SessionId, reply: Reply) {
        self.to(sid, Output::Complete(reply));
    }
    pub fn defer(&mut self, sid: SessionId) {
        self.to(sid, Output::Defer);
    }
    pub fn fail(&mut self, sid: SessionId, e: ChatError) {
        self.complete(sid, Reply::Failed(e));
    }
    pub fn event(&mut self, to: Audience, event: Event) {
        self.emits.push(Emit::Event(to, event));
    }
    pub fn is_empty(&self) -> bool {
        self.emits.is_empty()
            && self.auth.is_empty()
            && self.store.is_empty()
            && self.blobs.is_empty()
            && self.bus.is_empty()
    }
}
