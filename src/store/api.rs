//! What the hub and the storage thread say to each other: the writes, the
//! queries and their answers, the snapshot loaded at startup.

use std::time::Duration;

use super::{AuditAction, ConvId, ConvKind, MsgState, RequestState, Seq, StoreError, UserId};
use crate::chat::Change;

/// One row-level change. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// A new account whose id the commit assigns (`--durability sync`).
    Register {
        name: String,
        phc: String,
        created: i64,
    },
    /// An account with an id the hub chose (`--durability async`).
    User {
        id: UserId,
        name: String,
        phc: String,
        created: i64,
    },
    LastSeen {
        user: UserId,
        at: i64,
    },
    /// A conversation with an id the hub chose (`--durability async`).
    Conv {
        id: ConvId,
        kind: ConvKind,
        name: String,
        created: i64,
    },
    /// A conversation whose id the commit assigns (`--durability sync`),
    /// with its first members.
    NewConv(NewConv),
    Member {
        conv: ConvId,
        user: UserId,
        admin: bool,
        joined: i64,
    },
    RemoveMember {
        conv: ConvId,
        user: UserId,
    },
    /// A message with a seq the hub chose (`--durability async`).
    Message(StoredMessage),
    /// A message whose seq the commit assigns (`--durability sync`).
    Post(Post),
    Friendship {
        a: UserId,
        b: UserId,
        since: i64,
    },
    Unfriend {
        a: UserId,
        b: UserId,
    },
    /// Where a user's delivery and read cursors stand in a conversation.
    /// Each merges by maximum with what is stored: a cursor never moves
    /// back, whichever write lands last.
    Cursor {
        user: UserId,
        conv: ConvId,
        delivered: Seq,
        read: Seq,
    },
    /// A joiner's cursors, both at the conversation's last seq as this
    /// transaction sees it (merged by maximum like [`Write::Cursor`]): with
    /// a shared database the joining node's copy may be behind, and the
    /// other nodes take the joiner's start from here.
    JoinCursor {
        user: UserId,
        conv: ConvId,
    },
    /// An attachment body now on disk.
    Blob {
        id: String,
        size: u64,
        mime: String,
    },
    /// Message `seq` of `conv` carries blob `blob`.
    BlobRef {
        conv: ConvId,
        seq: Seq,
        blob: String,
    },
    /// `user` is banned from `conv` (`on`), or no longer.
    Ban {
        conv: ConvId,
        user: UserId,
        on: bool,
    },
    /// `user` is muted in `conv` until a Unix ms time, or (`None`) not.
    Mute {
        conv: ConvId,
        user: UserId,
        until: Option<i64>,
    },
    /// `conv`'s topic, or (`None`) none.
    Topic {
        conv: ConvId,
        text: Option<String>,
    },
    /// An admin's action, for the audit log.
    Audit(AuditRow),
    /// `user`'s pusher `app_id`/`pushkey` at gateway `url`, or (`None`)
    /// removed.
    Pusher {
        user: UserId,
        app_id: String,
        pushkey: String,
        url: Option<String>,
    },
    /// A notification to send (the push thread reads it from the queue).
    Push(PushRow),
    /// `by` blocks `user` (`on`), or unblocks them. Blocking also withdraws
    /// a pending request from `by` to `user`.
    Block {
        by: UserId,
        user: UserId,
        on: bool,
    },
    /// `user` gave (`added`) or took back `reaction` on message `seq`.
    Reaction {
        conv: ConvId,
        seq: Seq,
        user: UserId,
        reaction: String,
        added: bool,
    },
    /// Inserts or updates the request from `from` to `to`.
    Request {
        from: UserId,
        to: UserId,
        state: RequestState,
        at: i64,
    },
    /// A change every node must apply, appended to the change log by the
    /// transaction that makes it (`--bus`), so that a node that missed it on
    /// the bus reads it in commit order ([`super::change_log`]). It assigns the
    /// entry's id. Ids the same commit assigns are filled in: a `Registered`
    /// takes the user id of the request's `Register` before it, a `Founded`
    /// the conversation of its `NewConv`, and a `Changed` sent with
    /// [`Query::Change`] the message as that query left it.
    Log(Box<Change>),
}

impl Write {
    /// Whether the commit assigns this write an id or seq, reported back as
    /// an [`Assigned`].
    /// Whether this write stores a message (STATS counts them).
    pub fn is_message(&self) -> bool {
        matches!(self, Write::Post(_) | Write::Message(_))
    }

    pub fn assigns(&self) -> bool {
        matches!(
            self,
            Write::Register { .. } | Write::NewConv(_) | Write::Post(_) | Write::Log(_)
        )
    }
}

/// What a commit assigned, one per write that [`Write::assigns`], in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assigned {
    User(UserId),
    Conv(ConvId),
    Seq(Seq),
    /// A change log entry's id.
    Log(u64),
}

