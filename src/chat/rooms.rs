//! Rooms and groups: JOIN, CREATE, LEAVE, WHO, ROOMS, ADD, KICK, OP.
//!
//! A public room (JOIN creates it) is open to anyone; a group (CREATE) is
//! invite-only and admins ADD people. Both kinds have admins: the creator
//! first, then whoever an admin OPs; when the last admin leaves, the
//! longest-standing member becomes admin so a group is never orphaned.

use super::found::{ConvKey, Founder, Founding, Parked};
use super::membership::Membership;
use super::shared::ColdJoin;
use super::{
    Change, ChatError, ConvId, Cursor, Hub, Member, MemberInfo, Msg, Out, Reply, RoomInfo,
    SessionId, UserId, names,
};
use crate::store::{ConvKind, MsgState, NewMember, Write};

impl Hub {
    fn room_id(&self, name: &str) -> Result<(ConvId, String), ChatError> {
        let name = names::room(name)?;
        let id = *self.rooms.get(&name).ok_or(ChatError::NoSuchRoom)?;
        Ok((id, name))
    }

    /// The room, which the caller must be a member of.
    fn member_room(&self, uid: UserId, name: &str) -> Result<(ConvId, String), ChatError> {
        let (id, name) = self.room_id(name)?;
        if self.conv(id)?.member(uid).is_none() {
            return Err(ChatError::NotMember(name));
        }
        Ok((id, name))
    }

    /// The room, where the caller must be an admin.
    pub(super) fn admin_room(
        &self,
        uid: UserId,
        name: &str,
    ) -> Result<(ConvId, String), ChatError> {
        let (id, name) = self.member_room(uid, name)?;
        if !self.conv(id)?.is_admin(uid) {
            return Err(ChatError::NotAdmin(name));
        }
        Ok((id, name))
    }

    /// Whether `uid` may join one more room, and `conv` (if any) take one more member.
    fn check_room_caps(&self, uid: UserId, conv: Option<ConvId>) -> Result<(), ChatError> {
        let rooms = self
            .convs_of(uid)
            .iter()
            .filter_map(|&c| self.convs.get(c))
            .filter(|c| c.kind != ConvKind::Direct)
            .count();
        if rooms >= self.cfg.max_rooms_per_user {
            return Err(ChatError::TooManyRooms(self.name(uid).to_string()));
        }
        if let Some(c) = conv.and_then(|c| self.convs.get(c))
            && c.members.len() >= self.cfg.max_room_members
        {
            return Err(ChatError::RoomFull(c.name.clone()));
        }
        Ok(())
    }

    /// Adds `uid` to the conversation; the first member of an admin-less
    /// conversation becomes its admin.
    pub(super) fn add_member(&mut self, conv: ConvId, uid: UserId, writes: &mut Vec<Write>) {
        let joined = self.now();
        let (Some(c), Some(user)) = (self.convs.get_mut(conv), self.users.get_mut(uid)) else {
            return;
        };
        let member = Member {
            user: uid,
            admin: c.kind != ConvKind::Direct && !c.members.iter().any(|m| m.admin),
            joined,
        };
        c.members.push(member);
        let last = c.last_seq;
        user.convs.push(conv);
        writes.push(Write::Member {
            conv,
            user: uid,
            admin: member.admin,
            joined: member.joined,
        });
        // A newcomer gets the recent messages with the JOIN reply; SYNC
        // covers only what comes after joining.
        let cursor = Cursor {
            delivered: last,
            read: last,
        };
        self.cursors.insert((uid, conv), cursor);
        // With `--bus` this node's copy may be behind the store: the store
        // puts the cursors at the end it sees, which other nodes go by.
        writes.push(if self.cfg.clustered {
            Write::JoinCursor { user: uid, conv }
        } else {
            Write::Cursor {
                user: uid,
                conv,
                delivered: last,
                read: last,
            }
        });
    }

