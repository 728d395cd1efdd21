//! SAY: the one publish pipeline for rooms, groups and direct conversations.
//!
//! A message gets its conversation's next seq and a UUIDv7 id, is handed to
//! storage, and (under `--durability sync`) is fanned out and acknowledged
//! only once committed, so nobody ever sees a message that a crash could
//! take back. Its MSG line is encoded once per point of view (one for a room,
//! two for a direct conversation) and that buffer is shared by every recipient.

use bytes::Bytes;

use super::{
    Ack, ChatError, ConvId, Durability, Hub, Msg, Out, Output, Pending, SessionId, UserId,
};
use super::{ms_to_time, names, now_ms, pair};
use crate::line;
use crate::protocol::{Target, encode};
use crate::store::{self, ConvKind, MsgState, StoredMessage, Write};

impl Hub {
    pub(super) fn say(
        &mut self,
        sid: SessionId,
        uid: UserId,
        to: Target<'_>,
        text: &str,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        names::text(text, self.cfg.max_text)?;
        if names::is_attachment_text(text) {
            return Err(ChatError::ReservedText);
        }
        let mut writes = Vec::with_capacity(1);
        let conv = self.speak_conv(uid, to, &mut writes)?;
        self.post(
            sid,
            uid,
            conv,
            text.to_string(),
            writes,
            Ack::Say,
            false,
            out,
        );
        Ok(())
    }

    /// Where `uid` may post: a room it is in, or the direct conversation
    /// with a friend (created, into `writes`, on first use).
    pub(super) fn speak_conv(
        &mut self,
        uid: UserId,
        to: Target<'_>,
        writes: &mut Vec<Write>,
    ) -> Result<ConvId, ChatError> {
        match to {
            Target::Room(room) => {
                let name = names::room(room)?;
                let id = *self.rooms.get(&name).ok_or(ChatError::NoSuchRoom)?;
                if self.conv(id)?.member(uid).is_none() {
                    return Err(ChatError::NotMember(name));
                }
                Ok(id)
            }
            Target::User(friend) => self.direct_conv(uid, friend, writes),
        }
    }

