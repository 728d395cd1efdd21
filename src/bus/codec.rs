//! The bus's wire form: a compact, versioned binary encoding of a
//! [`Shared`] fact with the id of the node that published it.
//!
//! `[version][node: 8 bytes LE][tag][fields]`; integers are LEB128 varints
//! (times zigzag), strings a varint length and UTF-8, message ids 16 bytes.
//! A node drops a message whose version it does not know (counted and
//! logged), so a rolling upgrade that changes the form bumps the version
//! and runs both for a while.

use std::sync::Arc;

use crate::chat::{
    Change, ConvId, ConvKind, FriendChange, Member, Membership, Msg, MsgState, Posted, Progress,
    PusherChange, ReactionChange, Seq, Shared, UserId,
};

/// The version this build writes and reads.
pub const VERSION: u8 = 1;

/// Longest list (members, posts) a message may hold; a longer one is
/// refused as malformed, so a bad message cannot make a node allocate much.
const MAX_LIST: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("bus message version {0}, this node reads {VERSION}")]
    Version(u8),
    #[error("bus message ends early")]
    Short,
    #[error("bus message has an unknown {0} code {1}")]
    Code(&'static str, u64),
    #[error("bus message has a string that is not UTF-8")]
    Utf8,
    #[error("bus message has {0} bytes after its end")]
    Trailing(usize),
}

/// A decoded message: who published it, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub node: u64,
    pub shared: Shared,
}

pub fn encode(node: u64, shared: &Shared) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64));
    w.0.push(VERSION);
    w.0.extend_from_slice(&node.to_le_bytes());
    match shared {
        Shared::Change(change) => w.change(change),
        Shared::Logged { id, change } => {
            w.0.push(LOGGED);
            w.uint(*id);
            w.change(change);
        }
        Shared::Typing { conv, user } => {
            w.0.push(TYPING);
            w.uint(conv.0.into());
            w.uint(user.0.into());
        }
        Shared::Read { conv, user, seq } => {
            w.0.push(READ);
            w.uint(conv.0.into());
            w.uint(user.0.into());
            w.uint(seq.0);
        }
        Shared::Receipt {
            conv,
            seq,
            reader,
            sender,
            progress,
        } => {
            w.0.push(RECEIPT);
            w.uint(conv.0.into());
            w.uint(seq.0);
            w.uint(reader.0.into());
            w.uint(sender.0.into());
            w.0.push(match progress {
                Progress::Sent => 0,
                Progress::Delivered => 1,
                Progress::Read => 2,
            });
        }
    }
    w.0
}

pub fn decode(bytes: &[u8]) -> Result<Envelope, CodecError> {
    let mut r = Reader(bytes);
    let version = r.byte()?;
    if version != VERSION {
        return Err(CodecError::Version(version));
    }
    let node = u64::from_le_bytes(r.take(8)?.try_into().map_err(|_| CodecError::Short)?);
    let shared = match r.byte()? {
        TYPING => Shared::Typing {
            conv: r.conv()?,
            user: r.user()?,
        },
        READ => Shared::Read {
            conv: r.conv()?,
            user: r.user()?,
            seq: Seq(r.uint()?),
        },
        RECEIPT => Shared::Receipt {
            conv: r.conv()?,
            seq: Seq(r.uint()?),
            reader: r.user()?,
            sender: r.user()?,
            progress: match r.byte()? {
                0 => Progress::Sent,
                1 => Progress::Delivered,
                2 => Progress::Read,
                n => return Err(CodecError::Code("progress", n.into())),
            },
        },
        LOGGED => {
            let id = r.uint()?;
            let tag = r.byte()?;
            Shared::Logged {
                id,
                change: r.change(tag)?,
            }
        }
        tag => Shared::Change(r.change(tag)?),
    };
    if !r.0.is_empty() {
        return Err(CodecError::Trailing(r.0.len()));
    }
    Ok(Envelope { node, shared })
}

