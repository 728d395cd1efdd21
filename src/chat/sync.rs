//! Delivery and read cursors, SYNC, READ receipts, STATUS and TYPING.
//!
//! Each user has, per conversation, a *delivered* cursor (the highest seq
//! written to the socket of one of their sessions; bytes still queued in an
//! outbox do not count) and a *read* cursor (moved by READ). SYNC sends
//! whatever lies past the delivered cursor. A large backlog is streamed: one
//! chunk at a time, the next one only once the driver has flushed the last,
//! so neither memory nor the outbox limit is strained.

use std::collections::VecDeque;

use super::{
    Audience, ChatError, ConvId, Event, Hub, IdMap, Out, Output, Part, Pending, Progress, Reply,
    Seq, SessionId, Shared, UserId,
};
use crate::protocol::Target;
use crate::store::{Answer, MsgState, Query, Request, Write};

/// Receipts and TYPING events are pushed only in conversations up to this
/// many members, so a message in a big room does not cost an event per
/// member per reader.
pub const RECEIPT_LIMIT: usize = 64;
/// Messages per SYNC chunk (its size in bytes is bounded by the config too).
const CHUNK: usize = 64;
/// What a message line carries besides its text, at most: verb, names, seq,
/// msgid and time. Counted toward a chunk's size.
const MSG_OVERHEAD: usize = 160;
/// Cursor rows handed to storage per flush (see [`Hub::flush_cursors`]).
pub const CURSOR_ROWS: usize = 256;
/// A user's TYPING events in one conversation are forwarded at most this often.
pub const TYPING_INTERVAL_MS: i64 = 3000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    pub delivered: Seq,
    pub read: Seq,
}

#[derive(Debug, Clone, Copy)]
pub struct Range {
    conv: ConvId,
    /// Everything up to and including this seq has been sent.
    after: Seq,
    upto: Seq,
}

/// With `--bus`, the sessions whose SYNC streams a conversation's
/// messages through some seq, per conversation: live delivery to them
/// skips those, so each message reaches a session once.
///
/// On one node a SYNC never overlaps live delivery: its ranges end at what
/// the node has applied, and what is applied later has a later seq. With
/// `--bus` a range may end past that (the store's end, asked when the SYNC
/// starts), and messages go on being applied while that is asked: by the
/// bus, and by the catch-up read that the same LOGIN set off when it made
/// this node listen to the conversation. Those are the stream's, not the
/// live path's, until the node has applied past the stream's end.
#[derive(Debug, Default)]
pub struct Streamed(IdMap<ConvId, Vec<(SessionId, Seq)>>);

impl Streamed {
    /// `sid`'s SYNC carries `conv` through `through` (`Seq::MAX` while
    /// where the conversation ends is being asked).
    pub(super) fn cover(&mut self, conv: ConvId, sid: SessionId, through: Seq) {
        let covered = self.0.entry(conv).or_default();
        match covered.iter_mut().find(|(s, _)| *s == sid) {
            Some(c) => c.1 = through,
            None => covered.push((sid, through)),
        }
    }

    /// The sessions to skip in a live delivery of `conv`'s messages, each
    /// with the seq it already has them through.
    pub(super) fn skips(&self, conv: ConvId) -> Vec<(SessionId, Seq)> {
        self.0.get(&conv).cloned().unwrap_or_default()
    }

    /// `conv` has been applied through `last`: a stream ending there or
    /// before overlaps nothing that is still to come.
    pub(super) fn applied(&mut self, conv: ConvId, last: Seq) {
        if let Some(covered) = self.0.get_mut(&conv) {
            covered.retain(|&(_, through)| through > last);
            if covered.is_empty() {
                self.0.remove(&conv);
            }
        }
    }

    /// Live delivery of `conv` reaches `sid` again (what held it back was
    /// undone or failed); its other conversations keep theirs.
    pub(super) fn uncover(&mut self, conv: ConvId, sid: SessionId) {
        if let Some(covered) = self.0.get_mut(&conv) {
            covered.retain(|&(s, _)| s != sid);
            if covered.is_empty() {
                self.0.remove(&conv);
            }
        }
    }

    /// `sid` is gone, or its SYNC failed: live delivery reaches it again.
    pub(super) fn forget(&mut self, sid: SessionId) {
        self.0.retain(|_, covered| {
            covered.retain(|&(s, _)| s != sid);
            !covered.is_empty()
        });
    }
}

/// Where a SYNC's ranges start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At the user's delivered cursors (SYNC, LOGIN).
    Cursors,
    /// Where the client said (`SYNC <conv> <after-seq>`).
    Asked,
}

