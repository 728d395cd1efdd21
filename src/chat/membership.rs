//! Membership changes: JOIN, ADD, LEAVE, KICK and OP.
//!
//! One function makes each change to the tables and says who hears of it,
//! whether the change is a command of this node's (which then commits it)
//! or a change record another node committed (applied through
//! [`Hub::apply`]): both change the tables and tell the members alike.

use super::{Audience, ConvId, Emit, Event, Hub, SessionId, UserId};
use crate::store::Write;

/// A change to who is in a conversation, and who made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// JOIN of a public room.
    Joined { user: UserId },
    /// ADD by an admin.
    Added { user: UserId, by: UserId },
    /// LEAVE.
    Left { user: UserId },
    /// KICK by an admin.
    Kicked { user: UserId, by: UserId },
    /// OP by an admin.
    Opped { user: UserId, by: UserId },
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
            Membership::Left { user } | Membership::Kicked { user, .. } => {
                if c.member(user).is_none() {
                    return Vec::new();
                }
                // Everyone who was a member hears it, the one leaving too.
                let to = Audience::Members {
                    conv,
                    plus: Some(user),
                    except,
                };
                let event = match change {
                    Membership::Kicked { by, .. } => Event::Kicked { conv, user, by },
                    _ => Event::Left { conv, user },
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
