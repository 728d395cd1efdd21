//! BAN, UNBAN, MUTE, UNMUTE, DEOP, TOPIC and AUDIT: what a room's admins
//! have against abuse, and the record of what they did.
//!
//! [`Moderation`] holds one conversation's topic, bans, mutes and newest
//! audit entries, and its rules. The changes themselves are
//! [`Membership`] changes (or a [`Change::Topic`]), so a node applies
//! another's exactly as it makes its own: the tables, the events and the
//! audit entry come from the same code.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use super::membership::Membership;
use super::{
    Audience, Change, ChatError, ConvId, ConvKind, Emit, Event, Hub, Out, Reply, SessionId, UserId,
    names,
};
use crate::store::{AuditAction, AuditRow, Write};

/// Audit entries each conversation keeps in memory, the most AUDIT lists.
pub const AUDIT_KEPT: usize = 100;
/// AUDIT's page when no count is given.
pub const AUDIT_DEFAULT: usize = 50;
/// The longest MUTE: a year, in minutes.
pub const MUTE_MAX_MINUTES: u64 = 525_600;
/// A topic's length limit, in bytes.
pub const TOPIC_MAX: usize = 300;

#[derive(Debug, Default)]
pub struct Moderation {
    pub topic: Option<Arc<str>>,
    banned: BTreeSet<UserId>,
    /// Until when (Unix ms) each muted member is muted.
    muted: BTreeMap<UserId, i64>,
    /// The newest entries, oldest first.
    audit: VecDeque<AuditRow>,
}

impl Moderation {
    pub fn is_banned(&self, user: UserId) -> bool {
        self.banned.contains(&user)
    }

    /// Until when `user` is muted, if that is still ahead of `now`.
    pub fn muted_until(&self, user: UserId, now: i64) -> Option<i64> {
        self.muted.get(&user).copied().filter(|&until| until > now)
    }

    fn record(&mut self, entry: AuditRow) {
        if self.audit.len() == AUDIT_KEPT {
            self.audit.pop_front();
        }
        self.audit.push_back(entry);
    }

    /// The newest `n` entries, oldest first.
    fn newest(&self, n: usize) -> Vec<AuditRow> {
        let skip = self.audit.len().saturating_sub(n);
        self.audit.iter().skip(skip).cloned().collect()
    }
}

/// What the store loaded for the moderation tables.
pub struct Loaded {
    pub bans: Vec<(ConvId, UserId)>,
    pub mutes: Vec<(ConvId, UserId, i64)>,
    pub topics: Vec<(ConvId, String)>,
    /// Oldest first, at most [`AUDIT_KEPT`] per conversation.
    pub audit: Vec<AuditRow>,
}

impl Hub {
    fn moderation(&self, conv: ConvId) -> Option<&Moderation> {
        self.convs.get(conv)?.moderation.as_deref()
    }

    pub(super) fn moderation_mut(&mut self, conv: ConvId) -> Option<&mut Moderation> {
        let c = self.convs.get_mut(conv)?;
        Some(c.moderation.get_or_insert_with(Box::default))
    }

    pub(super) fn load_moderation(&mut self, loaded: Loaded) {
        for (conv, user) in loaded.bans {
            if let Some(m) = self.moderation_mut(conv) {
                m.banned.insert(user);
            }
        }
        for (conv, user, until) in loaded.mutes {
            if let Some(m) = self.moderation_mut(conv) {
                m.muted.insert(user, until);
            }
        }
        for (conv, topic) in loaded.topics {
            if let Some(m) = self.moderation_mut(conv) {
                m.topic = Some(topic.into());
            }
        }
        for row in loaded.audit {
            if let Some(m) = self.moderation_mut(row.conv) {
                m.record(row);
            }
        }
    }

    pub(super) fn is_banned(&self, conv: ConvId, user: UserId) -> bool {
        self.moderation(conv).is_some_and(|m| m.is_banned(user))
    }

    pub(super) fn topic(&self, conv: ConvId) -> Option<Arc<str>> {
        self.moderation(conv)?.topic.clone()
    }

    /// Refuses `uid` speaking (SAY, REPLY, ATTACH, REACT) in `conv` while
    /// muted there.
    pub(super) fn check_not_muted(&self, uid: UserId, conv: ConvId) -> Result<(), ChatError> {
        let now = self.now();
        match self.moderation(conv).and_then(|m| m.muted_until(uid, now)) {
            Some(until) => Err(ChatError::Muted {
                room: self.conv(conv)?.name.clone(),
                until,
            }),
            None => Ok(()),
        }
    }