#[derive(Debug)]
pub struct SyncJob {
    ranges: VecDeque<Range>,
    count: u64,
    /// A storage read for the next chunk is under way.
    inflight: bool,
}

impl Hub {
    pub(super) fn cursor(&self, user: UserId, conv: ConvId) -> Cursor {
        self.cursors.get(&(user, conv)).copied().unwrap_or_default()
    }

    pub(super) fn cursor_mut(&mut self, user: UserId, conv: ConvId) -> &mut Cursor {
        self.dirty_cursors.insert((user, conv));
        self.cursors.entry((user, conv)).or_default()
    }

    /// Hands changed cursors to storage, at most `max_rows` of them: a flush
    /// shares its storage round with the messages queued beside it, which
    /// must not wait behind a row for every reader. The driver calls this
    /// four times a second with `CURSOR_ROWS` (shutdown with no limit), so a
    /// crash makes a client receive about a second's worth twice, more only
    /// when over four times that many cursors move each second.
    pub fn flush_cursors(&mut self, max_rows: usize, out: &mut Out) {
        self.flush_posts(out);
        if self.dirty_cursors.is_empty() {
            return;
        }
        let keys: Vec<(UserId, ConvId)> =
            self.dirty_cursors.iter().take(max_rows).copied().collect();
        for key in &keys {
            self.dirty_cursors.remove(key);
        }
        let writes = keys
            .into_iter()
            .map(|(user, conv)| {
                let c = self.cursors.get(&(user, conv)).copied().unwrap_or_default();
                Write::Cursor {
                    user,
                    conv,
                    delivered: c.delivered,
                    read: c.read,
                }
            })
            .collect();
        out.store.push(Request::write(writes, None));
    }

    /// Whether changed cursors wait to be handed to storage.
    pub fn cursors_pending(&self) -> bool {
        !self.dirty_cursors.is_empty()
    }

    /// The driver wrote message `seq` of `conv` to session `sid`'s socket.
    pub fn delivered(&mut self, sid: SessionId, conv: ConvId, seq: Seq, out: &mut Out) {
        self.flush_posts(out);
        let Some(uid) = self.user_of(sid) else {
            return;
        };
        // While a SYNC is streaming this conversation, a live message must
        // not move the cursor past messages the stream has yet to send.
        if let Some(job) = self.syncs.get(&sid)
            && job.ranges.iter().any(|r| r.conv == conv && r.after < seq)
        {
            return;
        }
        // One lookup: this runs for every message reaching every session.
        let cursor = self.cursors.entry((uid, conv)).or_default();
        if seq <= cursor.delivered {
            return;
        }
        let before = cursor.delivered;
        cursor.delivered = seq;
        self.dirty_cursors.insert((uid, conv));
        self.receipts(conv, uid, before, seq, Progress::Delivered, out);
    }

    /// Tells each sender whose messages in `(from, to]` `reader` now has,
    /// one line per sender with the highest such seq.
    fn receipts(
        &self,
        conv: ConvId,
        reader: UserId,
        from: Seq,
        to: Seq,
        progress: Progress,
        out: &mut Out,
    ) {
        let Some(c) = self.convs.get(conv) else {
            return;
        };
        if c.members.len() > RECEIPT_LIMIT {
            return;
        }
        let mut highest: Vec<(UserId, Seq)> = Vec::new();
        for m in c.recent_between(from, to) {
            // A sender who has left (or was kicked) hears nothing more of
            // the conversation, receipts included.
            if m.sender == reader || c.member(m.sender).is_none() {
                continue;
            }
            match highest.iter_mut().find(|(s, _)| *s == m.sender) {
                Some(h) => h.1 = m.seq,
                None => highest.push((m.sender, m.seq)),
            }
        }
        for (sender, seq) in highest {
            tell_receipt(conv, seq, reader, sender, progress, out);
            let shared = || Shared::Receipt {
                conv,
                seq,
                reader,
                sender,
                progress,
            };
            self.share(shared, out);
        }
    }

    pub(super) fn sync(
        &mut self,
        sid: SessionId,
        uid: UserId,
        range: Option<(Target<'_>, Seq)>,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        match range {
            None => self.sync_after_login(sid, uid, out),
            Some((target, after)) => {
                let conv = self.member_conv(uid, target)?;
                let upto = self.conv(conv)?.last_seq;
                let ranges = VecDeque::from([Range { conv, after, upto }]);
                self.start_sync(sid, uid, ranges, Start::Asked, out);
            }
        }
        Ok(())
    }

