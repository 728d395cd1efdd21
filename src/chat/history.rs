//! HISTORY, SEARCH, EDIT and DELETE: reading and changing past messages.
//!
//! Recent messages are answered from memory; anything older is read on the
//! storage thread, and its answer still comes back in command order. A
//! conversation is never loaded whole: every read is one bounded page.

use super::{
    Change, ChatError, ConvId, Hub, Msg, Out, Pending, Reply, Seq, SessionId, UserId, names,
};
use crate::protocol::Target;
use crate::store::{Answer, ConvKind, MsgState, Query, Request, Write};

pub const HISTORY_DEFAULT: usize = 50;
pub const HISTORY_MAX: usize = 500;
pub const SEARCH_PAGE: usize = 20;
/// Words a SEARCH may combine.
const SEARCH_WORDS: usize = 16;

impl Hub {
    pub(super) fn history(
        &mut self,
        sid: SessionId,
        uid: UserId,
        target: Target<'_>,
        before: Option<Seq>,
        limit: Option<usize>,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        let conv = self.member_conv(uid, target)?;
        let limit = limit.unwrap_or(HISTORY_DEFAULT).clamp(1, HISTORY_MAX);
        let c = self.conv(conv)?;
        let before = before.unwrap_or(Seq::MAX).min(c.last_seq.next());
        let from = Seq(before.0.saturating_sub(limit as u64).max(1));
        if c.recent_covers(from) {
            let msgs = c
                .recent
                .iter()
                .filter(|m| m.seq >= from && m.seq < before)
                .cloned()
                .collect();
            out.reply(sid, self.history_reply(conv, msgs));
        } else {
            self.ask(
                sid,
                Query::Before {
                    conv,
                    before,
                    limit,
                },
                Pending::History { sid, conv, limit },
                out,
            );
        }
        Ok(())
    }

    /// HISTORY's answer: the messages, with the reactions of those that
    /// have any (none on a deleted one).
    fn history_reply(&self, conv: ConvId, msgs: Vec<Msg>) -> Reply {
        let reactions = msgs
            .iter()
            .filter(|m| m.state != MsgState::Deleted)
            .map(|m| (m.seq, self.reactions.counts(conv, m.seq)))
            .filter(|(_, counts)| !counts.is_empty())
            .collect();
        Reply::History {
            conv,
            msgs,
            reactions,
        }
    }

    pub(super) fn history_answer(
        &mut self,
        sid: SessionId,
        conv: ConvId,
        limit: usize,
        answer: Answer,
        out: &mut Out,
    ) {
        let mut msgs: Vec<Msg> = match answer {
            Answer::Messages(rows) => rows.into_iter().take(limit).map(Msg::from).collect(),
            _ => Vec::new(),
        };
        msgs.reverse();
        out.complete(sid, self.history_reply(conv, msgs));
    }

    pub(super) fn search(
        &mut self,
        sid: SessionId,
        uid: UserId,
        target: Target<'_>,
        before: Option<Seq>,
        words: &str,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        let conv = self.member_conv(uid, target)?;
        let words: Vec<String> = words
            .split_whitespace()
            .take(SEARCH_WORDS)
            .map(str::to_string)
            .collect();
        self.ask(
            sid,
            Query::Search {
                conv,
                words,
                before: before.unwrap_or(Seq::MAX),
                limit: SEARCH_PAGE,
            },
            Pending::Search { sid, conv },
            out,
        );
        Ok(())
    }

    pub(super) fn search_answer(
        &mut self,
        sid: SessionId,
        conv: ConvId,
        answer: Answer,
        out: &mut Out,
    ) {
        let msgs = match answer {
            Answer::Messages(rows) => rows.into_iter().map(Msg::from).collect(),
            _ => Vec::new(),
        };
        out.complete(sid, Reply::Found { conv, msgs });
    }