    /// Gives `text` the next seq of `conv`, makes it durable with `writes`,
    /// and publishes it (after the commit under `--durability sync`).
    /// `deferred`: the command's answer slot already exists (ATTACH).
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
        let Some(c) = self.convs.get_mut(conv) else {
            return out.fail(sid, &ChatError::NoSuchConversation);
        };
        self.counters.messages_in += 1;
        c.last_seq += 1;
        let msg = Msg {
            seq: c.last_seq,
            id: uuid::Uuid::now_v7(),
            sender: uid,
            at: now_ms(),
            text: text.as_str().into(),
            state: MsgState::Sent,
        };
        self.typing.remove(&(uid, conv));
        writes.push(Write::Message(StoredMessage {
            conv,
            seq: msg.seq,
            id: msg.id,
            sender: uid,
            at: msg.at,
            text,
            state: MsgState::Sent,
        }));
        if let Ack::Attach(blob) = &ack {
            writes.push(Write::BlobRef {
                conv,
                seq: msg.seq,
                blob: blob.clone(),
            });
        }
        match self.cfg.durability {
            Durability::Sync => {
                out.store.push(store::Request::write(
                    writes,
                    Some(Pending::Said {
                        sid,
                        conv,
                        msg,
                        ack,
                    }),
                ));
                if !deferred {
                    out.lines.push((sid, Output::Defer));
                }
            }
            Durability::Async => {
                out.store.push(store::Request::write(writes, None));
                self.publish(conv, msg, sid, deferred, &ack, out);
            }
        }
    }

    /// The direct conversation between `uid` and the friend named `friend`,
    /// created on first use.
    fn direct_conv(
        &mut self,
        uid: UserId,
        friend: &str,
        writes: &mut Vec<Write>,
    ) -> Result<ConvId, ChatError> {
        let other = self.find_user(friend)?;
        if other == uid {
            return Err(ChatError::SelfTarget);
        }
        if !self.friends.are_friends(uid, other) {
            return Err(ChatError::NotFriends(self.name(other).to_string()));
        }
        let key = pair(uid, other);
        if let Some(&id) = self.directs.get(&key) {
            return Ok(id);
        }
        let id = self.new_direct(key, writes);
        Ok(id)
    }

    fn new_direct(&mut self, (a, b): (UserId, UserId), writes: &mut Vec<Write>) -> ConvId {
        let id = self.convs.next_id();
        let name = format!("@{a}:{b}");
        writes.push(Write::Conv {
            id,
            kind: ConvKind::Direct,
            name: name.clone(),
            created: now_ms(),
        });
        let mut conv = super::Conv::new(id, ConvKind::Direct, name);
        for user in [a, b] {
            let joined = now_ms();
            conv.members.push(super::Member {
                user,
                admin: false,
                joined,
            });
            if let Some(u) = self.users.get_mut(user) {
                u.convs.push(id);
            }
            writes.push(Write::Member {
                conv: id,
                user,
                admin: false,
                joined,
            });
        }
        self.convs.insert(id, conv);
        self.directs.insert((a, b), id);
        id
    }

    /// `MSG <conv> <seq> <msgid> <sender> <time> <text>`, where `conv` is the
    /// name as the recipient sees it.
    pub(super) fn msg_line(&self, conv_name: &str, m: &Msg) -> Bytes {
        line!(
            "MSG {conv_name} {} {} {} {} {}",
            m.seq,
            m.id,
            self.name(m.sender),
            ms_to_time(m.at),
            m.text
        )
    }

    /// How `viewer` names a conversation: `#room`, or `@other` for a direct one.
    pub(super) fn conv_name_for(&self, conv: ConvId, viewer: UserId) -> String {
        let Some(c) = self.convs.get(conv) else {
            return String::new();
        };
        if c.kind != ConvKind::Direct {
            return c.name.clone();
        }
        format!("@{}", self.name(self.other_member(conv, viewer)))
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

    /// Delivers a durable message to everyone, and answers its sender:
    /// `complete` says whether the sender's reply was deferred.
    pub(super) fn publish(
        &mut self,
        conv: ConvId,
        msg: Msg,
        origin: SessionId,
        complete: bool,
        ack: &Ack,
        out: &mut Out,
    ) {
        let mut sent = 0u64;
        let Some(c) = self.convs.get(conv) else {
            return self.acknowledge(conv, msg, origin, complete, ack, out);
        };
        if c.kind == ConvKind::Direct {
            for m in &c.members {
                let line = self.msg_line(&self.conv_name_for(conv, m.user), &msg);
                for &s in self.sessions_of(m.user) {
                    if s != origin {
                        out.deliver(s, line.clone(), conv, msg.seq);
                        sent += 1;
                    }
                }
            }
        } else {
            let line = self.msg_line(&c.name, &msg);
            for s in self.member_sessions(conv) {
                if s != origin {
                    out.deliver(s, line.clone(), conv, msg.seq);
                    sent += 1;
                }
            }
        }
        self.counters.deliveries_out += sent;
        self.acknowledge(conv, msg, origin, complete, ack, out);
    }

    /// Delivers consecutive committed messages of one room (or group) as
    /// shared buffers: every member session that sent none of them gets the
    /// same bytes, so a batch of N messages costs each recipient one queue
    /// entry instead of N. A sender's own sessions get the batch minus its
    /// messages. Buffers stay well under the outbox limit.
    pub(super) fn publish_batch(
        &mut self,
        conv: ConvId,
        batch: Vec<(SessionId, Msg, Ack)>,
        out: &mut Out,
    ) {
        let name = self.convs.get(conv).map_or("", |c| c.name.as_str());
        let lines: Vec<Bytes> = batch
            .iter()
            .map(|(_, m, _)| self.msg_line(name, m))
            .collect();
        let mut from = 0;
        while from < lines.len() {
            let mut to = from + 1;
            let mut bytes = lines[from].len();
            while to < lines.len() && bytes + lines[to].len() <= self.cfg.sync_chunk_bytes {
                bytes += lines[to].len();
                to += 1;
            }
            self.deliver_group(conv, &batch[from..to], &lines[from..to], out);
            from = to;
        }
        for (origin, msg, ack) in batch {
            self.acknowledge(conv, msg, origin, true, &ack, out);
        }
    }

    fn deliver_group(
        &mut self,
        conv: ConvId,
        batch: &[(SessionId, Msg, Ack)],
        lines: &[Bytes],
        out: &mut Out,
    ) {
        let all = encode::join(lines);
        let last = batch.last().map_or(0, |(_, m, _)| m.seq);
        let mut origins: Vec<SessionId> = batch.iter().map(|(s, _, _)| *s).collect();
        origins.sort_unstable();
        origins.dedup();
        let mut sent = 0u64;
        for s in self.member_sessions(conv) {
            if origins.binary_search(&s).is_err() {
                out.deliver(s, all.clone(), conv, last);
                sent += lines.len() as u64;
                continue;
            }
            let Some(seq) = batch
                .iter()
                .rev()
                .find(|(o, _, _)| *o != s)
                .map(|(_, m, _)| m.seq)
            else {
                continue;
            };
            let theirs: Vec<Bytes> = batch
                .iter()
                .zip(lines)
                .filter(|((o, _, _), _)| *o != s)
                .map(|(_, l)| l.clone())
                .collect();
            sent += theirs.len() as u64;
            out.deliver(s, encode::join(&theirs), conv, seq);
        }
        self.counters.deliveries_out += sent;
    }

    /// Answers the sender of a published message and files the message.
    fn acknowledge(
        &mut self,
        conv: ConvId,
        msg: Msg,
        origin: SessionId,
        complete: bool,
        ack: &Ack,
        out: &mut Out,
    ) {
        let sender_view = self.conv_name_for(conv, msg.sender);
        let reply = match ack {
            Ack::Say => line!("OK SAY {sender_view} {} {}", msg.seq, msg.id),
            Ack::Attach(blob) => line!("OK ATTACH {sender_view} {} {} {blob}", msg.seq, msg.id),
        };
        out.lines.push((
            origin,
            if complete {
                Output::Complete(reply)
            } else {
                Output::Reply(reply)
            },
        ));
        // The sender has its own message: it is not news to them on SYNC,
        // and they have read what came before it.
        self.mark_read(msg.sender, conv, msg.seq, out);
        let recent = self.cfg.recent;
        if let Some(c) = self.convs.get_mut(conv)
            && recent > 0
        {
            if c.recent.len() >= recent {
                c.recent.pop_front();
            }
            c.recent.push_back(msg);
        }
    }
}