    /// Every conversation of `uid` with messages past its delivered cursor
    /// (with `--bus`, every one: where each ends is asked of the store).
    fn missed(&self, uid: UserId) -> VecDeque<Range> {
        self.convs_of(uid)
            .iter()
            .filter_map(|&conv| {
                let after = self.cursor(uid, conv).delivered;
                let upto = self.convs.get(conv)?.last_seq;
                (self.cfg.clustered || after < upto).then_some(Range { conv, after, upto })
            })
            .collect()
    }

    /// LOGIN implies SYNC: the missed messages follow the OK LOGIN.
    pub(super) fn sync_after_login(&mut self, sid: SessionId, uid: UserId, out: &mut Out) {
        let ranges = self.missed(uid);
        self.start_sync(sid, uid, ranges, Start::Cursors, out);
    }

    fn start_sync(
        &mut self,
        sid: SessionId,
        uid: UserId,
        ranges: VecDeque<Range>,
        from: Start,
        out: &mut Out,
    ) {
        out.defer(sid);
        // Commands after SYNC wait until its stream is done.
        self.hold(sid);
        if self.cfg.clustered && !ranges.is_empty() {
            // Other nodes may have committed past what this node has heard
            // (it listens to a conversation only while a member is logged
            // in here, and the bus may lose messages), and may have
            // delivered to the user's sessions there: where each
            // conversation ends, and the user's cursor in it, is asked of
            // the store, in one query.
            for r in &ranges {
                self.streamed.cover(r.conv, sid, Seq::MAX);
            }
            let convs = ranges.iter().map(|r| r.conv).collect();
            let plan = Pending::SyncPlan { sid, ranges, from };
            let query = Query::Ends { user: uid, convs };
            out.store.push(Request::query(query, plan));
            return;
        }
        self.run_sync(sid, ranges, out);
    }

    /// Where a SYNC's conversations end in the store (`--bus`): each range
    /// runs to the later of the store's end and this node's now (which may
    /// have heard more meanwhile, and kept it for the stream), and one
    /// that starts at the user's cursor starts at the later of this node's
    /// and the store's (moved by the user's sessions on other nodes). This
    /// node's cursors take the store's where those are further (a READ
    /// elsewhere whose bus message was lost), unsaved: the store has them;
    /// the user's other sessions here hear the new unread count.
    pub(super) fn sync_planned(
        &mut self,
        sid: SessionId,
        mut ranges: VecDeque<Range>,
        from: Start,
        answer: Answer,
        out: &mut Out,
    ) {
        // Gone meanwhile: nothing to stream.
        if !self.sessions.contains_key(&sid) {
            return;
        }
        let stored = match answer {
            Answer::Ends(ends) => ends,
            _ => Vec::new(),
        };
        let mut stored = stored.into_iter();
        // Whose cursors the ranges start at, if they do.
        let resumed = self.user_of(sid).filter(|_| from == Start::Cursors);
        for r in &mut ranges {
            let heard = self.convs.get(r.conv).map_or(Seq::ZERO, |c| c.last_seq);
            let end = stored.next().unwrap_or_default();
            r.upto = r.upto.max(heard).max(end.last);
            if let Some(uid) = resumed {
                r.after = r.after.max(end.delivered);
                let cursor = self.cursors.entry((uid, r.conv)).or_default();
                cursor.delivered = cursor.delivered.max(end.delivered);
                // The syncing session asks INBOX if it wants counts.
                self.read_elsewhere(uid, r.conv, end.read, Some(sid), out);
            }
            self.streamed.cover(r.conv, sid, r.upto);
        }
        self.run_sync(sid, ranges, out);
    }

    fn run_sync(&mut self, sid: SessionId, ranges: VecDeque<Range>, out: &mut Out) {
        self.syncs.insert(
            sid,
            SyncJob {
                ranges,
                count: 0,
                inflight: false,
            },
        );
        self.sync_more(sid, out);
    }