    /// Removes `uid`; promotes the longest-standing member if no admin is left.
    /// Returns the promoted user.
    pub(super) fn remove_member(
        &mut self,
        conv: ConvId,
        uid: UserId,
        writes: &mut Vec<Write>,
    ) -> Option<UserId> {
        if let Some(user) = self.users.get_mut(uid) {
            user.convs.retain(|&x| x != conv);
        }
        let c = self.convs.get_mut(conv)?;
        c.members.retain(|m| m.user != uid);
        writes.push(Write::RemoveMember { conv, user: uid });
        if c.members.iter().any(|m| m.admin) {
            return None;
        }
        let heir = c.members.first_mut()?;
        heir.admin = true;
        writes.push(Write::Member {
            conv,
            user: heir.user,
            admin: true,
            joined: heir.joined,
        });
        Some(heir.user)
    }

    /// The recent messages of a room, which a joiner receives.
    pub(super) fn replay(&self, conv: ConvId) -> Vec<Msg> {
        let Some(c) = self.convs.get(conv) else {
            return Vec::new();
        };
        c.recent
            .iter()
            .filter(|m| m.state != MsgState::Deleted)
            .cloned()
            .collect()
    }

    pub(super) fn join(
        &mut self,
        sid: SessionId,
        uid: UserId,
        room: &str,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        let name = names::room(room)?;
        let key = ConvKey::Room(name.clone());
        if self.founding.contains_key(&key) {
            let parked = Parked::Join { uid, room: name };
            self.park(sid, key, parked, true, out);
            return Ok(());
        }
        let Some(&conv) = self.rooms.get(&name) else {
            self.check_room_caps(uid, None)?;
            self.found_room(sid, uid, ConvKind::Public, name, out);
            return Ok(());
        };
        let c = self.conv(conv)?;
        if c.member(uid).is_some() {
            return Err(ChatError::AlreadyMember(name));
        }
        if c.kind == ConvKind::Group {
            return Err(ChatError::InviteOnly(name));
        }
        if self.is_banned(conv, uid) {
            return Err(ChatError::Banned(name));
        }
        self.check_room_caps(uid, Some(conv))?;
        let reply = Reply::Joined {
            conv,
            created: false,
            replay: self.replay(conv),
            topic: self.topic(conv),
        };
        let mut writes = Vec::new();
        let joined = Membership::Joined { user: uid };
        let events = self.change_membership(conv, joined, Some(sid), &mut writes);
        let change = Change::Membership {
            conv,
            change: joined,
        };
        if self.cfg.clustered && !self.listens_to(conv) {
            let join = ColdJoin {
                sid,
                uid,
                conv,
                reply,
                events,
                change,
            };
            self.join_cold(join, writes, out);
        } else {
            self.commit(sid, writes, reply, events, change, out);
        }
        Ok(())
    }

    pub(super) fn create(
        &mut self,
        sid: SessionId,
        uid: UserId,
        room: &str,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        let name = names::room(room)?;
        if self.founding.contains_key(&ConvKey::Room(name.clone())) {
            return Err(ChatError::RoomExists(name));
        }
        if let Some(&id) = self.rooms.get(&name) {
            // A group whose last member left can never be entered again (it
            // is invite-only and has no admin), so its name is free. The new
            // group is a new conversation: none of the old history comes
            // with the name. On restart the newer conversation of that name
            // wins, as conversations load in id order.
            let old = self.conv(id)?;
            if old.kind != ConvKind::Group || !old.members.is_empty() {
                return Err(ChatError::RoomExists(name));
            }
        }
        self.check_room_caps(uid, None)?;
        self.found_room(sid, uid, ConvKind::Group, name, out);
        Ok(())
    }

