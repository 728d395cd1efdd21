//! Friendships and friend requests.
//!
//! [`Friends`] is the one orchestrator of every two-sided change: both friend
//! lists and the request record change together in one call, and that call
//! returns the storage writes that make the change durable in one transaction.
//! Nothing else mutates friendship state, so a friendship is never half-made.
//!
//! A request from A to B is `pending` until B accepts or rejects it, exactly
//! once. A later request from A after a rejection starts a new pending one.
//!
//! Blocks live here too, since they are rules about the same two-sided
//! state: blocking ends a friendship and withdraws one's own pending
//! request, and while B blocks A, A's requests to B stay pending, unseen by
//! B, and A is never told: to A it looks like a request nobody answers.

use std::collections::BTreeSet;

use thiserror::Error;

use super::{
    Audience, Change, ChatError, Emit, Event, FriendNews, Hub, IdMap, Out, Reply, RequestInfo,
    SessionId, UserId,
};
use crate::protocol::FriendCmd;
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
    #[error("already blocked")]
    AlreadyBlocked,
    #[error("not blocked")]
    NotBlocked,
    #[error("blocked")]
    Blocked,
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
    /// Who each user blocks.
    blocked: IdMap<UserId, BTreeSet<UserId>>,
}

impl Friends {
    pub fn load(
        &mut self,
        friendships: &[(UserId, UserId, i64)],
        requests: &[RequestRow],
        blocks: &[(UserId, UserId)],
    ) {
        for &(a, b, _) in friendships {
            self.link(a, b);
        }
        for r in requests {
            self.set_request(r.from, r.to, r.state, r.at);
        }
        for &(by, user) in blocks {
            self.blocked.entry(by).or_default().insert(user);
        }
    }

    /// Whether `by` blocks `user`.
    pub fn blocks(&self, by: UserId, user: UserId) -> bool {
        self.blocked.get(&by).is_some_and(|s| s.contains(&user))
    }

    /// The users `by` blocks.
    pub fn blocked_by(&self, by: UserId) -> impl Iterator<Item = UserId> + '_ {
        self.blocked.get(&by).into_iter().flatten().copied()
    }

    /// `me` blocks `other`: a friendship ends and a pending request of
    /// `me`'s to `other` is withdrawn, in the same commit. Returns whether
    /// a friendship ended (both sides hear that, as for FRIEND REMOVE).
    pub fn block(&mut self, me: UserId, other: UserId) -> Result<(bool, Vec<Write>), FriendError> {
        if me == other {
            return Err(FriendError::SelfTarget);
        }
        if self.blocks(me, other) {
            return Err(FriendError::AlreadyBlocked);
        }
        let mut writes = Vec::new();
        let unfriended = self.are_friends(me, other);
        if unfriended {
            writes.push(Write::Unfriend { a: me, b: other });
        }
        // Unlinks the friendship and withdraws the request, as it does
        // for a block another node made.
        self.apply(FriendChange::Blocked {
            by: me,
            user: other,
            on: true,
        });
        writes.push(Write::Block {
            by: me,
            user: other,
            on: true,
        });
        Ok((unfriended, writes))
    }

    pub fn unblock(&mut self, me: UserId, other: UserId) -> Result<Vec<Write>, FriendError> {
        if !self.blocks(me, other) {
            return Err(FriendError::NotBlocked);
        }
        self.apply(FriendChange::Blocked {
            by: me,
            user: other,
            on: false,
        });
        Ok(vec![Write::Block {
            by: me,
            user: other,
            on: false,
        }])
    }

    pub fn are_friends(&self, a: UserId, b: UserId) -> bool {
        self.friends.get(&a).is_some_and(|s| s.contains(&b))
    }

    pub fn friends_of(&self, a: UserId) -> impl Iterator<Item = UserId> + '_ {
        self.friends.get(&a).into_iter().flatten().copied()
    }

    /// Every request `a` sent or received: ((from, to), request).
    /// Requests from users `a` blocks are not listed.
    pub fn requests_of(&self, a: UserId) -> impl Iterator<Item = ((UserId, UserId), Request)> + '_ {
        self.involving
            .get(&a)
            .into_iter()
            .flatten()
            .filter(move |&&(from, _)| !self.blocks(a, from))
            .map(|k| (*k, self.requests[k]))
    }

    /// A pending request `to` can see (not from someone `to` blocks).
    fn pending(&self, from: UserId, to: UserId) -> bool {
        !self.blocks(to, from)
            && self
                .requests
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
        if self.blocks(from, to) {
            return Err(FriendError::Blocked);
        }
        if self.are_friends(from, to) {
            return Err(FriendError::AlreadyFriends);
        }
        let asked = self.requests.get(&(from, to));
        if asked.is_some_and(|r| r.state == RequestState::Pending) {
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
        self.unlink(me, other);
        Ok(vec![Write::Unfriend { a: me, b: other }])
    }

    /// Applies a change committed elsewhere (another node's), through the
    /// same steps as the commands above; the result does not depend on
    /// what was there, so applying one twice is harmless.
    pub fn apply(&mut self, change: FriendChange) {
        match change {
            FriendChange::Requested { from, to, at } => {
                self.set_request(from, to, RequestState::Pending, at);
            }
            FriendChange::Accepted { from, to, at } => {
                self.befriend(from, to, at);
            }
            FriendChange::Rejected { from, to, at } => {
                self.set_request(from, to, RequestState::Rejected, at);
            }
            FriendChange::Removed { by, other } => self.unlink(by, other),
            FriendChange::Blocked { by, user, on } => {
                if on {
                    self.unlink(by, user);
                    self.blocked.entry(by).or_default().insert(user);
                    let mine = self.requests.get(&(by, user));
                    if mine.is_some_and(|r| r.state == RequestState::Pending) {
                        self.requests.remove(&(by, user));
                        for u in [by, user] {
                            if let Some(keys) = self.involving.get_mut(&u) {
                                keys.remove(&(by, user));
                            }
                        }
                    }
                } else if let Some(set) = self.blocked.get_mut(&by) {
                    set.remove(&user);
                }
            }
        }
    }

    /// Drops the friendship of `me` and `other`, and the accepted request
    /// it came from.
    fn unlink(&mut self, me: UserId, other: UserId) {
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
    }
}

