//! REGISTER, LOGIN and the end of a session.
//!
//! Both commands hand the password to the hashing pool and mark the session
//! busy, so the driver holds its next lines until the answer is in: whatever
//! the client pipelined after LOGIN is then read as a logged-in session.

use super::{
    AuthCtx, Change, ChatError, Hub, Out, Pending, Reply, SessionId, Shared, UserId, names,
};
use crate::auth::{self, Outcome, Work};
use crate::store::{Request, Write};

impl Hub {
    pub(super) fn register(
        &mut self,
        sid: SessionId,
        name: &str,
        password: &str,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        let name = names::user(name)?;
        names::password(password)?;
        if self.by_name.contains_key(name.as_str()) || self.reserved.contains_key(&name) {
            return Err(ChatError::UserExists);
        }
        self.reserved.insert(name.clone(), sid);
        self.start_auth(
            sid,
            Work::Hash {
                password: password.to_string(),
            },
            AuthCtx::Register { sid, name },
            out,
        );
        Ok(())
    }

    pub(super) fn login(
        &mut self,
        sid: SessionId,
        name: &str,
        password: &str,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        // No registered password has whitespace (see `names::password`).
        if password.chars().any(char::is_whitespace) {
            return Err(ChatError::BadPassword);
        }
        // An unknown or malformed name still costs one verification, against
        // the decoy hash, so timing does not reveal whether the user exists.
        let user = names::user(name)
            .ok()
            .and_then(|n| self.by_name.get(n.as_str()).copied());
        let phc = user
            .and_then(|u| self.users.get(u))
            .map_or_else(|| self.decoy_phc.clone(), |u| u.phc.to_string());
        self.start_auth(
            sid,
            Work::Verify {
                password: password.to_string(),
                phc,
            },
            AuthCtx::Login { sid, user },
            out,
        );
        Ok(())
    }

    fn start_auth(&mut self, sid: SessionId, work: Work, ctx: AuthCtx, out: &mut Out) {
        self.hold(sid);
        out.defer(sid);
        out.auth.push(auth::Job { work, ctx });
    }

    /// A hashing job came back from the pool.
    pub fn authed(&mut self, done: auth::Done<AuthCtx>, out: &mut Out) {
        self.flush_posts(out);
        match (done.ctx, done.outcome) {
            (AuthCtx::Register { sid, name }, Outcome::Hashed(Some(phc))) => {
                if self.by_name.contains_key(name.as_str()) {
                    self.reserved.remove(&name);
                    return self.finish_auth(sid, Err(ChatError::UserExists), out);
                }
                let created = self.now();
                match self.cfg.durability {
                    // The commit assigns the id; the name stays reserved
                    // until then.
                    super::Durability::Sync | super::Durability::Write => {
                        let mut writes = vec![Write::Register {
                            name: name.clone(),
                            phc: phc.clone(),
                            created,
                        }];
                        // The store fills in the id it assigns.
                        self.log_write(&mut writes, || Change::Registered {
                            user: UserId(0),
                            name: name.clone(),
                            phc: phc.clone(),
                        });
                        let pending = Pending::Registered { sid, name, phc };
                        out.store.push(Request::write(writes, Some(pending)));
                    }
                    // Single node: the hub picks the id and applies at once.
                    super::Durability::Async => {
                        self.reserved.remove(&name);
                        let user = self.users.next_id();
                        let write = Write::User {
                            id: user,
                            name: name.clone(),
                            phc: phc.clone(),
                            created,
                        };
                        self.persist(vec![write], out);
                        let change = Change::Registered { user, name, phc };
                        self.share(|| Shared::Change(change.clone()), out);
                        self.apply(change, out);
                        self.registered(sid, Ok(user), out);
                    }
                }
            }
            (AuthCtx::Register { sid, name }, _) => {
                self.reserved.remove(&name);
                self.finish_auth(sid, Err(ChatError::Internal), out);
            }
            (AuthCtx::Login { sid, user }, Outcome::Verified(true)) => match user {
                Some(uid) if self.sessions_of(uid).len() >= self.cfg.max_sessions_per_user => {
                    self.finish_auth(sid, Err(ChatError::TooManySessions), out)
                }
                Some(uid) => {
                    self.finish_auth(sid, Ok((uid, Reply::LoggedIn(uid))), out);
                    if self.user_of(sid) == Some(uid) {
                        self.sync_after_login(sid, uid, out);
                    }
                }
                None => self.finish_auth(sid, Err(ChatError::BadLogin), out),
            },
            (AuthCtx::Login { sid, .. }, _) => self.finish_auth(sid, Err(ChatError::BadLogin), out),
        }
    }

    /// A new account is durable (or failed to be): log its session in.
    pub(super) fn registered(
        &mut self,
        sid: SessionId,
        stored: Result<UserId, ChatError>,
        out: &mut Out,
    ) {
        let result = stored.map(|uid| (uid, Reply::Registered(uid)));
        self.finish_auth(sid, result, out);
    }

    /// Ends an auth step: answers the deferred command and frees the session's input.
    fn finish_auth(
        &mut self,
        sid: SessionId,
        result: Result<(UserId, Reply), ChatError>,
        out: &mut Out,
    ) {
        let Some(state) = self.sessions.get_mut(&sid) else {
            return;
        };
        state.busy = false;
        match result {
            Ok((uid, reply)) => {
                state.user = Some(uid);
                log::info!("session {sid} logged in as {}", self.name(uid));
                out.complete(sid, reply);
                self.session_opened(sid, uid, out);
            }
            Err(e) => out.fail(sid, e),
        }
    }

    fn session_opened(&mut self, sid: SessionId, uid: UserId, out: &mut Out) {
        let Some(user) = self.users.get_mut(uid) else {
            return;
        };
        // Most users have one session: no spare capacity for three more.
        user.sessions.reserve_exact(1);
        user.sessions.push(sid);
        if user.sessions.len() == 1 {
            self.user_here(uid, true, out);
            // Online elsewhere already: nobody's view changes.
            if !self.elsewhere.contains(&uid) {
                self.announce_presence(uid, out);
            }
        }
    }

    pub(super) fn logout(&mut self, sid: SessionId, uid: UserId, out: &mut Out) {
        let at = self.now();
        let Some(user) = self.users.get_mut(uid) else {
            return;
        };
        user.sessions.retain(|&s| s != sid);
        if user.sessions.is_empty() {
            user.last_seen = Some(at);
            // Away ends with the user's last session anywhere.
            if !self.elsewhere.contains(&uid) {
                user.away = None;
            }
            self.user_here(uid, false, out);
            self.persist(vec![Write::LastSeen { user: uid, at }], out);
            if !self.elsewhere.contains(&uid) {
                self.announce_presence(uid, out);
            }
        }
    }
}