    /// Founds a room (JOIN) or group (CREATE) with `uid` as its first
    /// member and admin; the founder's other sessions hear `JOINED`.
    fn found_room(
        &mut self,
        sid: SessionId,
        uid: UserId,
        kind: ConvKind,
        name: String,
        out: &mut Out,
    ) {
        let founder = NewMember {
            user: uid,
            admin: true,
            joined: self.now(),
        };
        let founding = Founding {
            key: ConvKey::Room(name.clone()),
            kind,
            name,
            members: vec![founder],
            founder: if kind == ConvKind::Public {
                Founder::Join { sid, uid }
            } else {
                Founder::Create { sid, uid }
            },
        };
        self.found(founding, out);
    }

    pub(super) fn leave(
        &mut self,
        sid: SessionId,
        uid: UserId,
        room: &str,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        let (conv, _) = self.member_room(uid, room)?;
        // Others hear of it once it is durable (see `commit`).
        let mut writes = Vec::new();
        let left = Membership::Left { user: uid };
        let events = self.change_membership(conv, left, Some(sid), &mut writes);
        let change = Change::Membership { conv, change: left };
        self.commit(sid, writes, Reply::Left(conv), events, change, out);
        Ok(())
    }

    pub(super) fn who(
        &self,
        sid: SessionId,
        uid: UserId,
        room: &str,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        let conv = self.visible_room(uid, room)?;
        let c = self.conv(conv)?;
        let members = c
            .members
            .iter()
            .filter_map(|m| {
                let user = self.users.get(m.user)?;
                Some(MemberInfo {
                    user: m.user,
                    online: self.online_anywhere(m.user, user),
                    away: user.away.is_some(),
                    admin: m.admin,
                })
            })
            .collect();
        let topic = self.topic(conv);
        out.reply(
            sid,
            Reply::Who {
                conv,
                members,
                topic,
            },
        );
        Ok(())
    }

    pub(super) fn list_rooms(&self, sid: SessionId, uid: UserId, out: &mut Out) {
        let rooms = self
            .convs_of(uid)
            .iter()
            .filter_map(|&id| self.convs.get(id))
            .filter(|c| c.kind != ConvKind::Direct)
            .map(|c| RoomInfo {
                conv: c.id,
                kind: c.kind,
                members: c.members.len(),
                admin: c.is_admin(uid),
            })
            .collect();
        out.reply(sid, Reply::Rooms(rooms));
    }

    pub(super) fn add(
        &mut self,
        sid: SessionId,
        uid: UserId,
        room: &str,
        who: &str,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        let (conv, name) = self.admin_room(uid, room)?;
        let target = self.find_user(who)?;
        let target_name = self.name(target).to_string();
        if self.conv(conv)?.member(target).is_some() {
            return Err(ChatError::TargetAlreadyMember(target_name, name));
        }
        if self.is_banned(conv, target) {
            return Err(ChatError::TargetBanned(target_name, name));
        }
        self.check_room_caps(target, Some(conv))?;
        let mut writes = Vec::new();
        let added = Membership::Added {
            user: target,
            by: uid,
        };
        let events = self.change_membership(conv, added, Some(sid), &mut writes);
        let change = Change::Membership {
            conv,
            change: added,
        };
        let reply = Reply::Added { conv, user: target };
        self.commit(sid, writes, reply, events, change, out);
        Ok(())
    }

    pub(super) fn kick(
        &mut self,
        sid: SessionId,
        uid: UserId,
        room: &str,
        who: &str,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        let (conv, name) = self.admin_room(uid, room)?;
        let target = self.find_user(who)?;
        let target_name = self.name(target).to_string();
        if target == uid {
            return Err(ChatError::SelfTarget);
        }
        if self.conv(conv)?.member(target).is_none() {
            return Err(ChatError::TargetNotMember(target_name, name));
        }
        // The target hears of their own kick; nothing after it reaches them.
        // Others hear of it once it is durable (see `commit`).
        let mut writes = Vec::new();
        let kicked = Membership::Kicked {
            user: target,
            by: uid,
        };
        let events = self.change_membership(conv, kicked, Some(sid), &mut writes);
        let change = Change::Membership {
            conv,
            change: kicked,
        };
        let reply = Reply::Kicked { conv, user: target };
        self.commit(sid, writes, reply, events, change, out);
        Ok(())
    }

