//! INBOX and UNREAD: every conversation of a user with its unread count.
//!
//! Counts come from what the hub already holds (each conversation's last
//! seq and the user's read cursor), so listing them touches no storage, and
//! a moved cursor costs one small event to the user's other sessions only.

use super::{Audience, Conv, ConvKind, MsgState, names};
use super::{ConvId, Event, Hub, InboxEntry, Out, Reply, Seq, SessionId, Shared, UserId};

impl Hub {
    /// Every conversation of `uid`, the one with the newest activity first
    /// (the newest message, or joining when there is none yet).
    pub(super) fn inbox(&self, sid: SessionId, uid: UserId, out: &mut Out) {
        let mut entries: Vec<(i64, InboxEntry)> = self
            .convs_of(uid)
            .iter()
            .filter_map(|&id| self.convs.get(id))
            .map(|c| {
                let last = c.recent.back().map(|m| (m.at, m.sender));
                let joined = c.member(uid).map_or(0, |m| m.joined);
                let entry = InboxEntry {
                    conv: c.id,
                    kind: c.kind,
                    last_seq: c.last_seq,
                    unread: self.unread(uid, c),
                    mentions: self.mentions(uid, c),
                    last,
                };
                (last.map_or(joined, |(at, _)| at), entry)
            })
            .collect();
        entries.sort_by(|(a, x), (b, y)| b.cmp(a).then(y.conv.cmp(&x.conv)));
        out.reply(
            sid,
            Reply::Inbox(entries.into_iter().map(|(_, e)| e).collect()),
        );
    }

    /// Unread messages of others in a room or group that mention `uid`,
    /// among those the hub holds (the newest `--recent`). In a direct
    /// conversation every message is to the reader, so none counts.
    fn mentions(&self, uid: UserId, c: &Conv) -> u64 {
        if c.kind == ConvKind::Direct {
            return 0;
        }
        let name = self.name(uid);
        let read = self.cursor(uid, c.id).read;
        let mentioned = c.recent_between(read, c.last_seq).filter(|m| {
            m.sender != uid && m.state != MsgState::Deleted && names::mentions(&m.text, name)
        });
        mentioned.count() as u64
    }

    fn unread(&self, uid: UserId, c: &Conv) -> u64 {
        c.last_seq.0.saturating_sub(self.cursor(uid, c.id).read.0)
    }

    /// Tells `uid`'s sessions but `except`, here and (with `--bus`) on the
    /// other nodes, that its read cursor in `conv` moved, so each device's
    /// badge follows READ on any of them.
    pub(super) fn announce_unread(
        &self,
        uid: UserId,
        conv: ConvId,
        except: Option<SessionId>,
        out: &mut Out,
    ) {
        let seq = self.cursor(uid, conv).read;
        self.share(
            || Shared::Read {
                conv,
                user: uid,
                seq,
            },
            out,
        );
        self.tell_unread(uid, conv, except, out);
    }

    /// Another node moved `user`'s read cursor in `conv` to `seq`: the
    /// cursor follows (storage has it from that node), and the sessions
    /// here but `except` hear the new count.
    pub(super) fn read_elsewhere(
        &mut self,
        user: UserId,
        conv: ConvId,
        seq: Seq,
        except: Option<SessionId>,
        out: &mut Out,
    ) {
        let c = self.cursors.entry((user, conv)).or_default();
        if seq > c.read {
            c.read = seq;
            c.delivered = c.delivered.max(seq);
            self.tell_unread(user, conv, except, out);
        }
    }

    /// The UNREAD event for this node's sessions of `uid` but `except`;
    /// nothing is built when none is there to hear it.
    pub(super) fn tell_unread(
        &self,
        uid: UserId,
        conv: ConvId,
        except: Option<SessionId>,
        out: &mut Out,
    ) {
        let others = self.users.get(uid).map_or(0, |u| {
            u.sessions.iter().filter(|&&s| Some(s) != except).count()
        });
        let Some(c) = self.convs.get(conv) else {
            return;
        };
        if others > 0 {
            let unread = self.unread(uid, c);
            out.event(Audience::user(uid, except), Event::Unread { conv, unread });
        }
    }
}
