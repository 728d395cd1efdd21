//! Who is online, and telling the people who care.

use super::{
    Audience, Change, ChatError, Event, Hub, IdSet, Out, Presence, Reply, SessionId, User, UserId,
    names,
};
use crate::store::ConvKind;

/// An AWAY text's length limit, in bytes.
pub const AWAY_MAX: usize = 200;

impl Hub {
    /// The users who hear about `uid` coming and going: its friends, and the
    /// members of its rooms and groups up to the presence room limit (so that
    /// a login in a 100,000-member room is not 100,000 events). A direct
    /// conversation outlives the friendship it came from, so it does not
    /// count: a former friend stops hearing about `uid`.
    fn watchers(&self, uid: UserId) -> IdSet<UserId> {
        let mut set: IdSet<UserId> = self.friends.friends_of(uid).collect();
        let convs = self.convs_of(uid);
        for conv in convs.iter().filter_map(|&cid| self.convs.get(cid)) {
            if conv.kind != ConvKind::Direct && conv.members.len() <= self.cfg.presence_room_limit {
                set.extend(conv.members.iter().map(|m| m.user));
            }
        }
        set.remove(&uid);
        set
    }

    /// Whether `uid` (`user`) is online on any node (away on this one),
    /// or when last seen.
    pub(super) fn presence_of(&self, uid: UserId, user: &User) -> Presence {
        match (&user.away, self.online_anywhere(uid, user)) {
            (Some(text), true) => Presence::Away(text.clone()),
            (None, true) => Presence::Online,
            (_, false) => Presence::Offline(user.last_seen),
        }
    }

    /// Whether `uid` (`user`) has a session here or, with `--bus`, on
    /// another node (as the last presence snapshot said).
    pub(super) fn online_anywhere(&self, uid: UserId, user: &User) -> bool {
        user.online() || self.elsewhere.contains(&uid)
    }

    /// The users online on other nodes, read from Redis (`--bus`): a user
    /// with no session here whose state flipped is announced, so only the
    /// first session anywhere and the last one announce PRESENCE. A user
    /// who went offline elsewhere was last seen now (near enough: within a
    /// heartbeat).
    pub fn presence_elsewhere(&mut self, online: IdSet<UserId>, out: &mut Out) {
        self.flush_posts(out);
        let old = std::mem::replace(&mut self.elsewhere, online);
        let now = self.now();
        let flipped: Vec<UserId> = old.symmetric_difference(&self.elsewhere).copied().collect();
        for uid in flipped {
            let Some(user) = self.users.get_mut(uid) else {
                continue;
            };
            if user.online() {
                continue;
            }
            if !self.elsewhere.contains(&uid) {
                user.last_seen = Some(now);
                user.away = None;
            }
            self.announce_presence(uid, out);
        }
    }

    /// Users with a session on this node, for the presence heartbeat.
    pub fn online_here(&self) -> Vec<UserId> {
        self.sessions.values().filter_map(|s| s.user).collect()
    }

    /// AWAY with text: away; without: back. Everyone watching hears the
    /// change, as for going online.
    pub(super) fn away(
        &mut self,
        sid: SessionId,
        uid: UserId,
        text: Option<&str>,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        if let Some(t) = text {
            names::text(t, AWAY_MAX)?;
        }
        let away: Option<std::sync::Arc<str>> = text.map(Into::into);
        if self.set_away(uid, away.clone(), out) {
            let text = away.clone();
            self.log_alone(Change::Away { user: uid, text }, out);
        }
        out.reply(sid, Reply::Away(away));
        Ok(())
    }

    /// Sets `uid`'s away text (here, or as another node says) and tells
    /// the watchers if it changed; returns whether it did.
    pub(super) fn set_away(
        &mut self,
        uid: UserId,
        away: Option<std::sync::Arc<str>>,
        out: &mut Out,
    ) -> bool {
        let Some(user) = self.users.get_mut(uid) else {
            return false;
        };
        let changed = user.away != away;
        user.away = away;
        if changed {
            self.announce_presence(uid, out);
        }
        changed
    }

    /// Sends the user's current state to everyone watching it.
    pub(super) fn announce_presence(&self, uid: UserId, out: &mut Out) {
        let Some(user) = self.users.get(uid) else {
            return;
        };
        let presence = self.presence_of(uid, user);
        let watchers: Vec<UserId> = self.watchers(uid).into_iter().collect();
        if !watchers.is_empty() {
            let event = Event::Presence {
                user: uid,
                presence,
            };
            out.event(Audience::Users(watchers), event);
        }
    }

    pub(super) fn presence_query(
        &self,
        sid: SessionId,
        name: &str,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        names::user(name)?;
        let uid = self.find_user(name)?;
        let user = self.users.get(uid).ok_or(ChatError::NoSuchUser)?;
        let presence = self.presence_of(uid, user);
        out.reply(
            sid,
            Reply::Presence {
                user: uid,
                presence,
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ConvId, HubConfig, Seq, UserId};
    use super::*;
    use crate::store::{ConvRow, MemberRow, Snapshot, UserRow};

    /// alice (1) and bob (2) share a direct conversation; carol (3) is bob's
    /// friend; dave (4) shares a group with bob.
    fn hub(alice_and_bob_friends: bool) -> Hub {
        let user = |id: u32, name: &str| UserRow {
            id: UserId(id),
            name: name.into(),
            phc: String::new(),
            last_seen: None,
        };
        let conv = |id: u32, kind, name: &str| ConvRow {
            id: ConvId(id),
            kind,
            name: name.into(),
            last_seq: Seq::ZERO,
            recent: Vec::new(),
        };
        let member = |conv: u32, user: u32| MemberRow {
            conv: ConvId(conv),
            user: UserId(user),
            admin: false,
            joined: 0,
        };
        let mut friendships = vec![(UserId(2), UserId(3), 0)];
        if alice_and_bob_friends {
            friendships.push((UserId(1), UserId(2), 0));
        }
        let snap = Snapshot {
            users: vec![
                user(1, "alice"),
                user(2, "bob"),
                user(3, "carol"),
                user(4, "dave"),
            ],
            convs: vec![
                conv(1, ConvKind::Direct, "@1:2"),
                conv(2, ConvKind::Group, "#g"),
            ],
            members: vec![member(1, 1), member(1, 2), member(2, 2), member(2, 4)],
            friendships,
            ..Snapshot::default()
        };
        let env = Box::new(crate::chat::FixedEnv::at(0));
        Hub::new(HubConfig::default(), snap, String::new(), env)
    }

    fn sorted(set: IdSet<UserId>) -> Vec<u32> {
        let mut v: Vec<_> = set.into_iter().map(|u| u.0).collect();
        v.sort();
        v
    }

    #[test]
    fn friends_and_co_members_watch() {
        assert_eq!(sorted(hub(true).watchers(UserId(2))), [1, 3, 4]);
    }

    #[test]
    fn a_direct_conversation_alone_does_not_make_a_watcher() {
        let h = hub(false);
        assert_eq!(sorted(h.watchers(UserId(2))), [3, 4]);
        assert!(h.watchers(UserId(1)).is_empty());
    }
}