    /// EDIT (`text` is `Some`) or DELETE. The sender may do either; a room
    /// admin may also delete; an attachment cannot be edited. The hub judges
    /// that from the message (read from storage first when it is no longer
    /// in memory); storage then changes it only if it is still not deleted.
    pub(super) fn change(
        &mut self,
        sid: SessionId,
        uid: UserId,
        target: Target<'_>,
        seq: Seq,
        text: Option<&str>,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        let conv = self.message_conv(uid, target, seq)?;
        if let Some(t) = text {
            names::message_text(t, self.cfg.max_text)?;
        }
        let edit = Edit {
            conv,
            seq,
            by: uid,
            text: text.map(str::to_string),
        };
        match self.conv(conv)?.recent_msg(seq) {
            Some(m) => {
                self.may_change(&edit, m.sender, &m.text, m.state)?;
                let logged = self.cfg.clustered.then(|| m.clone());
                out.store.push(edit.request(sid, logged));
                out.defer(sid);
            }
            None => {
                // Its next commands wait, so their storage answers cannot
                // overtake this one's second round.
                self.hold(sid);
                self.ask(
                    sid,
                    Query::After {
                        conv,
                        after: seq.prev(),
                        limit: 1,
                    },
                    Pending::ChangeTarget { sid, edit },
                    out,
                );
            }
        }
        Ok(())
    }

    /// The rules of EDIT and DELETE, on the message as it stands.
    fn may_change(
        &self,
        edit: &Edit,
        sender: UserId,
        text: &str,
        state: MsgState,
    ) -> Result<(), ChatError> {
        if state == MsgState::Deleted {
            return Err(ChatError::NoSuchMessage);
        }
        let c = self.conv(edit.conv)?;
        let admin_delete = edit.text.is_none() && c.kind != ConvKind::Direct && c.is_admin(edit.by);
        if sender != edit.by && !admin_delete {
            return Err(ChatError::NotYours);
        }
        if edit.text.is_some() && names::is_attachment_text(text) {
            return Err(ChatError::NotEditable);
        }
        Ok(())
    }

    /// The message an EDIT or DELETE names came back from storage: judged,
    /// then changed, answering in the slot the command already holds.
    pub(super) fn change_target(
        &mut self,
        sid: SessionId,
        edit: Edit,
        answer: Answer,
        out: &mut Out,
    ) {
        self.unbusy(sid);
        let verdict = match &answer {
            Answer::Messages(rows) => match rows.first().filter(|m| m.seq == edit.seq) {
                Some(m) => self
                    .may_change(&edit, m.sender, &m.text, m.state)
                    .map(|()| self.cfg.clustered.then(|| Msg::from(m.clone()))),
                None => Err(ChatError::NoSuchMessage),
            },
            _ => Err(ChatError::NoSuchMessage),
        };
        match verdict {
            Ok(logged) => out.store.push(edit.request(sid, logged)),
            Err(e) => out.fail(sid, e),
        }
    }

    pub(super) fn changed(
        &mut self,
        sid: SessionId,
        conv: ConvId,
        by: UserId,
        answer: Answer,
        out: &mut Out,
    ) {
        let (m, logged) = match answer {
            Answer::Changed { msg, logged } => (Msg::from(msg), logged),
            _ => return out.fail(sid, ChatError::NoSuchMessage),
        };
        if self.convs.get(conv).is_none() {
            return out.fail(sid, ChatError::NoSuchConversation);
        }
        let seq = m.seq;
        let reply = if m.state == MsgState::Deleted {
            Reply::Deleted { conv, seq }
        } else {
            Reply::Edited { conv, seq }
        };
        let change = Change::Changed {
            conv,
            msg: m,
            by,
            origin: Some(sid),
        };
        self.logged(logged, change.clone(), out);
        self.apply(change, out);
        out.complete(sid, reply);
    }
}

/// An EDIT (`text` is `Some`) or DELETE of message `seq` of `conv` by `by`,
/// carried while its message is read.
#[derive(Debug)]
pub struct Edit {
    conv: ConvId,
    seq: Seq,
    by: UserId,
    text: Option<String>,
}

impl Edit {
    /// The checked change, answered to `sid`; with `--bus` (`logged`: the
    /// message as it stands) also its change log entry, which the store
    /// completes with the message as the change leaves it.
    fn request(&self, sid: SessionId, logged: Option<Msg>) -> Request<Pending> {
        let query = Query::Change {
            conv: self.conv,
            seq: self.seq,
            text: self.text.clone(),
        };
        let mut request = Request::query(query, self.pending(sid));
        if let Some(msg) = logged {
            request.writes.push(Write::Log(Box::new(Change::Changed {
                conv: self.conv,
                msg,
                by: self.by,
                origin: None,
            })));
        }
        request
    }

    fn pending(&self, sid: SessionId) -> Pending {
        Pending::Changed {
            sid,
            conv: self.conv,
            by: self.by,
        }
    }
}
