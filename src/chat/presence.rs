//! Who is online, and telling the people who care.

use std::collections::HashSet;

use super::{ChatError, Hub, Out, SessionId, UserId, ms_to_time, names};
use crate::line;

impl Hub {
    /// The users who hear about `uid` coming and going: its friends, and the
    /// members of its conversations up to the presence room limit (so that a
    /// login in a 100,000-member room is not 100,000 events).
    fn watchers(&self, uid: UserId) -> HashSet<UserId> {
        let mut set: HashSet<UserId> = self.friends.friends_of(uid).collect();
        for &cid in &self.users[uid as usize].convs {
            let conv = &self.convs[cid as usize];
            if conv.members.len() <= self.cfg.presence_room_limit {
                set.extend(conv.members.iter().map(|m| m.user));
            }
        }
        set.remove(&uid);
        set
    }

    /// `PRESENCE alice online` or `PRESENCE alice offline <last-seen>`.
    fn presence_line(&self, uid: UserId, prefix: &str) -> bytes::Bytes {
        let user = &self.users[uid as usize];
        if user.online() {
            line!("{prefix}PRESENCE {} online", user.name)
        } else {
            let seen = user.last_seen.map_or("never".into(), ms_to_time);
            line!("{prefix}PRESENCE {} offline {seen}", user.name)
        }
    }

    /// Sends the user's current state to everyone watching it.
    pub(super) fn announce_presence(&self, uid: UserId, out: &mut Out) {
        let event = self.presence_line(uid, "");
        for watcher in self.watchers(uid) {
            self.to_user(watcher, &event, None, out);
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
        out.reply(sid, self.presence_line(uid, "OK "));
        Ok(())
    }
}
