//! Membership changes: JOIN, ADD, LEAVE, KICK and OP, and the moderation
//! that changes what a member may do (`moderation`).
//!
//! One function makes each change to the tables and says who hears of it,
//! whether the change is a command of this node's (which then commits it)
//! or a change record another node committed (applied through
//! [`Hub::apply`]): both change the tables and tell the members alike.

use super::{Audience, ConvId, Emit, Event, Hub, SessionId, UserId};
use crate::store::{AuditAction, Write};

/// A change to who is in a conversation, and who made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// JOIN of a public room.
    Joined {
        user: UserId,
    },
    /// ADD by an admin.
    Added {
        user: UserId,
        by: UserId,
    },
    /// LEAVE.
    Left {
        user: UserId,
    },
    /// KICK by an admin.
    Kicked {
        user: UserId,
        by: UserId,
    },
    /// OP by an admin.
    Opped {
        user: UserId,
        by: UserId,
    },
    /// DEOP by an admin.
    Deopped {
        user: UserId,
        by: UserId,
    },
    /// BAN by an admin: removed if a member, and kept out.
    Banned {
        user: UserId,
        by: UserId,
    },
    Unbanned {
        user: UserId,
        by: UserId,
    },
    /// MUTE by an admin, until a Unix ms time.
    Muted {
        user: UserId,
        by: UserId,
        until: i64,
    },
    Unmuted {
        user: UserId,
        by: UserId,
    },
}

impl Hub {
    /// Makes `change` to `conv`, pushing its storage writes into `writes`,
    /// and returns what the members hear of it: all of them but `except`,
    /// the session that made it (which gets a reply). A change the tables
    /// already show (a member joining again, a non-member leaving) changes
    /// nothing and tells no one, so a change record applied twice is
    /// harmless.
    pub(super) fn change_membership(
        &mut self,
        conv: ConvId,
        change: Membership,
        except: Option<SessionId>,
        writes: &mut Vec<Write>,
    ) -> Vec<Emit> {
        let Some(c) = self.convs.get(conv) else {
            return Vec::new();
        };
        match change {
            Membership::Joined { user } | Membership::Added { user, .. } => {
                if c.member(user).is_some() {
                    return Vec::new();
                }
                self.add_member(conv, user, writes);
                self.member_here(conv, user, true);
                let event = match change {
                    Membership::Added { by, .. } => Event::Added { conv, user, by },
                    _ => Event::Joined { conv, user },
                };
                vec![Emit::Event(Audience::members(conv, except), event)]
            }
            Membership::Banned { user, .. } => {
                let Some(event) = self.moderate(conv, change, writes) else {
                    return Vec::new();
                };
                if self.conv_has_member(conv, user) {
                    self.remove_and_tell(conv, user, event, except, writes)
                } else {
                    vec![Emit::Event(Audience::members(conv, except), event)]
                }
            }
            Membership::Unbanned { .. } | Membership::Muted { .. } | Membership::Unmuted { .. } => {
                let event = self.moderate(conv, change, writes);
                let to = Audience::members(conv, except);
                event.map(|e| Emit::Event(to, e)).into_iter().collect()
            }
            Membership::Left { user } | Membership::Kicked { user, .. } => {
                if c.member(user).is_none() {
                    return Vec::new();
                }
                let event = match change {
                    Membership::Kicked { by, .. } => {
                        self.audit(conv, by, AuditAction::Kick, Some(user), None, writes);
                        Event::Kicked { conv, user, by }
                    }
                    _ => Event::Left { conv, user },
                };
                self.remove_and_tell(conv, user, event, except, writes)
            }
            Membership::Deopped { user, by } => {
                let Some(m) = self
                    .convs
                    .get_mut(conv)
                    .and_then(|c| c.members.iter_mut().find(|m| m.user == user))
                    .filter(|m| m.admin)
                else {
                    return Vec::new();
                };
                m.admin = false;
                writes.push(Write::Member {
                    conv,
                    user,
                    admin: false,
                    joined: m.joined,
                });
                self.audit(conv, by, AuditAction::Deop, Some(user), None, writes);
                let event = Event::Deopped { conv, user, by };
                vec![Emit::Event(Audience::members(conv, except), event)]
            }
            Membership::Opped { user, by } => {
                let Some(m) = self
                    .convs
                    .get_mut(conv)
                    .and_then(|c| c.members.iter_mut().find(|m| m.user == user))
                    .filter(|m| !m.admin)
                else {
                    return Vec::new();
                };
                m.admin = true;
                writes.push(Write::Member {
                    conv,
                    user,
                    admin: true,
                    joined: m.joined,
                });
                self.audit(conv, by, AuditAction::Op, Some(user), None, writes);
                let event = Event::Opped {
                    conv,
                    user,
                    by: Some(by),
                };
                vec![Emit::Event(Audience::members(conv, except), event)]
            }
        }
    }
}

impl Hub {
    pub(super) fn conv_has_member(&self, conv: ConvId, user: UserId) -> bool {
        self.convs
            .get(conv)
            .is_some_and(|c| c.member(user).is_some())
    }

    /// Removes member `user` and tells everyone who was a member, `user`
    /// too, `event`; if no admin is left, the heir is made one and said so.
    fn remove_and_tell(
        &mut self,
        conv: ConvId,
        user: UserId,
        event: Event,
        except: Option<SessionId>,
        writes: &mut Vec<Write>,
    ) -> Vec<Emit> {
        let to = Audience::Members {
            conv,
            plus: Some(user),
            except,
        };
        let mut events = vec![Emit::Event(to, event)];
        self.member_here(conv, user, false);
        if let Some(heir) = self.remove_member(conv, user, writes) {
            let opped = Event::Opped {
                conv,
                user: heir,
                by: None,
            };
            events.push(Emit::Event(Audience::members(conv, None), opped));
        }
        events
    }
}