    pub(super) fn op(
        &mut self,
        sid: SessionId,
        uid: UserId,
        room: &str,
        who: &str,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        let (conv, name) = self.admin_room(uid, room)?;
        let target = self.find_user(who)?;
        let target_name = self.name(target).to_string();
        let Some(member) = self.conv(conv)?.member(target) else {
            return Err(ChatError::TargetNotMember(target_name, name));
        };
        if member.admin {
            return Err(ChatError::AlreadyAdmin(target_name, name));
        }
        // Others hear of it once it is durable (see `commit`).
        let mut writes = Vec::new();
        let opped = Membership::Opped {
            user: target,
            by: uid,
        };
        let events = self.change_membership(conv, opped, Some(sid), &mut writes);
        let change = Change::Membership {
            conv,
            change: opped,
        };
        let reply = Reply::Opped { conv, user: target };
        self.commit(sid, writes, reply, events, change, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Audience, Emit, Event, HubConfig, Output, Seq};
    use super::*;
    use crate::store::{Answer, Assigned, ConvRow, MemberRow, Snapshot, UserRow};

    /// alice (1); `#empty` (1) is a group nobody is left in, `#full` (2) a
    /// group alice is in.
    fn hub() -> Hub {
        let conv = |id: u32, name: &str| ConvRow {
            id: ConvId(id),
            kind: ConvKind::Group,
            name: name.into(),
            last_seq: Seq(7),
            recent: Vec::new(),
        };
        let snap = Snapshot {
            users: vec![UserRow {
                id: UserId(1),
                name: "alice".into(),
                phc: String::new(),
                last_seen: None,
            }],
            convs: vec![conv(1, "#empty"), conv(2, "#full")],
            members: vec![MemberRow {
                conv: ConvId(2),
                user: UserId(1),
                admin: true,
                joined: 0,
            }],
            ..Snapshot::default()
        };
        let env = Box::new(crate::chat::FixedEnv::at(0));
        Hub::new(HubConfig::default(), snap, String::new(), env)
    }

    #[test]
    fn an_emptied_group_name_can_be_created_again_as_a_new_group() {
        let mut h = hub();
        let sid = SessionId(1);
        let mut out = Out::default();
        assert_eq!(
            h.create(sid, UserId(1), "#full", &mut out),
            Err(ChatError::RoomExists("#full".into()))
        );
        h.create(sid, UserId(1), "#Empty", &mut out).unwrap();
        assert_eq!(out.emits, [Emit::To(sid, Output::Defer)]);
        assert_eq!(
            h.rooms["#empty"],
            ConvId(1),
            "nothing changes before the commit"
        );
        // The commit founds the group and assigns its id.
        let pending = out.store.remove(0).done.unwrap();
        let founded = Answer::Done(vec![Assigned::Conv(ConvId(3))]);
        let mut out = Out::default();
        let done = vec![(pending, Ok(founded))];
        let took = std::time::Duration::ZERO;
        h.committed(
            crate::store::Committed {
                done,
                messages: 0,
                took,
            },
            &mut out,
        );
        let joined = Event::Joined {
            conv: ConvId(3),
            user: UserId(1),
        };
        assert_eq!(
            out.emits,
            [
                Emit::Event(Audience::user(UserId(1), Some(sid)), joined),
                Emit::To(sid, Output::Complete(Reply::Created(ConvId(3))))
            ]
        );
        let id = h.rooms["#empty"];
        assert_eq!(id, ConvId(3), "a new conversation, not the old one");
        let c = h.convs.get(id).unwrap();
        assert_eq!((c.kind, c.last_seq), (ConvKind::Group, Seq::ZERO));
        assert!(c.is_admin(UserId(1)));
        assert!(h.convs.get(ConvId(1)).unwrap().members.is_empty());
    }
}
