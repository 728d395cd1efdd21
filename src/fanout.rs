//! From the hub's typed, addressed output to bytes for this node's sessions.
//!
//! The hub says what happened and to whom ([`Audience`]); this module finds
//! the sessions that audience has on this node and has the codec encode each
//! event once per viewer form: once for a room, once per member for a
//! direct conversation (whose name differs by viewer). Every recipient of a
//! form shares that one reference-counted buffer. A batch of messages is
//! encoded into one buffer per form, and each recipient gets a slice of it
//! (a chunk no bigger than `sync_chunk_bytes`, so a burst can never trip the
//! outbox limit on its own); only a session that sent some of the batch
//! gets a copy without its own messages.
//!
//! The hub's events are the same values whichever node they came from, so a
//! second node fans out another node's events through this same path.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use crate::chat::UserId;
use crate::chat::{
    Audience, ConvId, ConvKind, Emit, Event, Hub, Output, Part, Posted, Seq, SessionId,
};
use crate::protocol::codec;

/// What the driver does for one session, in bytes, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wire {
    /// The answer to the session's current command.
    Reply(Bytes),
    /// A pushed event; not ordered with respect to replies.
    Event(Bytes),
    /// An event carrying messages of `conv` up to `seq`: once it is written
    /// to the socket, the driver reports it through [`Hub::delivered`].
    Deliver { line: Bytes, conv: ConvId, seq: Seq },
    /// The current command's answer comes later, through `Complete`.
    Defer,
    /// The answer to a deferred command: the oldest, or the stream's.
    Complete(Bytes, Answering),
    /// Part of the answer to the newest deferred command (a SYNC stream);
    /// a tagged part is reported like `Deliver` once written.
    Partial {
        lines: Bytes,
        tag: Option<(ConvId, Seq)>,
    },
    /// Part of a FETCH answer: no event may be written between it and the
    /// final answer, or it would land inside the file.
    Body(Bytes),
    /// Close the session once what is queued for it has been written.
    Close,
    /// Answer STATS here.
    Stats,
}

/// Which deferred command a [`Wire::Complete`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answering {
    /// The oldest one still waiting: commands answer in the order sent.
    Oldest,
    /// The newest one, a stream (SYNC), which may end before commands sent
    /// ahead of it have their answers.
    Stream,
}

/// Turns `emits` into bytes per session, appended to `wire`.
pub fn route(hub: &mut Hub, emits: &mut Vec<Emit>, wire: &mut Vec<(SessionId, Wire)>) {
    let mut deliveries = 0;
    for emit in emits.drain(..) {
        match emit {
            Emit::To(sid, output) => wire.push((sid, encode_output(hub, sid, output))),
            Emit::Event(
                to,
                Event::Messages {
                    conv,
                    posts,
                    synced,
                },
            ) => {
                deliveries += messages(hub, to, conv, &posts, &synced, wire);
            }
            Emit::Event(to, event) => fan_event(hub, to, &event, wire),
        }
    }
    hub.counters.deliveries_out += deliveries;
}

fn encode_output(hub: &Hub, sid: SessionId, output: Output) -> Wire {
    let viewer = hub.user_of(sid);
    match output {
        Output::Reply(r) => Wire::Reply(codec::reply(&r, viewer, hub)),
        Output::Complete(r) => Wire::Complete(codec::reply(&r, viewer, hub), Answering::Oldest),
        Output::Finish(r) => Wire::Complete(codec::reply(&r, viewer, hub), Answering::Stream),
        Output::Defer => Wire::Defer,
        Output::Partial(part) => {
            let Part::Messages { conv, upto, .. } = part;
            Wire::Partial {
                lines: codec::part(&part, viewer, hub),
                tag: Some((conv, upto)),
            }
        }
        Output::Body(body) => Wire::Body(codec::body(body)),
        Output::Close => Wire::Close,
        Output::Stats => Wire::Stats,
    }
}

/// Calls `f` with every user an audience names, that user's sessions on
/// this node, and the session to leave out. A plain loop per case, no
/// iterator chain: this runs for every recipient of every event.
fn each_recipient(
    hub: &Hub,
    to: &Audience,
    mut f: impl FnMut(UserId, &[SessionId], Option<SessionId>),
) {
    match *to {
        Audience::Members { conv, plus, except } => {
            let members = hub.conv_members(conv).map_or(&[][..], |(_, m)| m);
            for m in members {
                f(m.user, hub.sessions_of(m.user), except);
            }
            // `plus` has normally left the member list already; if not, it
            // is counted once.
            if let Some(p) = plus.filter(|p| !members.iter().any(|m| m.user == *p)) {
                f(p, hub.sessions_of(p), except);
            }
        }
        Audience::User { user, except } => f(user, hub.sessions_of(user), except),
        Audience::Users(ref users) => {
            for &u in users {
                f(u, hub.sessions_of(u), None);
            }
        }
    }
}

/// Whether `conv`'s name differs between viewers.
fn per_viewer(hub: &Hub, conv: Option<ConvId>) -> bool {
    conv.and_then(|c| hub.conv_members(c))
        .is_some_and(|(kind, _)| kind == ConvKind::Direct)
}