// Tags: what a message holds.
const REGISTERED: u8 = 1;
const FOUNDED: u8 = 2;
const FRIEND_REQUESTED: u8 = 3;
const FRIEND_ACCEPTED: u8 = 4;
const FRIEND_REJECTED: u8 = 5;
const FRIEND_REMOVED: u8 = 6;
const JOINED: u8 = 7;
const ADDED: u8 = 8;
const LEFT: u8 = 9;
const KICKED: u8 = 10;
const OPPED: u8 = 11;
const CHANGED: u8 = 12;
const POSTED: u8 = 13;
const TYPING: u8 = 14;
const RECEIPT: u8 = 15;
const FRIEND_BLOCKED: u8 = 16;
const DEOPPED: u8 = 17;
const BANNED: u8 = 18;
const UNBANNED: u8 = 19;
const MUTED: u8 = 20;
const UNMUTED: u8 = 21;
const REACTION: u8 = 22;
const TOPIC: u8 = 23;
const READ: u8 = 24;
const AWAY: u8 = 25;
const PUSHER: u8 = 26;
/// A change log entry's id, then the change.
const LOGGED: u8 = 27;

struct Writer(Vec<u8>);

impl Writer {
    fn uint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn int(&mut self, v: i64) {
        self.uint(((v << 1) ^ (v >> 63)) as u64);
    }

    fn str(&mut self, s: &str) {
        self.uint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn pair(&mut self, tag: u8, a: UserId, b: UserId) {
        self.0.push(tag);
        self.uint(a.0.into());
        self.uint(b.0.into());
    }

    fn msg(&mut self, m: &Msg) {
        self.uint(m.seq.0);
        self.0.extend_from_slice(m.id.as_bytes());
        self.uint(m.sender.0.into());
        self.int(m.at);
        self.str(&m.text);
        self.0.push(m.state as u8);
        self.opt_seq(m.reply_to);
    }

    /// 0 for none, else seq + 1 (a seq is never `u64::MAX`).
    fn opt_seq(&mut self, seq: Option<Seq>) {
        self.uint(seq.map_or(0, |s| s.0.saturating_add(1)));
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.0.push(0),
            Some(s) => {
                self.0.push(1);
                self.str(s);
            }
        }
    }

