//! Friendships and friend requests.
//!
//! [`Friends`] is the one orchestrator of every two-sided change: both friend
//! lists and the request record change together in one call, and that call
//! returns the storage writes that make the change durable in one transaction.
//! Nothing else mutates friendship state, so a friendship is never half-made.
//!
//! A request from A to B is `pending` until B accepts or rejects it, exactly
//! once. A later request from A after a rejection starts a new pending one.

use std::collections::BTreeSet;

use bytes::Bytes;
use thiserror::Error;

use super::{ChatError, Hub, IdMap, Out, SessionId, UserId, ms_to_time, now_ms};
use crate::line;
use crate::protocol::{FriendCmd, encode};
use crate::store::{RequestRow, RequestState, Write};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FriendError {
    #[error("cannot befriend oneself")]
    SelfTarget,
    #[error("already friends")]
    AlreadyFriends,
    #[error("request already pending")]
    AlreadyPending,
    #[error("no pending request")]
    NoRequest,
    #[error("not friends")]
    NotFriends,
}

/// What a FRIEND ADD did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// A new pending request.
    Requested,
    /// The other side had asked first: now friends.
    Accepted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub state: RequestState,
    pub at: i64,
}

#[derive(Debug, Default)]
pub struct Friends {
    friends: IdMap<UserId, BTreeSet<UserId>>,
    /// Keyed by (from, to).
    requests: IdMap<(UserId, UserId), Request>,
    /// Every request key a user appears in, for listing.
    involving: IdMap<UserId, BTreeSet<(UserId, UserId)>>,
}

impl Friends {
    pub fn load(&mut self, friendships: &[(UserId, UserId, i64)], requests: &[RequestRow]) {
        for &(a, b, _) in friendships {
            self.link(a, b);
        }
        for r in requests {
            self.set_request(r.from, r.to, r.state, r.at);
        }
    }

    pub fn are_friends(&self, a: UserId, b: UserId) -> bool {
        self.friends.get(&a).is_some_and(|s| s.contains(&b))
    }

    pub fn friends_of(&self, a: UserId) -> impl Iterator<Item = UserId> + '_ {
        self.friends.get(&a).into_iter().flatten().copied()
    }

    /// Every request `a` sent or received: ((from, to), request).
    pub fn requests_of(&self, a: UserId) -> impl Iterator<Item = ((UserId, UserId), Request)> + '_ {
        self.involving
            .get(&a)
            .into_iter()
            .flatten()
            .map(|k| (*k, self.requests[k]))
    }

    fn pending(&self, from: UserId, to: UserId) -> bool {
        self.requests
            .get(&(from, to))
            .is_some_and(|r| r.state == RequestState::Pending)
    }

    fn link(&mut self, a: UserId, b: UserId) {
        self.friends.entry(a).or_default().insert(b);
        self.friends.entry(b).or_default().insert(a);
    }

    fn set_request(&mut self, from: UserId, to: UserId, state: RequestState, at: i64) -> Write {
        self.requests.insert((from, to), Request { state, at });
        for u in [from, to] {
            self.involving.entry(u).or_default().insert((from, to));
        }
        Write::Request {
            from,
            to,
            state,
            at,
        }
    }

    /// Resolves the pending request `from -> to` and links the two.
    fn befriend(&mut self, from: UserId, to: UserId, at: i64) -> Vec<Write> {
        self.link(from, to);
        vec![
            self.set_request(from, to, RequestState::Accepted, at),
            Write::Friendship {
                a: from,
                b: to,
                since: at,
            },
        ]
    }

    /// `from` asks `to`. If `to` had already asked `from`, they become friends.
    pub fn request(
        &mut self,
        from: UserId,
        to: UserId,
        at: i64,
    ) -> Result<(Added, Vec<Write>), FriendError> {
        if from == to {
            return Err(FriendError::SelfTarget);
        }
        if self.are_friends(from, to) {
            return Err(FriendError::AlreadyFriends);
        }
        if self.pending(from, to) {
            return Err(FriendError::AlreadyPending);
        }
        if self.pending(to, from) {
            return Ok((Added::Accepted, self.befriend(to, from, at)));
        }
        let write = self.set_request(from, to, RequestState::Pending, at);
        Ok((Added::Requested, vec![write]))
    }

    /// `me` accepts the pending request from `from`.
    pub fn accept(&mut self, me: UserId, from: UserId, at: i64) -> Result<Vec<Write>, FriendError> {
        if !self.pending(from, me) {
            return Err(FriendError::NoRequest);
        }
        Ok(self.befriend(from, me, at))
    }

    /// `me` rejects the pending request from `from`.
    pub fn reject(&mut self, me: UserId, from: UserId, at: i64) -> Result<Vec<Write>, FriendError> {
        if !self.pending(from, me) {
            return Err(FriendError::NoRequest);
        }
        Ok(vec![self.set_request(from, me, RequestState::Rejected, at)])
    }

    /// Ends the friendship on both sides.
    pub fn remove(&mut self, me: UserId, other: UserId) -> Result<Vec<Write>, FriendError> {
        if me == other {
            return Err(FriendError::SelfTarget);
        }
        if !self.are_friends(me, other) {
            return Err(FriendError::NotFriends);
        }
        for (a, b) in [(me, other), (other, me)] {
            if let Some(set) = self.friends.get_mut(&a) {
                set.remove(&b);
            }
            // The accepted request went with the friendship (storage drops
            // it with the same write); a new FRIEND ADD starts afresh.
            if self
                .requests
                .get(&(a, b))
                .is_some_and(|r| r.state == RequestState::Accepted)
            {
                self.requests.remove(&(a, b));
                for u in [a, b] {
                    if let Some(keys) = self.involving.get_mut(&u) {
                        keys.remove(&(a, b));
                    }
                }
            }
        }
        Ok(vec![Write::Unfriend { a: me, b: other }])
    }
}