fn fan_event(hub: &Hub, to: Audience, event: &Event, wire: &mut Vec<(SessionId, Wire)>) {
    let per_viewer = per_viewer(hub, event.conv());
    let mut shared: Option<Bytes> = None;
    each_recipient(hub, &to, |user, sessions, except| {
        let mut line: Option<Bytes> = if per_viewer { None } else { shared.clone() };
        for &s in sessions.iter().filter(|&&s| Some(s) != except) {
            let bytes = line.get_or_insert_with(|| codec::event(event, user, hub));
            wire.push((s, Wire::Event(bytes.clone())));
        }
        if !per_viewer && shared.is_none() {
            shared = line;
        }
    });
}

/// One viewer form of a message batch: every MSG line in one buffer, and
/// the chunks it is delivered in, each ready to hand out as it is.
struct Encoded {
    buf: Bytes,
    /// Where each message's line ends in `buf`.
    ends: Vec<usize>,
    chunks: Vec<Chunk>,
}

/// Consecutive messages whose lines together stay within a chunk.
struct Chunk {
    posts: Range<usize>,
    /// Their lines: a slice of the form's buffer, shared by every recipient.
    line: Bytes,
    /// The seq of the last of them, reported once written.
    last: Seq,
}

impl Encoded {
    fn new(hub: &Hub, conv: ConvId, viewer: UserId, posts: &[Posted]) -> Self {
        let name = codec::Directory::conv_name(hub, conv, Some(viewer));
        let mut buf = BytesMut::with_capacity(batch_bytes(&name, posts));
        let mut ends = Vec::with_capacity(posts.len());
        for p in posts {
            codec::msg_line(&mut buf, &name, &p.msg, hub);
            ends.push(buf.len());
        }
        let buf = buf.freeze();
        let limit = hub.config().sync_chunk_bytes;
        let mut chunks = Vec::new();
        let mut from = 0;
        while from < posts.len() {
            let mut to = from + 1;
            while to < posts.len() && ends[to] - start(&ends, from) <= limit {
                to += 1;
            }
            chunks.push(Chunk {
                posts: from..to,
                line: buf.slice(start(&ends, from)..ends[to - 1]),
                last: posts[to - 1].msg.seq,
            });
            from = to;
        }
        Encoded { buf, ends, chunks }
    }

    /// Where message `i`'s line is in `buf`.
    fn line_range(&self, i: usize) -> Range<usize> {
        start(&self.ends, i)..self.ends[i]
    }
}

/// About what the MSG lines of `posts` take, so the buffer is allocated
/// once rather than doubled (and copied) as they are written: the text and
/// the conversation's name, plus room for seq, id, sender and time.
fn batch_bytes(conv_name: &str, posts: &[Posted]) -> usize {
    const FIXED_FIELDS: usize = 128;
    let per_line = conv_name.len() + FIXED_FIELDS;
    posts.iter().map(|p| p.msg.text.len() + per_line).sum()
}

fn start(ends: &[usize], i: usize) -> usize {
    if i == 0 { 0 } else { ends[i - 1] }
}

/// Delivers a batch of one conversation's messages; returns how many
/// message deliveries that made. A session that sent some of the batch, or
/// whose SYNC carries some of it (`synced`), gets only the rest.
fn messages(
    hub: &Hub,
    to: Audience,
    conv: ConvId,
    posts: &[Posted],
    synced: &[(SessionId, Seq)],
    wire: &mut Vec<(SessionId, Wire)>,
) -> u64 {
    let per_viewer = per_viewer(hub, Some(conv));
    let mut origins: Vec<SessionId> = posts.iter().filter_map(|p| p.origin).collect();
    origins.sort_unstable();
    origins.dedup();
    let mut shared: Option<Encoded> = None;
    let mut sent = 0u64;
    each_recipient(hub, &to, |user, sessions, except| {
        if sessions.is_empty() {
            return;
        }
        let mine;
        let form = if per_viewer {
            mine = Encoded::new(hub, conv, user, posts);
            &mine
        } else {
            shared.get_or_insert_with(|| Encoded::new(hub, conv, user, posts))
        };
        for &s in sessions.iter().filter(|&&s| Some(s) != except) {
            // Almost always empty: one test, not a search, per recipient.
            let had = if synced.is_empty() {
                None
            } else {
                synced.iter().find(|&&(x, _)| x == s).map(|&(_, t)| t)
            };
            if had.is_none() && origins.binary_search(&s).is_err() {
                // The common case: the session sent none of the batch.
                for chunk in &form.chunks {
                    let (line, seq) = (chunk.line.clone(), chunk.last);
                    wire.push((s, Wire::Deliver { line, conv, seq }));
                }
                sent += posts.len() as u64;
                continue;
            }
            // The session sent some of these (or has some from its SYNC):
            // it gets the others only, copied into a buffer of its own,
            // sized first (grown line by line, its reallocations were a
            // tenth of the loop's time when every member of a room speaks).
            let new = |i: &usize| {
                posts[*i].origin != Some(s) && had.is_none_or(|through| posts[*i].msg.seq > through)
            };
            for chunk in &form.chunks {
                let theirs = || chunk.posts.clone().filter(new);
                let Some(last) = theirs().next_back() else {
                    continue;
                };
                let len = theirs().map(|i| form.line_range(i).len()).sum();
                let mut line = BytesMut::with_capacity(len);
                for i in theirs() {
                    line.extend_from_slice(&form.buf[form.line_range(i)]);
                }
                sent += theirs().count() as u64;
                let seq = posts[last].msg.seq;
                let line = line.freeze();
                wire.push((s, Wire::Deliver { line, conv, seq }));
            }
        }
    });
    sent
}