impl Assigned {
    pub fn user(&self) -> Option<UserId> {
        match *self {
            Assigned::User(user) => Some(user),
            _ => None,
        }
    }

    pub fn conv(&self) -> Option<ConvId> {
        match *self {
            Assigned::Conv(conv) => Some(conv),
            _ => None,
        }
    }

    pub fn seq(&self) -> Option<Seq> {
        match *self {
            Assigned::Seq(seq) => Some(seq),
            _ => None,
        }
    }

    pub fn log(&self) -> Option<u64> {
        match *self {
            Assigned::Log(id) => Some(id),
            _ => None,
        }
    }
}

/// A first member of a conversation founded by [`Write::NewConv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewMember {
    pub user: UserId,
    pub admin: bool,
    pub joined: i64,
}

impl NewMember {
    /// The member row, once the conversation has its id.
    pub fn write(&self, conv: ConvId) -> Write {
        Write::Member {
            conv,
            user: self.user,
            admin: self.admin,
            joined: self.joined,
        }
    }
}

/// A new message whose seq is assigned inside the transaction that stores
/// it: the conversation's next. A commit that fails assigns nothing, so seqs
/// stay gapless, and two writers of one database cannot hand out one seq
/// twice. `blob`: the attachment the message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    pub conv: ConvId,
    pub id: uuid::Uuid,
    pub sender: UserId,
    pub at: i64,
    pub text: String,
    pub blob: Option<String>,
    /// The earlier message of the conversation this one answers.
    pub reply_to: Option<Seq>,
}

/// A new conversation and its first members, before it has its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConv {
    pub kind: ConvKind,
    pub name: String,
    pub created: i64,
    pub members: Vec<NewMember>,
}

impl NewConv {
    /// The rows it becomes once it has id `id`: the conversation, then its
    /// members.
    pub fn writes(&self, id: ConvId) -> Vec<Write> {
        let conv = Write::Conv {
            id,
            kind: self.kind,
            name: self.name.clone(),
            created: self.created,
        };
        std::iter::once(conv)
            .chain(self.members.iter().map(|m| m.write(id)))
            .collect()
    }
}

impl Post {
    /// The rows it becomes once it has its seq: the message, and the blob
    /// it carries if any.
    pub fn writes(&self, seq: Seq) -> Vec<Write> {
        let mut writes = vec![Write::Message(self.stored(seq))];
        if let Some(blob) = &self.blob {
            writes.push(Write::BlobRef {
                conv: self.conv,
                seq,
                blob: blob.clone(),
            });
        }
        writes
    }

    /// The message as stored, once it has its seq.
    pub fn stored(&self, seq: Seq) -> StoredMessage {
        StoredMessage {
            conv: self.conv,
            seq,
            id: self.id,
            sender: self.sender,
            at: self.at,
            text: self.text.clone(),
            state: MsgState::Sent,
            reply_to: self.reply_to,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub conv: ConvId,
    pub seq: Seq,
    pub id: uuid::Uuid,
    pub sender: UserId,
    pub at: i64,
    pub text: String,
    pub state: MsgState,
    pub reply_to: Option<Seq>,
}

impl StoredMessage {
    /// Replaces the text (`Some`, an EDIT) or clears it (`None`, a DELETE);
    /// a deleted message cannot change again (a conflict).
    pub fn change(&mut self, text: Option<&str>) -> Result<(), StoreError> {
        if self.state == MsgState::Deleted {
            return Err(StoreError::Conflict(format!(
                "message {} is deleted",
                self.seq
            )));
        }
        match text {
            Some(t) => {
                self.text = t.to_string();
                self.state = MsgState::Edited;
            }
            None => {
                self.text.clear();
                self.state = MsgState::Deleted;
            }
        }
        Ok(())
    }
}

/// Everything the chat layer rebuilds its tables from at startup.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub users: Vec<UserRow>,
    pub convs: Vec<ConvRow>,
    pub members: Vec<MemberRow>,
    pub friendships: Vec<(UserId, UserId, i64)>,
    pub requests: Vec<RequestRow>,
    /// (user, conv, delivered, read)
    pub cursors: Vec<(UserId, ConvId, Seq, Seq)>,
    /// (conv, seq, user, reaction), in the order they were given.
    pub reactions: Vec<(ConvId, Seq, UserId, String)>,
    /// (by, blocked user)
    pub blocks: Vec<(UserId, UserId)>,
    pub bans: Vec<(ConvId, UserId)>,
    /// (conv, user, until)
    pub mutes: Vec<(ConvId, UserId, i64)>,
    pub topics: Vec<(ConvId, String)>,
    /// Oldest first, the newest `chat::moderation::AUDIT_KEPT` per
    /// conversation.
    pub audit: Vec<AuditRow>,
    /// (user, app id, pushkey, gateway URL)
    pub pushers: Vec<(UserId, String, String, String)>,
    /// The change log's newest entry: everything up to it is in the tables
    /// above.
    pub log_head: u64,
}

/// A notification as queued: what the gateway's request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRow {
    pub user: UserId,
    /// The conversation as the user names it (`#room`, `@sender`).
    pub room: String,
    pub sender: String,
    pub msgid: String,
    /// `high` (direct message or mention) or `low`.
    pub prio: &'static str,
    pub unread: u64,
    /// Unix ms: when it may first be sent.
    pub at: i64,
}