fn state_word(s: RequestState) -> &'static str {
    match s {
        RequestState::Pending => "pending",
        RequestState::Accepted => "accepted",
        RequestState::Rejected => "rejected",
    }
}

impl Hub {
    fn friend_error(&self, e: FriendError, other: UserId) -> ChatError {
        let name = self.name(other).to_string();
        match e {
            FriendError::SelfTarget => ChatError::SelfTarget,
            FriendError::AlreadyFriends => ChatError::AlreadyFriends(name),
            FriendError::AlreadyPending => ChatError::RequestPending(name),
            FriendError::NoRequest => ChatError::NoRequest(name),
            FriendError::NotFriends => ChatError::NotFriends(name),
        }
    }

    pub(super) fn friend(
        &mut self,
        sid: SessionId,
        uid: UserId,
        cmd: FriendCmd<'_>,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        let now = now_ms();
        // Others hear of a change once it is durable (see `commit`).
        let mut ev = Out::default();
        match cmd {
            FriendCmd::List => {
                self.friend_list(sid, uid, out);
                return Ok(());
            }
            FriendCmd::Requests => {
                self.request_list(sid, uid, out);
                return Ok(());
            }
            FriendCmd::Add(name) => {
                let other = self.find_user(name)?;
                let (added, writes) = self
                    .friends
                    .request(uid, other, now)
                    .map_err(|e| self.friend_error(e, other))?;
                let me = self.name(uid).to_string();
                let them = self.name(other).to_string();
                let (event, mine, word) = match added {
                    Added::Requested => (
                        line!("FRIEND REQUEST {me}"),
                        line!("FRIEND REQUESTED {them}"),
                        "pending",
                    ),
                    Added::Accepted => (
                        line!("FRIEND ACCEPTED {me}"),
                        line!("FRIEND ACCEPTED {them}"),
                        "accepted",
                    ),
                };
                self.to_user(other, &event, None, &mut ev);
                self.to_user(uid, &mine, Some(sid), &mut ev);
                self.commit(sid, writes, line!("OK FRIEND ADD {them} {word}"), ev, out);
            }
            FriendCmd::Accept(name) | FriendCmd::Reject(name) => {
                let accept = matches!(cmd, FriendCmd::Accept(_));
                let other = self.find_user(name)?;
                let result = if accept {
                    self.friends.accept(uid, other, now)
                } else {
                    self.friends.reject(uid, other, now)
                };
                let writes = result.map_err(|e| self.friend_error(e, other))?;
                let me = self.name(uid).to_string();
                let them = self.name(other).to_string();
                let (verb, word) = if accept {
                    ("ACCEPTED", "ACCEPT")
                } else {
                    ("REJECTED", "REJECT")
                };
                self.to_user(other, &line!("FRIEND {verb} {me}"), None, &mut ev);
                self.to_user(uid, &line!("FRIEND {verb} {them}"), Some(sid), &mut ev);
                self.commit(sid, writes, line!("OK FRIEND {word} {them}"), ev, out);
            }
            FriendCmd::Remove(name) => {
                let other = self.find_user(name)?;
                let writes = self
                    .friends
                    .remove(uid, other)
                    .map_err(|e| self.friend_error(e, other))?;
                let me = self.name(uid).to_string();
                let them = self.name(other).to_string();
                self.to_user(other, &line!("FRIEND REMOVED {me}"), None, &mut ev);
                self.to_user(uid, &line!("FRIEND REMOVED {them}"), Some(sid), &mut ev);
                self.commit(sid, writes, line!("OK FRIEND REMOVE {them}"), ev, out);
            }
        }
        Ok(())
    }