    /// Notes an admin's action in `conv`'s audit log, and in storage through
    /// `writes` when this node made it.
    pub(super) fn audit(
        &mut self,
        conv: ConvId,
        by: UserId,
        action: AuditAction,
        target: Option<UserId>,
        detail: Option<String>,
        writes: &mut Vec<Write>,
    ) {
        let row = AuditRow {
            conv,
            at: self.now(),
            by,
            action,
            target,
            detail,
        };
        writes.push(Write::Audit(row.clone()));
        if let Some(m) = self.moderation_mut(conv) {
            m.record(row);
        }
    }

    /// Applies a moderation change to the tables (bans, mutes), pushing its
    /// writes and its audit entry; returns the event the members hear, or
    /// `None` if the tables already show it. A ban's removal of a member is
    /// done by the caller (`change_membership`), as for KICK.
    pub(super) fn moderate(
        &mut self,
        conv: ConvId,
        change: Membership,
        writes: &mut Vec<Write>,
    ) -> Option<Event> {
        let (user, by) = match change {
            Membership::Banned { user, by }
            | Membership::Unbanned { user, by }
            | Membership::Muted { user, by, .. }
            | Membership::Unmuted { user, by } => (user, by),
            _ => return None,
        };
        let m = self.moderation_mut(conv)?;
        let (event, write, action, detail) = match change {
            Membership::Banned { .. } => {
                if !m.banned.insert(user) {
                    return None;
                }
                let write = Write::Ban {
                    conv,
                    user,
                    on: true,
                };
                (
                    Event::Banned { conv, user, by },
                    write,
                    AuditAction::Ban,
                    None,
                )
            }
            Membership::Unbanned { .. } => {
                if !m.banned.remove(&user) {
                    return None;
                }
                let write = Write::Ban {
                    conv,
                    user,
                    on: false,
                };
                let event = Event::Unbanned { conv, user, by };
                (event, write, AuditAction::Unban, None)
            }
            Membership::Muted { until, .. } => {
                m.muted.insert(user, until);
                let write = Write::Mute {
                    conv,
                    user,
                    until: Some(until),
                };
                let detail = Some(crate::protocol::ms_to_time(until));
                let event = Event::Muted {
                    conv,
                    user,
                    by,
                    until,
                };
                (event, write, AuditAction::Mute, detail)
            }
            _ => {
                m.muted.remove(&user)?;
                let write = Write::Mute {
                    conv,
                    user,
                    until: None,
                };
                let event = Event::Unmuted { conv, user, by };
                (event, write, AuditAction::Unmute, None)
            }
        };
        writes.push(write);
        self.audit(conv, by, action, Some(user), detail, writes);
        Some(event)
    }