/// One entry of a conversation's audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub conv: ConvId,
    /// Unix ms.
    pub at: i64,
    pub by: UserId,
    pub action: AuditAction,
    pub target: Option<UserId>,
    /// MUTE: until when; TOPIC: the new topic.
    pub detail: Option<String>,
}

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: UserId,
    pub name: String,
    pub phc: String,
    pub last_seen: Option<i64>,
}

#[derive(Debug)]
pub struct ConvRow {
    pub id: ConvId,
    pub kind: ConvKind,
    pub name: String,
    pub last_seq: Seq,
    /// The newest messages, oldest first, at most the recent-buffer size.
    pub recent: Vec<StoredMessage>,
}

#[derive(Debug, Clone)]
pub struct MemberRow {
    pub conv: ConvId,
    pub user: UserId,
    pub admin: bool,
    pub joined: i64,
}

#[derive(Debug, Clone)]
pub struct RequestRow {
    pub from: UserId,
    pub to: UserId,
    pub state: RequestState,
    pub at: i64,
}

/// A read (or a checked change) that needs an answer from the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Newest first: messages with seq below `before`.
    Before {
        conv: ConvId,
        before: Seq,
        limit: usize,
    },
    /// Oldest first: messages with seq above `after`.
    After {
        conv: ConvId,
        after: Seq,
        limit: usize,
    },
    /// Newest first: messages below `before` matching every word.
    Search {
        conv: ConvId,
        words: Vec<String>,
        before: Seq,
        limit: usize,
    },
    /// May `user` fetch blob `blob`: is it in a conversation they belong to?
    /// `NotFound` if not.
    BlobAccess { blob: String, user: UserId },
    /// Replaces the text (`Some`) or deletes (`None`) a message, if it exists
    /// (else `NotFound`) and is not deleted (else `Conflict`). Who may change
    /// it is the hub's rule, checked before it asks.
    Change {
        conv: ConvId,
        seq: Seq,
        text: Option<String>,
    },
    /// Oldest first: change log entries with ids above `after`.
    Log { after: u64, limit: usize },
    /// Where each conversation ends, and `user`'s cursors there (merged by
    /// maximum from every node), in the order asked: where a SYNC on a
    /// node that may have heard neither starts and ends.
    Ends { user: UserId, convs: Vec<ConvId> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Writes only: what the commit assigned to them.
    Done(Vec<Assigned>),
    Messages(Vec<StoredMessage>),
    /// The message as it now is, and the change log entry its change made
    /// (when a [`Write::Log`] came with it).
    Changed {
        msg: StoredMessage,
        logged: Option<u64>,
    },
    /// Change log entries, oldest first.
    Log(Vec<LogEntry>),
    /// One per conversation asked ([`Query::Ends`]).
    Ends(Vec<ConvEnd>),
    /// A blob the asker may fetch.
    Blob {
        size: u64,
        mime: String,
    },
}

/// A conversation's last committed seq, and how far one user's cursors
/// there have got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConvEnd {
    pub last: Seq,
    pub delivered: Seq,
    pub read: Seq,
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub id: u64,
    /// `None`: written by a build that encodes changes differently (logged
    /// and skipped; its id still counts).
    pub change: Option<Change>,
}

/// Writes from one command, an optional query, and what to hand back.
pub struct Request<C> {
    pub writes: Vec<Write>,
    pub query: Option<Query>,
    pub done: Option<C>,
}

impl<C> Request<C> {
    pub fn write(writes: Vec<Write>, done: Option<C>) -> Self {
        Request {
            writes,
            query: None,
            done,
        }
    }

    pub fn query(query: Query, done: C) -> Self {
        Request {
            writes: Vec::new(),
            query: Some(query),
            done: Some(done),
        }
    }
}

/// Each token of one storage round, in submission order, with its answer;
/// `Err` says why its writes are not durable or its query has no answer.
pub struct Committed<C> {
    pub done: Vec<(C, Result<Answer, StoreError>)>,
    /// Messages this round made durable, whether anyone waits for them or not.
    pub messages: u64,
    pub took: Duration,
}
