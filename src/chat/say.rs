//! SAY: the one publish pipeline for rooms, groups and direct conversations.
//!
//! A message gets its conversation's next seq and a UUIDv7 id, is handed to
//! storage, and (under `--durability sync`) is fanned out and acknowledged
//! only once committed, so nobody ever sees a message that a crash could
//! take back. Under `async` it waits instead for the end of the driver's
//! loop turn ([`Hub::flush_posts`]). Either way the messages of one
//! conversation that are ready together are published as one
//! [`Event::Messages`], which `fanout` encodes once per point of view (one
//! for a room, two for a direct conversation) and shares among every
//! recipient: a subscriber gets one buffer per batch, not one per message.

use super::found::{ConvKey, Founder, Founding, Parked};
use super::{
    Ack, Change, ChatError, ConvId, Durability, Hub, IdMap, Msg, MsgState, Out, Pending, Posted,
    Reply, Seq, SessionId, Shared, UserId,
};
use super::{names, pair};
use crate::protocol::{Command, Target};
use crate::store::{self, ConvKind, NewMember, Post, Write};

/// Messages of one conversation with their senders, oldest first.
type Run = Vec<(SessionId, Msg, Ack)>;

/// Messages posted under `--durability async` since the turn began, with
/// their seqs, waiting for [`Hub::flush_posts`].
#[derive(Default)]
pub(super) struct Unpublished {
    /// One batch per conversation, in the order they were first posted to.
    batches: Vec<(ConvId, Vec<Posted>)>,
    /// Where each conversation's batch is in `batches`.
    at: IdMap<ConvId, usize>,
    /// The answers owed, in the order posted: a session's answers must
    /// fill its deferred slots in command order.
    acks: Vec<(ConvId, SessionId, Msg, Ack)>,
}

impl Unpublished {
    /// The seq of `conv`'s newest waiting message.
    fn last_seq(&self, conv: ConvId) -> Option<Seq> {
        let batch = &self.batches[*self.at.get(&conv)?].1;
        batch.last().map(|p| p.msg.seq)
    }

    fn push(&mut self, conv: ConvId, sid: SessionId, msg: Msg, ack: Ack) {
        let batches = &mut self.batches;
        let i = *self.at.entry(conv).or_insert_with(|| {
            batches.push((conv, Vec::new()));
            batches.len() - 1
        });
        let posted = Posted {
            origin: Some(sid),
            msg: msg.clone(),
        };
        self.batches[i].1.push(posted);
        self.acks.push((conv, sid, msg, ack));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.acks.is_empty()
    }
}

/// Where a message goes.
pub(super) enum Speak {
    /// A conversation the hub has.
    Here(ConvId),
    /// One being founded: the post waits for it.
    Founding(ConvKey),
}

impl Hub {
    pub(super) fn say(
        &mut self,
        sid: SessionId,
        uid: UserId,
        to: Target<'_>,
        text: &str,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        names::message_text(text, self.cfg.max_text)?;
        match self.speak_conv(uid, to, out)? {
            Speak::Here(conv) => {
                let text = text.to_string();
                self.post(sid, uid, conv, text, Vec::new(), Ack::Say, false, out);
            }
            Speak::Founding(key) => {
                let to = match to {
                    Target::Room(name) | Target::User(name) => name.to_string(),
                };
                let text = text.to_string();
                self.park(sid, key, Parked::Say { uid, to, text }, true, out);
            }
        }
        Ok(())
    }

    /// REPLY: a message that answers message `seq` of the same
    /// conversation, which must exist and (as far as the hub holds it, the
    /// newest `--recent`) not be deleted. Who may post is SAY's rule.
    pub(super) fn reply(
        &mut self,
        sid: SessionId,
        uid: UserId,
        to: Target<'_>,
        seq: Seq,
        text: &str,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        names::message_text(text, self.cfg.max_text)?;
        let conv = self.message_conv(uid, to, seq)?;
        let deleted = self.conv(conv)?.recent_msg(seq).map(|m| m.state);
        if deleted == Some(MsgState::Deleted) {
            return Err(ChatError::NoSuchMessage);
        }
        match self.speak_conv(uid, to, out)? {
            Speak::Here(here) if here == conv => {
                let text = text.to_string();
                self.post(
                    sid,
                    uid,
                    conv,
                    text,
                    Vec::new(),
                    Ack::Reply(seq),
                    false,
                    out,
                );
                Ok(())
            }
            _ => Err(ChatError::NoSuchMessage),
        }
    }