/// A friendship change as committed: what another node hands the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FriendChange {
    /// `from` asked `to`.
    Requested { from: UserId, to: UserId, at: i64 },
    /// `to` accepted `from`'s request (or asked back): friends now.
    Accepted { from: UserId, to: UserId, at: i64 },
    /// `to` rejected `from`'s request.
    Rejected { from: UserId, to: UserId, at: i64 },
    /// `by` ended the friendship with `other`.
    Removed { by: UserId, other: UserId },
    /// `by` blocked (`on`) or unblocked `user`.
    Blocked { by: UserId, user: UserId, on: bool },
}

impl Hub {
    /// Applies a friendship change committed elsewhere and tells both sides'
    /// sessions on this node what its maker's would have been told.
    pub(super) fn apply_friend_change(&mut self, change: FriendChange, out: &mut Out) {
        if let FriendChange::Blocked { by, user, on } = change {
            // A block ends a friendship, which both sides hear of.
            if on && self.friends.are_friends(by, user) {
                let news = FriendNews::Removed;
                out.emits
                    .extend(self.friend_news(None, by, user, news, news));
            }
            self.friends.apply(change);
            out.emits.push(self.block_news(None, by, user, on));
            return;
        }
        self.friends.apply(change);
        // (maker, other, what other hears, what the maker's sessions hear)
        let (maker, other, theirs, mine) = match change {
            FriendChange::Requested { from, to, .. } => {
                (from, to, FriendNews::Request, FriendNews::Requested)
            }
            FriendChange::Accepted { from, to, .. } => {
                (to, from, FriendNews::Accepted, FriendNews::Accepted)
            }
            FriendChange::Rejected { from, to, .. } => {
                (to, from, FriendNews::Rejected, FriendNews::Rejected)
            }
            FriendChange::Removed { by, other } => {
                (by, other, FriendNews::Removed, FriendNews::Removed)
            }
            FriendChange::Blocked { .. } => return,
        };
        let events = self.friend_news(None, maker, other, theirs, mine);
        out.emits.extend(events);
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
            FriendError::AlreadyBlocked => ChatError::AlreadyBlocked(name),
            FriendError::NotBlocked => ChatError::NotBlocked(name),
            FriendError::Blocked => ChatError::YouBlock(name),
        }
    }

    pub(super) fn friend(
        &mut self,
        sid: SessionId,
        uid: UserId,
        cmd: FriendCmd<'_>,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        let now = self.now();
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
                let accepted = added == Added::Accepted;
                let (theirs, mine) = if accepted {
                    (FriendNews::Accepted, FriendNews::Accepted)
                } else {
                    (FriendNews::Request, FriendNews::Requested)
                };
                let mut events = self.friend_news(Some(sid), uid, other, theirs, mine);
                // A request to someone who blocks its sender is kept, but
                // they never hear of it, nor does the sender learn why.
                if self.friends.blocks(other, uid) {
                    events.retain(|e| {
                        !matches!(e, Emit::Event(Audience::User { user, .. }, _) if *user == other)
                    });
                }
                let change = if accepted {
                    FriendChange::Accepted {
                        from: other,
                        to: uid,
                        at: now,
                    }
                } else {
                    FriendChange::Requested {
                        from: uid,
                        to: other,
                        at: now,
                    }
                };
                let reply = Reply::FriendAdded { other, accepted };
                self.commit(sid, writes, reply, events, Change::Friendship(change), out);
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
                let (news, change) = if accept {
                    let change = FriendChange::Accepted {
                        from: other,
                        to: uid,
                        at: now,
                    };
                    (FriendNews::Accepted, change)
                } else {
                    let change = FriendChange::Rejected {
                        from: other,
                        to: uid,
                        at: now,
                    };
                    (FriendNews::Rejected, change)
                };
                let events = self.friend_news(Some(sid), uid, other, news, news);
                let reply = Reply::FriendAnswered {
                    other,
                    accepted: accept,
                };
                self.commit(sid, writes, reply, events, Change::Friendship(change), out);
            }
            FriendCmd::Block(name) | FriendCmd::Unblock(name) => {
                let on = matches!(cmd, FriendCmd::Block(_));
                let other = self.find_user(name)?;
                let (unfriended, writes) = if on {
                    self.friends.block(uid, other)
                } else {
                    self.friends.unblock(uid, other).map(|w| (false, w))
                }
                .map_err(|e| self.friend_error(e, other))?;
                let mut events = Vec::new();
                if unfriended {
                    let news = FriendNews::Removed;
                    events = self.friend_news(Some(sid), uid, other, news, news);
                }
                events.push(self.block_news(Some(sid), uid, other, on));
                let change = Change::Friendship(FriendChange::Blocked {
                    by: uid,
                    user: other,
                    on,
                });
                let reply = Reply::Blocked { other, on };
                self.commit(sid, writes, reply, events, change, out);
            }
            FriendCmd::Blocked => {
                let users = self.friends.blocked_by(uid).collect();
                out.reply(sid, Reply::BlockList(users));
            }
            FriendCmd::Remove(name) => {
                let other = self.find_user(name)?;
                let writes = self
                    .friends
                    .remove(uid, other)
                    .map_err(|e| self.friend_error(e, other))?;
                let news = FriendNews::Removed;
                let events = self.friend_news(Some(sid), uid, other, news, news);
                let change = Change::Friendship(FriendChange::Removed { by: uid, other });
                let reply = Reply::FriendRemoved(other);
                self.commit(sid, writes, reply, events, change, out);
            }
        }
        Ok(())
    }

    /// What both sides of a friendship change hear, once it is durable (see
    /// `commit`): `other` gets `theirs` about `uid`, and `uid`'s sessions
    /// but `except` (the one that made the change) get `mine` about `other`.
    fn friend_news(
        &self,
        except: Option<SessionId>,
        uid: UserId,
        other: UserId,
        theirs: FriendNews,
        mine: FriendNews,
    ) -> Vec<Emit> {
        vec![
            Emit::Event(
                Audience::user(other, None),
                Event::Friend {
                    news: theirs,
                    other: uid,
                },
            ),
            Emit::Event(
                Audience::user(uid, except),
                Event::Friend { news: mine, other },
            ),
        ]
    }

    /// What `uid`'s sessions but `except` hear when it blocks or unblocks
    /// `other`; `other` hears nothing.
    fn block_news(&self, except: Option<SessionId>, uid: UserId, other: UserId, on: bool) -> Emit {
        let news = if on {
            FriendNews::Blocked
        } else {
            FriendNews::Unblocked
        };
        Emit::Event(Audience::user(uid, except), Event::Friend { news, other })
    }

    fn friend_list(&self, sid: SessionId, uid: UserId, out: &mut Out) {
        let friends = self
            .friends
            .friends_of(uid)
            .filter_map(|f| Some((f, self.presence_of(f, self.users.get(f)?))))
            .collect();
        out.reply(sid, Reply::Friends(friends));
    }

    fn request_list(&self, sid: SessionId, uid: UserId, out: &mut Out) {
        let mut reqs: Vec<_> = self.friends.requests_of(uid).collect();
        reqs.sort_by_key(|(_, r)| r.at);
        let reqs = reqs
            .into_iter()
            .map(|((from, to), r)| RequestInfo {
                outgoing: from == uid,
                other: if from == uid { to } else { from },
                state: r.state,
                at: r.at,
            })
            .collect();
        out.reply(sid, Reply::FriendRequests(reqs));
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
    fn a_block_ends_the_friendship_and_hides_requests_until_lifted() {
        let mut f = Friends::default();
        f.request(A, B, 1).unwrap();
        f.accept(B, A, 2).unwrap();
        let (unfriended, writes) = f.block(A, B).unwrap();
        assert!(unfriended && !f.are_friends(A, B));
        assert_eq!(writes.len(), 2, "the unfriending and the block together");
        assert_eq!(f.block(A, B), Err(FriendError::AlreadyBlocked));
        assert_eq!(f.request(A, B, 3), Err(FriendError::Blocked));
        // B's request is kept, but A does not see it.
        assert_eq!(f.request(B, A, 3).unwrap().0, Added::Requested);
        assert_eq!(f.requests_of(A).count(), 0);
        assert_eq!(f.accept(A, B, 4), Err(FriendError::NoRequest));
        f.unblock(A, B).unwrap();
        assert_eq!(f.unblock(A, B), Err(FriendError::NotBlocked));
        assert_eq!(f.requests_of(A).count(), 1);
        f.accept(A, B, 5).unwrap();
        assert!(f.are_friends(A, B));
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