    /// Sessions whose stream (SYNC or FETCH) waits for the driver to call
    /// [`Hub::stream_more`] once their outbox has drained.
    pub fn streams_waiting(&self) -> impl Iterator<Item = SessionId> + '_ {
        let syncs = self.syncs.iter().filter(|(_, j)| !j.inflight);
        let fetches = self.fetches.iter().filter(|(_, j)| !j.inflight);
        syncs
            .map(|(&sid, _)| sid)
            .chain(fetches.map(|(&sid, _)| sid))
    }

    /// Sends the next piece of `sid`'s stream, or finishes it.
    pub fn stream_more(&mut self, sid: SessionId, out: &mut Out) {
        self.flush_posts(out);
        if self.fetches.contains_key(&sid) {
            self.fetch_more(sid, out);
        } else {
            self.sync_more(sid, out);
        }
    }

    /// Sends the next chunk of `sid`'s SYNC stream, or finishes it.
    fn sync_more(&mut self, sid: SessionId, out: &mut Out) {
        loop {
            let Some(job) = self.syncs.get(&sid) else {
                return;
            };
            if job.inflight {
                return;
            }
            let Some(r) = job.ranges.front().copied() else {
                let count = job.count;
                self.syncs.remove(&sid);
                self.unbusy(sid);
                out.finish(sid, Reply::Synced(count));
                return;
            };
            if r.after >= r.upto {
                self.sync_job(sid).ranges.pop_front();
                continue;
            }
            let Some(c) = self.convs.get(r.conv) else {
                self.sync_job(sid).ranges.pop_front();
                continue;
            };
            // A range past what this node has heard is read from the store.
            let in_memory = (r.upto <= c.last_seq && c.recent_covers(r.after.next())).then(|| {
                c.recent
                    .iter()
                    .filter(|m| m.seq > r.after && m.seq <= r.upto)
                    .take(CHUNK)
                    .cloned()
                    .collect::<Vec<_>>()
            });
            let Some(msgs) = in_memory else {
                self.sync_job(sid).inflight = true;
                out.store.push(Request::query(
                    Query::After {
                        conv: r.conv,
                        after: r.after,
                        limit: CHUNK,
                    },
                    Pending::SyncChunk { sid },
                ));
                return;
            };
            if self.emit_chunk(sid, r, &msgs, out) {
                return;
            }
        }
    }

    fn sync_job(&mut self, sid: SessionId) -> &mut SyncJob {
        self.syncs
            .get_mut(&sid)
            .expect("sync job checked by caller")
    }

    /// Sends `msgs` (the next messages of range `r`, oldest first, at most
    /// `CHUNK`) as one chunk; returns whether anything was sent (the driver
    /// then pulls the next chunk once it is written). A chunk stops early
    /// once its texts pass the chunk size, so it stays well under the outbox
    /// limit whatever the codec adds around them.
    fn emit_chunk(&mut self, sid: SessionId, r: Range, msgs: &[super::Msg], out: &mut Out) -> bool {
        let mut chunk = Vec::new();
        let mut bytes = 0;
        let mut processed = 0;
        for m in msgs {
            if bytes >= self.cfg.sync_chunk_bytes {
                break;
            }
            processed += 1;
            if m.state != MsgState::Deleted {
                bytes += m.text.len() + MSG_OVERHEAD;
                chunk.push(m.clone());
            }
        }
        // A short chunk that was sent whole ends the range; otherwise the
        // range resumes after the last message sent.
        let after = if processed < msgs.len() || msgs.len() == CHUNK {
            msgs[processed - 1].seq
        } else {
            r.upto
        };
        let job = self.sync_job(sid);
        job.count += chunk.len() as u64;
        if let Some(front) = job.ranges.front_mut() {
            front.after = after;
        }
        if chunk.is_empty() {
            return false;
        }
        let part = Part::Messages {
            conv: r.conv,
            msgs: chunk,
            upto: msgs[processed - 1].seq,
        };
        out.to(sid, Output::Partial(part));
        true
    }

    /// A chunk of a SYNC stream came back from storage.
    pub(super) fn sync_chunk(&mut self, sid: SessionId, answer: Answer, out: &mut Out) {
        let Some(job) = self.syncs.get_mut(&sid) else {
            return;
        };
        job.inflight = false;
        let Some(r) = job.ranges.front().copied() else {
            return self.sync_more(sid, out);
        };
        let msgs: Vec<super::Msg> = match answer {
            Answer::Messages(rows) => rows
                .into_iter()
                .filter(|m| m.seq <= r.upto)
                .map(super::Msg::from)
                .collect(),
            _ => Vec::new(),
        };
        if msgs.is_empty() {
            if let Some(front) = self.sync_job(sid).ranges.front_mut() {
                front.after = r.upto;
            }
            return self.sync_more(sid, out);
        }
        if !self.emit_chunk(sid, r, &msgs, out) {
            self.sync_more(sid, out);
        }
    }

    /// The conversation of a READ, STATUS, EDIT or DELETE: the caller must belong to it
    /// and `seq` must name a message that was sent in it.
    pub(super) fn message_conv(
        &self,
        uid: UserId,
        target: Target<'_>,
        seq: Seq,
    ) -> Result<ConvId, ChatError> {
        let conv = self.member_conv(uid, target)?;
        if seq == Seq::ZERO || seq > self.conv(conv)?.last_seq {
            return Err(ChatError::NoSuchMessage);
        }
        Ok(conv)
    }

    pub(super) fn read(
        &mut self,
        sid: SessionId,
        uid: UserId,
        target: Target<'_>,
        seq: Seq,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        let conv = self.message_conv(uid, target, seq)?;
        if self.mark_read(uid, conv, seq, out) < seq {
            self.announce_unread(uid, conv, Some(sid), out);
        }
        out.reply(sid, Reply::Read { conv, seq });
        Ok(())
    }

    /// Moves `uid`'s read (and delivered) cursor in `conv` up to `seq`, and
    /// sends the senders of the messages it passes their read receipts, so
    /// RECEIPT and STATUS always agree. READ does this, and so does sending
    /// a message (the sender has read what came before it). Returns where
    /// the read cursor was.
    pub(super) fn mark_read(&mut self, uid: UserId, conv: ConvId, seq: Seq, out: &mut Out) -> Seq {
        let before = self.cursor(uid, conv);
        if seq > before.read {
            let c = self.cursor_mut(uid, conv);
            c.read = seq;
            c.delivered = c.delivered.max(seq);
            self.receipts(conv, uid, before.read, seq, Progress::Read, out);
        }
        before.read
    }

    pub(super) fn status(
        &mut self,
        sid: SessionId,
        uid: UserId,
        target: Target<'_>,
        seq: Seq,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        let conv = self.message_conv(uid, target, seq)?;
        match self.conv(conv)?.recent_msg(seq).map(|m| m.sender) {
            Some(sender) => out.reply(sid, self.status_reply(conv, seq, sender)),
            None => self.ask(
                sid,
                Query::After {
                    conv,
                    after: seq.prev(),
                    limit: 1,
                },
                Pending::Status { sid, conv, seq },
                out,
            ),
        }
        Ok(())
    }

    pub(super) fn status_answer(
        &mut self,
        sid: SessionId,
        conv: ConvId,
        seq: Seq,
        answer: Answer,
        out: &mut Out,
    ) {
        match answer {
            Answer::Messages(rows) if rows.first().is_some_and(|m| m.seq == seq) => {
                let reply = self.status_reply(conv, seq, rows[0].sender);
                out.complete(sid, reply);
            }
            _ => out.fail(sid, ChatError::NoSuchMessage),
        }
    }

    /// How far message `seq` got with every member but its sender.
    fn status_reply(&self, conv: ConvId, seq: Seq, sender: UserId) -> Reply {
        let members = self
            .convs
            .get(conv)
            .into_iter()
            .flat_map(|c| &c.members)
            .filter(|m| m.user != sender)
            .map(|m| {
                let c = self.cursor(m.user, conv);
                let progress = if c.read >= seq {
                    Progress::Read
                } else if c.delivered >= seq {
                    Progress::Delivered
                } else {
                    Progress::Sent
                };
                (m.user, progress)
            })
            .collect();
        Reply::Status { conv, seq, members }
    }

    pub(super) fn typing(
        &mut self,
        sid: SessionId,
        uid: UserId,
        target: Target<'_>,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        let conv = self.member_conv(uid, target)?;
        let now = self.now();
        let last = self.typing.get(&(uid, conv)).copied();
        let c = self.conv(conv)?;
        if c.members.len() <= RECEIPT_LIMIT && last.is_none_or(|t| now - t >= TYPING_INTERVAL_MS) {
            // Nobody hears typing from a user they block.
            let blocks = |u: UserId| self.friends.blocks(u, uid);
            let others = c
                .members
                .iter()
                .map(|m| m.user)
                .filter(|&u| u != uid && !blocks(u));
            let event = Event::Typing { conv, user: uid };
            out.event(Audience::Users(others.collect()), event);
            self.share(|| Shared::Typing { conv, user: uid }, out);
            self.typing.insert((uid, conv), now);
        }
        out.reply(sid, Reply::Typing(conv));
        Ok(())
    }

    /// Sends a query to storage; the command's answer comes with the result.
    pub(super) fn ask(&mut self, sid: SessionId, query: Query, pending: Pending, out: &mut Out) {
        out.store.push(Request::query(query, pending));
        out.defer(sid);
    }
}

/// Tells `sender`'s sessions that `reader` has their messages of `conv` up
/// to `seq` (this node's receipts and other nodes' alike).
pub(super) fn tell_receipt(
    conv: ConvId,
    seq: Seq,
    reader: UserId,
    sender: UserId,
    progress: Progress,
    out: &mut Out,
) {
    let event = Event::Receipt {
        conv,
        seq,
        reader,
        progress,
    };
    out.event(Audience::user(sender, None), event);
}