    /// Where `uid` may post: a room it is in, or the direct conversation
    /// with a friend (founded on first use, which under `--durability sync`
    /// the post waits for).
    pub(super) fn speak_conv(
        &mut self,
        uid: UserId,
        to: Target<'_>,
        out: &mut Out,
    ) -> Result<Speak, ChatError> {
        match to {
            Target::Room(room) => {
                let name = names::room(room)?;
                let id = *self.rooms.get(&name).ok_or(ChatError::NoSuchRoom)?;
                if self.conv(id)?.member(uid).is_none() {
                    return Err(ChatError::NotMember(name));
                }
                self.check_not_muted(uid, id)?;
                Ok(Speak::Here(id))
            }
            Target::User(friend) => self.direct_conv(uid, friend, out),
        }
    }

    /// Makes `text` durable in `conv` with `writes`, and publishes it. Under
    /// `--durability sync` the commit assigns its seq and it is published
    /// once committed; under `async` (single node) the hub assigns the next
    /// seq and storage gets the write at once, and it is published at the
    /// end of the turn. Its sender's answer is deferred until then;
    /// `deferred`: its slot already exists (ATTACH).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn post(
        &mut self,
        sid: SessionId,
        uid: UserId,
        conv: ConvId,
        text: String,
        mut writes: Vec<Write>,
        ack: Ack,
        deferred: bool,
        out: &mut Out,
    ) {
        let at = self.now();
        let id = self.env.msg_id();
        let Some(c) = self.convs.get(conv) else {
            return out.fail(sid, ChatError::NoSuchConversation);
        };
        self.counters.messages_in += 1;
        self.typing.remove(&(uid, conv));
        let (blob, reply_to) = match &ack {
            Ack::Attach(blob) => (Some(blob.clone()), None),
            Ack::Reply(seq) => (None, Some(*seq)),
            Ack::Say => (None, None),
        };
        writes.extend(self.notifications(conv, uid, &id, &text, at));
        let post = Post {
            conv,
            id,
            sender: uid,
            at,
            text,
            blob,
            reply_to,
        };
        if !deferred {
            out.defer(sid);
        }
        match self.cfg.durability {
            Durability::Sync | Durability::Write => {
                let msg = Msg::from(post.stored(Seq::ZERO));
                writes.push(Write::Post(post));
                let pending = Pending::Said {
                    sid,
                    conv,
                    msg,
                    ack,
                };
                out.store.push(store::Request::write(writes, Some(pending)));
            }
            Durability::Async => {
                let last = self.unpublished.last_seq(conv).unwrap_or(c.last_seq);
                let msg = Msg::from(post.stored(last.next()));
                writes.extend(post.writes(msg.seq));
                out.store.push(store::Request::write(writes, None));
                self.unpublished.push(conv, sid, msg, ack);
            }
        }
    }

    /// Publishes the messages posted under `--durability async` and not yet
    /// published, one batch per conversation, and answers their senders.
    /// The driver calls this at the end of each loop turn, and before an
    /// input that [`Hub::publishes_first`], routing what it gives before
    /// the input can change who hears it (a JOIN would otherwise get a
    /// message twice, in its replay and as news). Every hub input but a
    /// SAY calls it first, so none sees the hub without them.
    pub fn flush_posts(&mut self, out: &mut Out) {
        if self.unpublished.is_empty() {
            return;
        }
        let Unpublished { batches, acks, .. } = std::mem::take(&mut self.unpublished);
        for (conv, posts) in batches {
            self.apply(Change::Posted { conv, posts }, out);
        }
        let mut read = Vec::new();
        for (conv, sid, msg, ack) in acks {
            read.extend(self.acknowledge(conv, &msg, sid, ack, out));
        }
        self.announce_read(read, out);
    }

    /// Whether `cmd` must see the waiting messages published first: any
    /// command but a SAY, which joins them.
    pub fn publishes_first(&self, cmd: &Command<'_>) -> bool {
        !self.unpublished.is_empty() && !matches!(cmd, Command::Say { .. })
    }

    /// The direct conversation between `uid` and the friend named `friend`,
    /// founded on first use.
    fn direct_conv(
        &mut self,
        uid: UserId,
        friend: &str,
        out: &mut Out,
    ) -> Result<Speak, ChatError> {
        let other = self.find_user(friend)?;
        if other == uid {
            return Err(ChatError::SelfTarget);
        }
        if !self.friends.are_friends(uid, other) {
            return Err(ChatError::NotFriends(self.name(other).to_string()));
        }
        let (a, b) = pair(uid, other);
        if let Some(&id) = self.directs.get(&(a, b)) {
            return Ok(Speak::Here(id));
        }
        let key = ConvKey::Direct(a, b);
        if self.founding.contains_key(&key) {
            return Ok(Speak::Founding(key));
        }
        let joined = self.now();
        let member = |user| NewMember {
            user,
            admin: false,
            joined,
        };
        let founding = Founding {
            key: key.clone(),
            kind: ConvKind::Direct,
            name: format!("@{a}:{b}"),
            members: vec![member(a), member(b)],
            founder: Founder::Message,
        };
        Ok(match self.found(founding, out) {
            Some(id) => Speak::Here(id),
            None => Speak::Founding(key),
        })
    }

    /// In a direct conversation, the member who is not `me`.
    pub(super) fn other_member(&self, conv: ConvId, me: UserId) -> UserId {
        self.convs
            .get(conv)
            .into_iter()
            .flat_map(|c| &c.members)
            .map(|m| m.user)
            .find(|&u| u != me)
            .unwrap_or(me)
    }

    /// Applies durable messages of one conversation (fanned out to every
    /// member session but their senders') and answers their senders, whose
    /// replies were deferred.
    pub(super) fn publish(&mut self, conv: ConvId, batch: Run, out: &mut Out) {
        let posts = batch
            .iter()
            .map(|(origin, msg, _)| Posted {
                origin: Some(*origin),
                msg: msg.clone(),
            })
            .collect();
        if self.cfg.clustered {
            let shared = || {
                Shared::Change(Change::Posted {
                    conv,
                    posts: Vec::clone(&posts),
                })
            };
            self.share(shared, out);
            self.sequence(conv, posts, out);
        } else {
            self.apply(Change::Posted { conv, posts }, out);
        }
        let mut read = Vec::new();
        for (origin, msg, ack) in batch {
            read.extend(self.acknowledge(conv, &msg, origin, ack, out));
        }
        self.announce_read(read, out);
    }

    /// Tells each sender's other sessions where its unread count stands
    /// once a whole batch is answered: a sender whose later messages are in
    /// the batch has read up to the last of them, not the first.
    fn announce_read(&mut self, mut read: Vec<(UserId, ConvId, SessionId)>, out: &mut Out) {
        read.dedup();
        for (user, conv, origin) in read {
            self.announce_unread(user, conv, Some(origin), out);
        }
    }

    /// Answers the sender of a published message; returns the sender, the
    /// conversation and the session if speaking read messages of others,
    /// which the sender's other sessions are to hear of.
    fn acknowledge(
        &mut self,
        conv: ConvId,
        msg: &Msg,
        origin: SessionId,
        ack: Ack,
        out: &mut Out,
    ) -> Option<(UserId, ConvId, SessionId)> {
        let reply = match ack {
            Ack::Say => Reply::Said {
                conv,
                seq: msg.seq,
                id: msg.id,
            },
            Ack::Reply(_) => Reply::Replied {
                conv,
                seq: msg.seq,
                id: msg.id,
            },
            Ack::Attach(blob) => Reply::Attached {
                conv,
                seq: msg.seq,
                id: msg.id,
                blob,
            },
        };
        out.complete(origin, reply);
        // The sender has its own message: it is not news to them on SYNC,
        // and they have read what came before it. Their other sessions
        // hear of that only if messages from others were unread.
        let read_before = self.mark_read(msg.sender, conv, msg.seq, out);
        (read_before < msg.seq.prev()).then_some((msg.sender, conv, origin))
    }
}