    fn friend_list(&self, sid: SessionId, uid: UserId, out: &mut Out) {
        let mut lines: Vec<Bytes> = self
            .friends
            .friends_of(uid)
            .filter_map(|f| self.users.get(f))
            .map(|u| {
                if u.online() {
                    line!("FRIENDINFO {} online", u.name)
                } else {
                    let seen = u.last_seen.map_or("never".into(), ms_to_time);
                    line!("FRIENDINFO {} offline {seen}", u.name)
                }
            })
            .collect();
        lines.push(line!("OK FRIEND LIST {}", lines.len()));
        out.reply(sid, encode::join(&lines));
    }

    fn request_list(&self, sid: SessionId, uid: UserId, out: &mut Out) {
        let mut reqs: Vec<_> = self.friends.requests_of(uid).collect();
        reqs.sort_by_key(|(_, r)| r.at);
        let mut lines: Vec<Bytes> = reqs
            .into_iter()
            .map(|((from, to), r)| {
                let (dir, other) = if from == uid {
                    ("out", to)
                } else {
                    ("in", from)
                };
                line!(
                    "REQUEST {dir} {} {} {}",
                    self.name(other),
                    state_word(r.state),
                    ms_to_time(r.at)
                )
            })
            .collect();
        lines.push(line!("OK FRIEND REQUESTS {}", lines.len()));
        out.reply(sid, encode::join(&lines));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: UserId = UserId(1);
    const B: UserId = UserId(2);

    #[test]
    fn request_then_accept_links_both_sides_once() {
        let mut f = Friends::default();
        let (added, writes) = f.request(A, B, 1).unwrap();
        assert_eq!(added, Added::Requested);
        assert_eq!(writes.len(), 1);
        assert!(!f.are_friends(A, B));
        assert_eq!(f.request(A, B, 2), Err(FriendError::AlreadyPending));
        // Only the recipient can accept.
        assert_eq!(f.accept(A, B, 2), Err(FriendError::NoRequest));
        let writes = f.accept(B, A, 3).unwrap();
        assert_eq!(writes.len(), 2, "request record and friendship together");
        assert!(f.are_friends(A, B) && f.are_friends(B, A));
        assert_eq!(f.accept(B, A, 4), Err(FriendError::NoRequest));
        assert_eq!(f.reject(B, A, 4), Err(FriendError::NoRequest));
        assert_eq!(f.request(A, B, 5), Err(FriendError::AlreadyFriends));
        assert_eq!(f.request(B, A, 5), Err(FriendError::AlreadyFriends));
    }

    #[test]
    fn reject_is_final_for_that_request() {
        let mut f = Friends::default();
        f.request(A, B, 1).unwrap();
        f.reject(B, A, 2).unwrap();
        assert!(!f.are_friends(A, B));
        assert_eq!(f.reject(B, A, 3), Err(FriendError::NoRequest));
        assert_eq!(f.accept(B, A, 3), Err(FriendError::NoRequest));
        // A new request may follow a rejection.
        assert_eq!(f.request(A, B, 4).unwrap().0, Added::Requested);
    }

    #[test]
    fn crossing_requests_make_friends_at_once() {
        let mut f = Friends::default();
        f.request(A, B, 1).unwrap();
        let (added, _) = f.request(B, A, 2).unwrap();
        assert_eq!(added, Added::Accepted);
        assert!(f.are_friends(A, B));
        let states: Vec<_> = f.requests_of(A).map(|(k, r)| (k, r.state)).collect();
        assert_eq!(states, [((A, B), RequestState::Accepted)]);
    }

    #[test]
    fn illegal_transitions() {
        let mut f = Friends::default();
        assert_eq!(f.request(A, A, 1), Err(FriendError::SelfTarget));
        assert_eq!(f.accept(A, B, 1), Err(FriendError::NoRequest));
        assert_eq!(f.reject(A, B, 1), Err(FriendError::NoRequest));
        assert_eq!(f.remove(A, B), Err(FriendError::NotFriends));
        assert_eq!(f.remove(A, A), Err(FriendError::SelfTarget));
        f.request(A, B, 1).unwrap();
        f.accept(B, A, 2).unwrap();
        f.remove(B, A).unwrap();
        assert!(!f.are_friends(A, B) && !f.are_friends(B, A));
        assert_eq!(f.remove(A, B), Err(FriendError::NotFriends));
    }
}