    fn change(&mut self, change: &Change) {
        match change {
            Change::Registered { user, name, phc } => {
                self.0.push(REGISTERED);
                self.uint(user.0.into());
                self.str(name);
                self.str(phc);
            }
            Change::Founded {
                conv,
                kind,
                name,
                members,
            } => {
                self.0.push(FOUNDED);
                self.uint(conv.0.into());
                self.0.push(*kind as u8);
                self.str(name);
                self.uint(members.len() as u64);
                for m in members {
                    self.uint(m.user.0.into());
                    self.0.push(u8::from(m.admin));
                    self.int(m.joined);
                }
            }
            Change::Friendship(f) => match *f {
                FriendChange::Requested { from, to, at } => {
                    self.pair(FRIEND_REQUESTED, from, to);
                    self.int(at);
                }
                FriendChange::Accepted { from, to, at } => {
                    self.pair(FRIEND_ACCEPTED, from, to);
                    self.int(at);
                }
                FriendChange::Rejected { from, to, at } => {
                    self.pair(FRIEND_REJECTED, from, to);
                    self.int(at);
                }
                FriendChange::Removed { by, other } => self.pair(FRIEND_REMOVED, by, other),
                FriendChange::Blocked { by, user, on } => {
                    self.pair(FRIEND_BLOCKED, by, user);
                    self.0.push(u8::from(on));
                }
            },
            Change::Reaction(r) => {
                self.0.push(REACTION);
                self.uint(r.conv.0.into());
                self.uint(r.seq.0);
                self.uint(r.user.0.into());
                self.str(&r.reaction);
                self.0.push(u8::from(r.added));
            }
            Change::Topic { conv, by, topic } => {
                self.0.push(TOPIC);
                self.uint(conv.0.into());
                self.uint(by.0.into());
                self.opt_str(topic.as_deref());
            }
            Change::Away { user, text } => {
                self.0.push(AWAY);
                self.uint(user.0.into());
                self.opt_str(text.as_deref());
            }
            Change::Pusher(p) => {
                self.0.push(PUSHER);
                self.uint(p.user.0.into());
                self.str(&p.app_id);
                self.str(&p.pushkey);
                self.opt_str(p.url.as_deref());
            }
            Change::Membership { conv, change } => {
                let (tag, user, by, until) = match *change {
                    Membership::Joined { user } => (JOINED, user, None, None),
                    Membership::Left { user } => (LEFT, user, None, None),
                    Membership::Added { user, by } => (ADDED, user, Some(by), None),
                    Membership::Kicked { user, by } => (KICKED, user, Some(by), None),
                    Membership::Opped { user, by } => (OPPED, user, Some(by), None),
                    Membership::Deopped { user, by } => (DEOPPED, user, Some(by), None),
                    Membership::Banned { user, by } => (BANNED, user, Some(by), None),
                    Membership::Unbanned { user, by } => (UNBANNED, user, Some(by), None),
                    Membership::Muted { user, by, until } => (MUTED, user, Some(by), Some(until)),
                    Membership::Unmuted { user, by } => (UNMUTED, user, Some(by), None),
                };
                self.0.push(tag);
                self.uint(conv.0.into());
                self.uint(user.0.into());
                if let Some(by) = by {
                    self.uint(by.0.into());
                }
                if let Some(until) = until {
                    self.int(until);
                }
            }
            Change::Changed { conv, msg, by, .. } => {
                self.0.push(CHANGED);
                self.uint(conv.0.into());
                self.msg(msg);
                self.uint(by.0.into());
            }
            Change::Posted { conv, posts } => {
                self.0.push(POSTED);
                self.uint(conv.0.into());
                self.uint(posts.len() as u64);
                for p in posts {
                    self.msg(&p.msg);
                }
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], CodecError> {
        if self.0.len() < n {
            return Err(CodecError::Short);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    fn uint(&mut self) -> Result<u64, CodecError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CodecError::Code("varint", v))
    }

    fn int(&mut self) -> Result<i64, CodecError> {
        let v = self.uint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        let v = self.uint()?;
        u32::try_from(v).map_err(|_| CodecError::Code(what, v))
    }

    fn user(&mut self) -> Result<UserId, CodecError> {
        self.u32("user").map(UserId)
    }

    fn conv(&mut self) -> Result<ConvId, CodecError> {
        self.u32("conversation").map(ConvId)
    }

    fn bool(&mut self) -> Result<bool, CodecError> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            n => Err(CodecError::Code("bool", n.into())),
        }
    }

