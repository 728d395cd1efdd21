//! Founding a conversation: a room on its first JOIN, a group on CREATE, a
//! direct conversation on the first message between two friends.
//!
//! Under `--durability sync` the commit assigns the new conversation's id,
//! so the hub has the conversation only once it is committed (and applied
//! through [`Hub::apply`], as another node's would be). Commands that need
//! it meanwhile (a second JOIN of the room, a SAY to the friend, the
//! founder's own first message) are parked with their session held, and run
//! again once it is applied: two founders cannot make two rooms of one name,
//! and nobody hears of a conversation a crash could take back. Under
//! `--durability async` (single node) the hub picks the id and founds at
//! once.

use super::attach::Upload;
use super::{
    Audience, Change, ChatError, ConvId, ConvKind, Durability, Emit, Event, Hub, Member, Out,
    Output, Pending, Reply, SessionId, UserId,
};
use crate::protocol::Target;
use crate::store::{NewConv, NewMember, Request, Write};

/// A conversation being founded, by what makes it unique.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConvKey {
    /// A room or group, by its (normalised) name.
    Room(String),
    /// A direct conversation, by its two users, lower id first.
    Direct(UserId, UserId),
}

/// Whom a founding answers once committed.
#[derive(Debug)]
pub enum Founder {
    /// The JOIN that founded a public room.
    Join { sid: SessionId, uid: UserId },
    /// The CREATE that founded a group.
    Create { sid: SessionId, uid: UserId },
    /// Nobody: a direct conversation is founded for a message, which is
    /// parked and answered as it runs again.
    Message,
}

/// A conversation to found.
#[derive(Debug)]
pub struct Founding {
    pub(super) key: ConvKey,
    pub(super) kind: ConvKind,
    pub(super) name: String,
    pub(super) members: Vec<NewMember>,
    pub(super) founder: Founder,
}

/// A command waiting for a conversation to be founded.
#[derive(Debug)]
pub enum Parked {
    Join {
        uid: UserId,
        room: String,
    },
    Say {
        uid: UserId,
        to: String,
        text: String,
    },
    /// An ATTACH whose body is stored, to post once the conversation exists.
    Attach {
        upload: Box<Upload>,
        blob: String,
    },
}

impl Founding {
    /// The change it is once it has id `conv`.
    fn change(&self, conv: ConvId) -> Change {
        Change::Founded {
            conv,
            kind: self.kind,
            name: self.name.clone(),
            members: self
                .members
                .iter()
                .map(|m| Member {
                    user: m.user,
                    admin: m.admin,
                    joined: m.joined,
                })
                .collect(),
        }
    }

    /// What storage records of it.
    fn new_conv(&self, created: i64) -> NewConv {
        NewConv {
            kind: self.kind,
            name: self.name.clone(),
            created,
            members: self.members.clone(),
        }
    }
}

impl Hub {
    /// Founds `f`. Returns its id at once under `--durability async`; under
    /// `sync` returns `None` and the founding completes in [`Hub::founded`].
    pub(super) fn found(&mut self, f: Founding, out: &mut Out) -> Option<ConvId> {
        let created = self.now();
        match self.cfg.durability {
            Durability::Sync | Durability::Write => {
                if let Founder::Join { sid, .. } | Founder::Create { sid, .. } = f.founder {
                    // Its next commands (a pipelined SAY to the new room)
                    // wait until the room exists.
                    self.hold(sid);
                    out.defer(sid);
                }
                self.founding.insert(f.key.clone(), Vec::new());
                let mut writes = vec![Write::NewConv(f.new_conv(created))];
                // The store fills in the id it assigns.
                self.log_write(&mut writes, || f.change(ConvId::default()));
                let pending = Pending::Founded(Box::new(f));
                out.store.push(Request::write(writes, Some(pending)));
                None
            }
            Durability::Async => {
                let id = self.convs.next_id();
                self.persist(f.new_conv(created).writes(id), out);
                self.founded(id, f, false, None, out);
                Some(id)
            }
        }
    }