    /// The admin commands of this module that change who may do what:
    /// BAN, UNBAN, MUTE, UNMUTE and DEOP.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn moderation_command(
        &mut self,
        sid: SessionId,
        uid: UserId,
        room: &str,
        who: &str,
        action: AuditAction,
        minutes: Option<u64>,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        let (conv, name) = self.admin_room(uid, room)?;
        let target = self.find_user(who)?;
        let target_name = self.name(target).to_string();
        if target == uid && action != AuditAction::Deop {
            return Err(ChatError::SelfTarget);
        }
        let c = self.conv(conv)?;
        let now = self.now();
        let member = c.member(target).copied();
        let change = match action {
            AuditAction::Ban => {
                if self.is_banned(conv, target) {
                    return Err(ChatError::AlreadyBanned(target_name, name));
                }
                Membership::Banned {
                    user: target,
                    by: uid,
                }
            }
            AuditAction::Unban => {
                if !self.is_banned(conv, target) {
                    return Err(ChatError::NotBanned(target_name, name));
                }
                Membership::Unbanned {
                    user: target,
                    by: uid,
                }
            }
            AuditAction::Mute => {
                if member.is_none() {
                    return Err(ChatError::TargetNotMember(target_name, name));
                }
                let minutes = minutes.unwrap_or(0);
                if !(1..=MUTE_MAX_MINUTES).contains(&minutes) {
                    return Err(ChatError::BadMinutes(MUTE_MAX_MINUTES));
                }
                let until = now.saturating_add(i64::try_from(minutes * 60_000).unwrap_or(i64::MAX));
                Membership::Muted {
                    user: target,
                    by: uid,
                    until,
                }
            }
            AuditAction::Unmute => {
                if self
                    .moderation(conv)
                    .and_then(|m| m.muted_until(target, now))
                    .is_none()
                {
                    return Err(ChatError::NotMuted(target_name, name));
                }
                Membership::Unmuted {
                    user: target,
                    by: uid,
                }
            }
            _ => {
                let Some(member) = member else {
                    return Err(ChatError::TargetNotMember(target_name, name));
                };
                if !member.admin {
                    return Err(ChatError::TargetNotAdmin(target_name, name));
                }
                if c.members.iter().filter(|m| m.admin).count() == 1 {
                    return Err(ChatError::LastAdmin(name));
                }
                Membership::Deopped {
                    user: target,
                    by: uid,
                }
            }
        };
        let mut writes = Vec::new();
        let events = self.change_membership(conv, change, Some(sid), &mut writes);
        let until = match change {
            Membership::Muted { until, .. } => Some(until),
            _ => None,
        };
        let reply = Reply::Moderated {
            conv,
            action,
            user: target,
            until,
        };
        let change = Change::Membership { conv, change };
        self.commit(sid, writes, reply, events, change, out);
        Ok(())
    }

    /// TOPIC #room: shows the topic; with text, an admin sets it (`-`
    /// clears it).
    pub(super) fn topic_command(
        &mut self,
        sid: SessionId,
        uid: UserId,
        room: &str,
        text: Option<&str>,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        let Some(text) = text else {
            let conv = self.visible_room(uid, room)?;
            out.reply(
                sid,
                Reply::Topic {
                    conv,
                    topic: self.topic(conv),
                },
            );
            return Ok(());
        };
        let (conv, _) = self.admin_room(uid, room)?;
        let topic = if text == "-" {
            None
        } else {
            names::text(text, TOPIC_MAX)?;
            Some(Arc::<str>::from(text))
        };
        let mut writes = Vec::new();
        let change = Change::Topic {
            conv,
            by: uid,
            topic: topic.clone(),
        };
        let events = self.set_topic(conv, uid, topic, Some(sid), &mut writes);
        let reply = Reply::Topic { conv, topic: None };
        self.commit(sid, writes, reply, events, change, out);
        Ok(())
    }

    /// Sets `conv`'s topic (here or applied from elsewhere) and says so.
    fn set_topic(
        &mut self,
        conv: ConvId,
        by: UserId,
        topic: Option<Arc<str>>,
        except: Option<SessionId>,
        writes: &mut Vec<Write>,
    ) -> Vec<Emit> {
        let Some(m) = self.moderation_mut(conv) else {
            return Vec::new();
        };
        m.topic = topic.clone();
        writes.push(Write::Topic {
            conv,
            text: topic.as_deref().map(str::to_string),
        });
        let detail = topic.as_deref().map(str::to_string);
        self.audit(conv, by, AuditAction::Topic, None, detail, writes);
        let event = Event::TopicSet { conv, by, topic };
        vec![Emit::Event(Audience::members(conv, except), event)]
    }

    /// A topic set on another node.
    pub(super) fn apply_topic(
        &mut self,
        conv: ConvId,
        by: UserId,
        topic: Option<Arc<str>>,
        out: &mut Out,
    ) {
        let events = self.set_topic(conv, by, topic, None, &mut Vec::new());
        out.emits.extend(events);
    }

    /// AUDIT #room [<n>]: the newest `n` actions of its admins, oldest first.
    pub(super) fn audit_command(
        &self,
        sid: SessionId,
        uid: UserId,
        room: &str,
        n: Option<usize>,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        let (conv, _) = self.admin_room(uid, room)?;
        let n = n.unwrap_or(AUDIT_DEFAULT).clamp(1, AUDIT_KEPT);
        let entries = self.moderation(conv).map_or_else(Vec::new, |m| m.newest(n));
        out.reply(sid, Reply::Audit { conv, entries });
        Ok(())
    }

    /// A room or group `uid` may look at: a public room, or a group they
    /// are in (as WHO allows).
    pub(super) fn visible_room(&self, uid: UserId, room: &str) -> Result<ConvId, ChatError> {
        let name = names::room(room)?;
        let conv = *self.rooms.get(&name).ok_or(ChatError::NoSuchRoom)?;
        let c = self.conv(conv)?;
        if c.kind == ConvKind::Group && c.member(uid).is_none() {
            return Err(ChatError::NotMember(name));
        }
        Ok(conv)
    }
}