    fn str(&mut self) -> Result<String, CodecError> {
        let n = self.uint()?;
        let n = usize::try_from(n).map_err(|_| CodecError::Short)?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| CodecError::Utf8)
    }

    fn len(&mut self) -> Result<usize, CodecError> {
        match self.uint()? {
            n if n <= MAX_LIST => Ok(n as usize),
            n => Err(CodecError::Code("list length", n)),
        }
    }

    fn msg(&mut self) -> Result<Msg, CodecError> {
        let seq = Seq(self.uint()?);
        let id = uuid::Uuid::from_bytes(self.take(16)?.try_into().map_err(|_| CodecError::Short)?);
        let sender = self.user()?;
        let at = self.int()?;
        let text: Arc<str> = self.str()?.into();
        let state = match self.byte()? {
            0 => MsgState::Sent,
            1 => MsgState::Edited,
            2 => MsgState::Deleted,
            n => return Err(CodecError::Code("message state", n.into())),
        };
        let reply_to = self.opt_seq()?;
        Ok(Msg {
            seq,
            id,
            sender,
            at,
            text,
            state,
            reply_to,
        })
    }

    fn opt_seq(&mut self) -> Result<Option<Seq>, CodecError> {
        Ok(self.uint()?.checked_sub(1).map(Seq))
    }

    fn opt_str(&mut self) -> Result<Option<String>, CodecError> {
        Ok(if self.bool()? {
            Some(self.str()?)
        } else {
            None
        })
    }

    fn friends(&mut self) -> Result<(UserId, UserId, i64), CodecError> {
        Ok((self.user()?, self.user()?, self.int()?))
    }

    fn change(&mut self, tag: u8) -> Result<Change, CodecError> {
        Ok(match tag {
            REGISTERED => Change::Registered {
                user: self.user()?,
                name: self.str()?,
                phc: self.str()?,
            },
            FOUNDED => {
                let conv = self.conv()?;
                let kind = match self.byte()? {
                    0 => ConvKind::Public,
                    1 => ConvKind::Group,
                    2 => ConvKind::Direct,
                    n => return Err(CodecError::Code("conversation kind", n.into())),
                };
                let name = self.str()?;
                let n = self.len()?;
                let mut members = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    members.push(Member {
                        user: self.user()?,
                        admin: self.bool()?,
                        joined: self.int()?,
                    });
                }
                Change::Founded {
                    conv,
                    kind,
                    name,
                    members,
                }
            }
            FRIEND_REQUESTED => {
                let (from, to, at) = self.friends()?;
                Change::Friendship(FriendChange::Requested { from, to, at })
            }
            FRIEND_ACCEPTED => {
                let (from, to, at) = self.friends()?;
                Change::Friendship(FriendChange::Accepted { from, to, at })
            }
            FRIEND_REJECTED => {
                let (from, to, at) = self.friends()?;
                Change::Friendship(FriendChange::Rejected { from, to, at })
            }
            FRIEND_REMOVED => Change::Friendship(FriendChange::Removed {
                by: self.user()?,
                other: self.user()?,
            }),
            FRIEND_BLOCKED => Change::Friendship(FriendChange::Blocked {
                by: self.user()?,
                user: self.user()?,
                on: self.bool()?,
            }),
            REACTION => Change::Reaction(ReactionChange {
                conv: self.conv()?,
                seq: Seq(self.uint()?),
                user: self.user()?,
                reaction: self.str()?.into(),
                added: self.bool()?,
            }),
            TOPIC => Change::Topic {
                conv: self.conv()?,
                by: self.user()?,
                topic: self.opt_str()?.map(Into::into),
            },
            AWAY => Change::Away {
                user: self.user()?,
                text: self.opt_str()?.map(Into::into),
            },
            PUSHER => Change::Pusher(PusherChange {
                user: self.user()?,
                app_id: self.str()?.into(),
                pushkey: self.str()?.into(),
                url: self.opt_str()?.map(Into::into),
            }),
            JOINED | LEFT => {
                let conv = self.conv()?;
                let user = self.user()?;
                let change = if tag == JOINED {
                    Membership::Joined { user }
                } else {
                    Membership::Left { user }
                };
                Change::Membership { conv, change }
            }
            ADDED | KICKED | OPPED | DEOPPED | BANNED | UNBANNED | MUTED | UNMUTED => {
                let conv = self.conv()?;
                let user = self.user()?;
                let by = self.user()?;
                let change = match tag {
                    ADDED => Membership::Added { user, by },
                    KICKED => Membership::Kicked { user, by },
                    OPPED => Membership::Opped { user, by },
                    DEOPPED => Membership::Deopped { user, by },
                    BANNED => Membership::Banned { user, by },
                    UNBANNED => Membership::Unbanned { user, by },
                    MUTED => Membership::Muted {
                        user,
                        by,
                        until: self.int()?,
                    },
                    _ => Membership::Unmuted { user, by },
                };
                Change::Membership { conv, change }
            }
            CHANGED => Change::Changed {
                conv: self.conv()?,
                msg: self.msg()?,
                by: self.user()?,
                origin: None,
            },
            POSTED => {
                let conv = self.conv()?;
                let n = self.len()?;
                let mut posts = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    posts.push(Posted {
                        origin: None,
                        msg: self.msg()?,
                    });
                }
                Change::Posted { conv, posts }
            }
            n => return Err(CodecError::Code("message", n.into())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn user() -> impl Strategy<Value = UserId> {
        any::<u32>().prop_map(UserId)
    }

    fn conv() -> impl Strategy<Value = ConvId> {
        any::<u32>().prop_map(ConvId)
    }

    fn msg() -> impl Strategy<Value = Msg> {
        (
            any::<u64>(),
            any::<u128>(),
            user(),
            any::<i64>(),
            ".{0,40}",
            0..3u8,
        )
            .prop_map(|(seq, id, sender, at, text, state)| Msg {
                seq: Seq(seq),
                id: uuid::Uuid::from_u128(id),
                sender,
                at,
                text: text.into(),
                state: MsgState::from_code(state.into()),
                reply_to: (seq % 3 == 0).then_some(Seq(seq / 2)),
            })
    }

    fn membership() -> impl Strategy<Value = Membership> {
        prop_oneof![
            user().prop_map(|user| Membership::Joined { user }),
            user().prop_map(|user| Membership::Left { user }),
            (user(), user()).prop_map(|(user, by)| Membership::Added { user, by }),
            (user(), user()).prop_map(|(user, by)| Membership::Kicked { user, by }),
            (user(), user()).prop_map(|(user, by)| Membership::Opped { user, by }),
            (user(), user()).prop_map(|(user, by)| Membership::Deopped { user, by }),
            (user(), user()).prop_map(|(user, by)| Membership::Banned { user, by }),
            (user(), user()).prop_map(|(user, by)| Membership::Unbanned { user, by }),
            (user(), user(), any::<i64>()).prop_map(|(user, by, until)| Membership::Muted {
                user,
                by,
                until
            }),
            (user(), user()).prop_map(|(user, by)| Membership::Unmuted { user, by }),
        ]
    }

    fn friendship() -> impl Strategy<Value = FriendChange> {
        prop_oneof![
            (user(), user(), any::<i64>()).prop_map(|(from, to, at)| FriendChange::Requested {
                from,
                to,
                at
            }),
            (user(), user(), any::<i64>()).prop_map(|(from, to, at)| FriendChange::Accepted {
                from,
                to,
                at
            }),
            (user(), user(), any::<i64>()).prop_map(|(from, to, at)| FriendChange::Rejected {
                from,
                to,
                at
            }),
            (user(), user()).prop_map(|(by, other)| FriendChange::Removed { by, other }),
            (user(), user(), any::<bool>()).prop_map(|(by, user, on)| FriendChange::Blocked {
                by,
                user,
                on
            }),
        ]
    }

    fn change() -> impl Strategy<Value = Change> {
        let member =
            (user(), any::<bool>(), any::<i64>()).prop_map(|(user, admin, joined)| Member {
                user,
                admin,
                joined,
            });
        prop_oneof![
            (user(), "[a-z]{1,8}", ".{0,20}").prop_map(|(user, name, phc)| Change::Registered {
                user,
                name,
                phc
            }),
            (
                conv(),
                0..3u8,
                ".{0,10}",
                prop::collection::vec(member, 0..4)
            )
                .prop_map(|(conv, kind, name, members)| Change::Founded {
                    conv,
                    kind: ConvKind::from_code(kind.into()),
                    name,
                    members,
                }),
            friendship().prop_map(Change::Friendship),
            (conv(), any::<u64>(), user(), "[a-z]{1,8}", any::<bool>()).prop_map(
                |(conv, seq, user, reaction, added)| Change::Reaction(ReactionChange {
                    conv,
                    seq: Seq(seq),
                    user,
                    reaction: reaction.into(),
                    added,
                })
            ),
            (conv(), user(), prop::option::of(".{0,20}")).prop_map(|(conv, by, topic)| {
                Change::Topic {
                    conv,
                    by,
                    topic: topic.map(Into::into),
                }
            }),
            (user(), prop::option::of(".{0,20}")).prop_map(|(user, text)| Change::Away {
                user,
                text: text.map(Into::into),
            }),
            (
                user(),
                "[a-z.]{1,10}",
                "[^ ]{1,10}",
                prop::option::of("[^ ]{1,20}")
            )
                .prop_map(|(user, app_id, pushkey, url)| Change::Pusher(
                    PusherChange {
                        user,
                        app_id: app_id.into(),
                        pushkey: pushkey.into(),
                        url: url.map(Into::into),
                    }
                )),
            (conv(), membership()).prop_map(|(conv, change)| Change::Membership { conv, change }),
            (conv(), msg(), user()).prop_map(|(conv, msg, by)| Change::Changed {
                conv,
                msg,
                by,
                origin: None,
            }),
            (conv(), prop::collection::vec(msg(), 0..4)).prop_map(|(conv, msgs)| {
                let posts = msgs
                    .into_iter()
                    .map(|msg| Posted { origin: None, msg })
                    .collect();
                Change::Posted { conv, posts }
            }),
        ]
    }

    fn shared() -> impl Strategy<Value = Shared> {
        prop_oneof![
            change().prop_map(Shared::Change),
            (any::<u64>(), change()).prop_map(|(id, change)| Shared::Logged { id, change }),
            (conv(), user()).prop_map(|(conv, user)| Shared::Typing { conv, user }),
            (conv(), user(), any::<u64>()).prop_map(|(conv, user, seq)| Shared::Read {
                conv,
                user,
                seq: Seq(seq)
            }),
            (conv(), any::<u64>(), user(), user(), 0..3u8).prop_map(
                |(conv, seq, reader, sender, p)| Shared::Receipt {
                    conv,
                    seq: Seq(seq),
                    reader,
                    sender,
                    progress: [Progress::Sent, Progress::Delivered, Progress::Read][p as usize],
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(node in any::<u64>(), shared in shared()) {
            let bytes = encode(node, &shared);
            prop_assert_eq!(decode(&bytes), Ok(Envelope { node, shared }));
        }

        /// Any prefix of a message is refused, never misread or a panic.
        #[test]
        fn truncated_is_refused(node in any::<u64>(), shared in shared(), cut in any::<prop::sample::Index>()) {
            let bytes = encode(node, &shared);
            let cut = cut.index(bytes.len());
            prop_assert!(decode(&bytes[..cut]).is_err());
        }

        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn origins_stay_on_their_node() {
        let posted = Change::Posted {
            conv: ConvId(3),
            posts: vec![Posted {
                origin: Some(crate::chat::SessionId(9)),
                msg: Msg {
                    seq: Seq(1),
                    id: uuid::Uuid::from_u128(1),
                    sender: UserId(2),
                    at: 5,
                    text: "hi".into(),
                    state: MsgState::Sent,
                    reply_to: None,
                },
            }],
        };
        let decoded = decode(&encode(7, &Shared::Change(posted))).unwrap();
        let Shared::Change(Change::Posted { posts, .. }) = decoded.shared else {
            panic!("not a post: {decoded:?}");
        };
        assert_eq!(posts[0].origin, None);
    }

    #[test]
    fn other_versions_are_refused() {
        let mut bytes = encode(
            1,
            &Shared::Typing {
                conv: ConvId(1),
                user: UserId(1),
            },
        );
        bytes[0] = VERSION + 1;
        assert_eq!(decode(&bytes), Err(CodecError::Version(VERSION + 1)));
    }
}