    /// A founding is durable as `conv` (at once under async): apply it,
    /// answer its founder (`deferred`: with a `Complete`), and run what was
    /// parked on it; `log` is its change log entry (`--bus`).
    pub(super) fn founded(
        &mut self,
        conv: ConvId,
        f: Founding,
        deferred: bool,
        log: Option<u64>,
        out: &mut Out,
    ) {
        let change = f.change(conv);
        self.logged(log, change.clone(), out);
        self.apply(change, out);
        let answer = match f.founder {
            Founder::Join { sid, uid } => {
                let reply = Reply::Joined {
                    conv,
                    created: true,
                    replay: Vec::new(),
                    topic: None,
                };
                Some((sid, uid, reply))
            }
            Founder::Create { sid, uid } => Some((sid, uid, Reply::Created(conv))),
            Founder::Message => None,
        };
        if let Some((sid, user, reply)) = answer {
            self.unbusy(sid);
            // The founder is the only member yet: its other sessions hear it.
            // (Addressed to the user, not the room: whoever the parked
            // commands below add must not hear of it before their own OK.)
            let to = Audience::user(user, Some(sid));
            out.event(to, Event::Joined { conv, user });
            let output = if deferred {
                Output::Complete(reply)
            } else {
                Output::Reply(reply)
            };
            out.to(sid, output);
        }
        for (sid, parked) in self.founding.remove(&f.key).unwrap_or_default() {
            self.run_parked(sid, parked, out);
        }
    }

    /// A founding's commit failed: its founder and everything parked on it
    /// are answered with `err`.
    pub(super) fn founding_failed(&mut self, f: Founding, err: ChatError, out: &mut Out) {
        if let Founder::Join { sid, .. } | Founder::Create { sid, .. } = f.founder {
            self.unbusy(sid);
            out.fail(sid, err.clone());
        }
        for (sid, _) in self.founding.remove(&f.key).unwrap_or_default() {
            self.unbusy(sid);
            out.fail(sid, err.clone());
        }
    }

    /// Holds `sid`'s command until the conversation `key` is founded.
    /// `new_slot`: the command has no answer slot yet (SAY, JOIN); an ATTACH
    /// has had one since its line.
    pub(super) fn park(
        &mut self,
        sid: SessionId,
        key: ConvKey,
        parked: Parked,
        new_slot: bool,
        out: &mut Out,
    ) {
        self.hold(sid);
        if new_slot {
            out.defer(sid);
        }
        self.founding.entry(key).or_default().push((sid, parked));
    }

    /// Runs a parked command again. Its answer slot exists already (the
    /// `Defer` sent when it was parked): the command's own first `Defer` is
    /// that slot, and an immediate reply completes it.
    fn run_parked(&mut self, sid: SessionId, parked: Parked, out: &mut Out) {
        self.unbusy(sid);
        if !self.sessions.contains_key(&sid) {
            return;
        }
        let mut again = Out::default();
        let result = match parked {
            Parked::Join { uid, room } => self.join(sid, uid, &room, &mut again),
            Parked::Say { uid, to, text } => {
                self.say(sid, uid, Target::User(&to), &text, &mut again)
            }
            Parked::Attach { upload, blob } => self.post_attachment(sid, *upload, blob, &mut again),
        };
        if let Err(e) = result {
            again.reply(sid, Reply::Failed(e));
        }
        let mut slot_open = true;
        for emit in again.emits {
            match emit {
                Emit::To(s, Output::Defer) if s == sid && slot_open => slot_open = false,
                Emit::To(s, Output::Reply(r)) if s == sid && slot_open => {
                    slot_open = false;
                    out.complete(s, r);
                }
                other => out.emits.push(other),
            }
        }
        out.auth.extend(again.auth);
        out.store.extend(again.store);
        out.blobs.extend(again.blobs);
    }
}
