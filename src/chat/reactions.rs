//! REACT, UNREACT and REACTIONS: short reactions on messages.
//!
//! [`Reactions`] owns the table and its rules (one of each reaction per
//! user and message, at most [`PER_USER`] per user and message), like
//! `Friends`: the commands change it and return the writes, and a change
//! committed elsewhere goes through [`Reactions::apply`]. The whole table
//! is in memory, loaded at start, so HISTORY shows counts for old messages
//! without a second read of storage.

use std::collections::HashMap;
use std::sync::Arc;

use super::{
    Audience, Change, ChatError, ConvId, Emit, Event, Hub, MsgState, Out, Reply, Seq, SessionId,
    UserId, names,
};
use crate::protocol::Target;
use crate::store::Write;

/// Reactions one user may put on one message.
pub const PER_USER: usize = 8;

/// Who reacted how to one message, in the order they did.
type Holders = Vec<(UserId, Arc<str>)>;

#[derive(Debug, Default)]
pub struct Reactions {
    by_msg: HashMap<(ConvId, Seq), Holders>,
}

/// Why a reaction cannot be added or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReactionError {
    Already,
    NotThere,
    TooMany,
}

/// A reaction as committed: what another node hands the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionChange {
    pub conv: ConvId,
    pub seq: Seq,
    pub user: UserId,
    pub reaction: Arc<str>,
    pub added: bool,
}

impl Reactions {
    /// The table from storage rows, each `(conv, seq, user, reaction)` in
    /// the order they were added.
    pub fn load(rows: impl IntoIterator<Item = (ConvId, Seq, UserId, String)>) -> Reactions {
        let mut table = Reactions::default();
        for (conv, seq, user, reaction) in rows {
            let holders = table.by_msg.entry((conv, seq)).or_default();
            holders.push((user, reaction.into()));
        }
        table
    }

    pub fn add(&mut self, change: &ReactionChange) -> Result<Write, ReactionError> {
        let holders = self.by_msg.get(&(change.conv, change.seq));
        let mine = holders.map_or(0, |h| h.iter().filter(|(u, _)| *u == change.user).count());
        if holders.is_some_and(|h| {
            h.iter()
                .any(|(u, r)| *u == change.user && *r == change.reaction)
        }) {
            return Err(ReactionError::Already);
        }
        if mine >= PER_USER {
            return Err(ReactionError::TooMany);
        }
        self.apply(change);
        Ok(change.write())
    }

    pub fn remove(&mut self, change: &ReactionChange) -> Result<Write, ReactionError> {
        let holders = self.by_msg.get(&(change.conv, change.seq));
        if !holders.is_some_and(|h| {
            h.iter()
                .any(|(u, r)| *u == change.user && *r == change.reaction)
        }) {
            return Err(ReactionError::NotThere);
        }
        self.apply(change);
        Ok(change.write())
    }

    /// Applies a change committed here or elsewhere; applying one twice is
    /// harmless.
    pub fn apply(&mut self, change: &ReactionChange) {
        let key = (change.conv, change.seq);
        let holders = self.by_msg.entry(key).or_default();
        holders.retain(|(u, r)| !(*u == change.user && *r == change.reaction));
        if change.added {
            holders.push((change.user, change.reaction.clone()));
        } else if holders.is_empty() {
            self.by_msg.remove(&key);
        }
    }

    /// Each reaction on a message with how many hold it, in the order each
    /// was first given.
    pub fn counts(&self, conv: ConvId, seq: Seq) -> Vec<(Arc<str>, usize)> {
        let mut counts: Vec<(Arc<str>, usize)> = Vec::new();
        for (_, r) in self.holders(conv, seq) {
            match counts.iter_mut().find(|(seen, _)| seen == r) {
                Some((_, n)) => *n += 1,
                None => counts.push((r.clone(), 1)),
            }
        }
        counts
    }

    pub fn holders(&self, conv: ConvId, seq: Seq) -> &[(UserId, Arc<str>)] {
        self.by_msg.get(&(conv, seq)).map_or(&[], Vec::as_slice)
    }
}

impl ReactionChange {
    fn write(&self) -> Write {
        Write::Reaction {
            conv: self.conv,
            seq: self.seq,
            user: self.user,
            reaction: self.reaction.to_string(),
            added: self.added,
        }
    }
}

impl Hub {
    /// REACT (`added`) or UNREACT `reaction` on message `seq` of `target`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn react(
        &mut self,
        sid: SessionId,
        uid: UserId,
        target: Target<'_>,
        seq: Seq,
        reaction: &str,
        added: bool,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        names::reaction(reaction)?;
        let conv = self.message_conv(uid, target, seq)?;
        self.check_not_muted(uid, conv)?;
        let state = self.conv(conv)?.recent_msg(seq).map(|m| m.state);
        if added && state == Some(MsgState::Deleted) {
            return Err(ChatError::NoSuchMessage);
        }
        let change = ReactionChange {
            conv,
            seq,
            user: uid,
            reaction: reaction.into(),
            added,
        };
        let write = if added {
            self.reactions.add(&change)
        } else {
            self.reactions.remove(&change)
        };
        let write = write.map_err(|e| match e {
            ReactionError::Already => ChatError::AlreadyReacted,
            ReactionError::NotThere => ChatError::NotReacted,
            ReactionError::TooMany => ChatError::TooManyReactions(PER_USER),
        })?;
        let events = vec![self.reaction_news(&change, Some(sid))];
        let shared = Change::Reaction(change.clone());
        let reply = Reply::Reacted {
            conv,
            seq,
            reaction: change.reaction,
            added,
        };
        self.commit(sid, vec![write], reply, events, shared, out);
        Ok(())
    }

    /// REACTIONS: who reacted how to message `seq`.
    pub(super) fn list_reactions(
        &self,
        sid: SessionId,
        uid: UserId,
        target: Target<'_>,
        seq: Seq,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        let conv = self.message_conv(uid, target, seq)?;
        let holders = self.reactions.holders(conv, seq).to_vec();
        out.reply(sid, Reply::Reactions { conv, seq, holders });
        Ok(())
    }

    /// Applies a reaction committed elsewhere and tells the members here.
    pub(super) fn apply_reaction(&mut self, change: ReactionChange, out: &mut Out) {
        self.reactions.apply(&change);
        let news = self.reaction_news(&change, None);
        out.emits.push(news);
    }

    fn reaction_news(&self, change: &ReactionChange, except: Option<SessionId>) -> Emit {
        let event = Event::Reaction {
            conv: change.conv,
            seq: change.seq,
            user: change.user,
            reaction: change.reaction.clone(),
            added: change.added,
        };
        Emit::Event(Audience::members(change.conv, except), event)
    }
}
