//! Committed changes, applied to the in-memory tables.
//!
//! A [`Change`] is a fact the store has already made durable, with the ids
//! and seqs the commit gave it. The hub applies its own commits through
//! [`Hub::apply`], and a second node's commits, fed to it off the bus, go
//! through the same code: the tables and the events its sessions hear cannot
//! differ by where a change was made.

use super::friends::FriendChange;
use super::membership::Membership;
use super::push::PusherChange;
use super::reactions::ReactionChange;
use super::{Audience, Conv, Event, Hub, Member, Msg, Out, Posted, SessionId, User};
use super::{ConvId, ConvKind, MsgState, UserId, pair};
use crate::store::AuditAction;

/// A committed change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new account.
    Registered {
        user: UserId,
        name: String,
        phc: String,
    },
    /// A new conversation with its first members.
    Founded {
        conv: ConvId,
        kind: ConvKind,
        name: String,
        members: Vec<Member>,
    },
    /// A change to a friendship.
    Friendship(FriendChange),
    /// A change to who is in a conversation.
    Membership { conv: ConvId, change: Membership },
    /// A message edited or deleted (`msg` as it now is) by `by`, from
    /// `origin` if that session is on this node (it has its own answer).
    Changed {
        conv: ConvId,
        msg: Msg,
        by: UserId,
        origin: Option<SessionId>,
    },
    /// A reaction added to or taken off a message.
    Reaction(ReactionChange),
    /// A pusher registered or removed.
    Pusher(PusherChange),
    /// `user` is away with this text, or (`None`) back.
    Away {
        user: UserId,
        text: Option<std::sync::Arc<str>>,
    },
    /// `by` set `conv`'s topic, or cleared it.
    Topic {
        conv: ConvId,
        by: UserId,
        topic: Option<std::sync::Arc<str>>,
    },
    /// Consecutive messages of one conversation, oldest first, each with
    /// the seq its commit assigned and the session that sent it if that
    /// session is on this node.
    Posted { conv: ConvId, posts: Vec<Posted> },
}

impl Hub {
    /// Applies a committed change and tells the local sessions concerned.
    pub fn apply(&mut self, change: Change, out: &mut Out) {
        match change {
            // Known already: heard from the bus and read from the store at
            // startup (or published twice).
            Change::Registered { user, .. } if self.users.get(user).is_some() => {}
            Change::Founded { conv, .. } if self.convs.get(conv).is_some() => {}
            Change::Registered { user, name, phc } => {
                self.by_name.insert(name.as_str().into(), user);
                self.users.insert(user, User::new(name, phc, None));
            }
            Change::Founded {
                conv,
                kind,
                name,
                members,
            } => {
                match (kind, &members[..]) {
                    (ConvKind::Direct, [a, b]) => {
                        self.directs.insert(pair(a.user, b.user), conv);
                    }
                    (ConvKind::Direct, _) => {}
                    _ => {
                        self.rooms.insert(name.clone(), conv);
                    }
                }
                for m in &members {
                    if let Some(u) = self.users.get_mut(m.user) {
                        u.convs.push(conv);
                    }
                }
                for m in &members {
                    self.member_here(conv, m.user, true);
                }
                let mut c = Conv::new(conv, kind, name);
                c.members = members;
                self.convs.insert(conv, c);
            }
            Change::Friendship(change) => self.apply_friend_change(change, out),
            Change::Reaction(change) => self.apply_reaction(change, out),
            Change::Topic { conv, by, topic } => self.apply_topic(conv, by, topic, out),
            Change::Pusher(change) => self.apply_pusher(change),
            Change::Away { user, text } => {
                self.set_away(user, text, out);
            }
            Change::Membership { conv, change } => {
                // A member who joined elsewhere, with sessions here, makes
                // this node listen: what was said before is not news to
                // them here either.
                if let Membership::Joined { user } | Membership::Added { user, .. } = change {
                    let here = self.users.get(user).is_some_and(|u| u.online());
                    // Heard twice (the bus and the log), it acts once.
                    let new = !self.conv_has_member(conv, user);
                    if here && new && self.cfg.clustered && !self.listens_to(conv) {
                        self.joined_elsewhere(conv, user, out);
                    }
                }
                // The writes were made where the change was committed.
                let events = self.change_membership(conv, change, None, &mut Vec::new());
                out.emits.extend(events);
            }
            Change::Changed {
                conv,
                msg,
                by,
                origin,
            } => {
                let Some(c) = self.convs.get_mut(conv) else {
                    return;
                };
                if let Some(r) = c.recent_msg_mut(msg.seq) {
                    r.text = msg.text.clone();
                    r.state = msg.state;
                }
                let event = if msg.state == MsgState::Deleted {
                    let seq = msg.seq;
                    // An admin deleting another's message is moderation,
                    // and goes in the audit log (stored by the node that
                    // did it).
                    if by != msg.sender {
                        let mut writes = Vec::new();
                        let (target, detail) = (Some(msg.sender), Some(seq.to_string()));
                        self.audit(conv, by, AuditAction::Delete, target, detail, &mut writes);
                        if origin.is_some() {
                            self.persist(writes, out);
                        }
                    }
                    Event::Deleted { conv, seq, by }
                } else {
                    Event::Edited { conv, msg, by }
                };
                out.event(Audience::members(conv, origin), event);
            }
            Change::Posted { conv, posts } => {
                let recent = self.cfg.recent;
                let Some(c) = self.convs.get_mut(conv) else {
                    return;
                };
                for p in &posts {
                    c.last_seq = c.last_seq.max(p.msg.seq);
                    if recent > 0 {
                        if c.recent.len() >= recent {
                            c.recent.pop_front();
                        }
                        c.recent.push_back(p.msg.clone());
                    }
                }
                let synced = self.streamed.skips(conv);
                self.streamed.applied(conv, c.last_seq);
                out.event(
                    Audience::members(conv, None),
                    Event::Messages {
                        conv,
                        posts,
                        synced,
                    },
                );
            }
        }
    }
}
