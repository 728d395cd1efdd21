//! The linechat codec: the hub's typed replies and events as protocol lines.
//!
//! This is the one place where a domain value becomes linechat text, and
//! where every error becomes its ERR code. Another wire form (IRC, a JSON
//! WebSocket dialect) would be a sibling of this module, encoding the same
//! values. Names are looked up through a [`Directory`] at encoding time, so
//! the hub's events carry ids only and can cross nodes as they are.

use std::borrow::Cow;
use std::fmt::{self, Write};

use bytes::{Bytes, BytesMut};

use super::help;
use super::{Lost, ParseError, encode};
use crate::chat::{
    AuditAction, Body, ChatError, ConvId, ConvKind, Event, FriendNews, Msg, MsgState, Part,
    Presence, Progress, Reply, RequestState, UserId,
};

/// Names for the ids in replies and events.
pub trait Directory {
    /// A user's name; empty for an unknown id.
    fn user_name(&self, user: UserId) -> &str;
    /// How `viewer` names `conv`: `#room`, or `@other` for a direct
    /// conversation (which is why an event in a direct conversation is
    /// encoded once per member, and a room's once for everyone).
    fn conv_name(&self, conv: ConvId, viewer: Option<UserId>) -> Cow<'_, str>;
}

/// The ERR code of each error, in one place.
pub fn chat_code(e: &ChatError) -> &'static str {
    match e {
        ChatError::NotLoggedIn => "NOT_LOGGED_IN",
        ChatError::AlreadyLoggedIn => "ALREADY_LOGGED_IN",
        ChatError::BadUsername => "BAD_USERNAME",
        ChatError::BadPassword => "BAD_PASSWORD",
        ChatError::UserExists => "USER_EXISTS",
        ChatError::BadLogin => "BAD_LOGIN",
        ChatError::BadRoomName => "BAD_ROOM",
        ChatError::NoSuchRoom => "NO_SUCH_ROOM",
        ChatError::NoSuchUser => "NO_SUCH_USER",
        ChatError::NotMember(_) => "NOT_MEMBER",
        ChatError::AlreadyMember(_) => "ALREADY_MEMBER",
        ChatError::RoomExists(_) => "ROOM_EXISTS",
        ChatError::InviteOnly(_) => "INVITE_ONLY",
        ChatError::NotAdmin(_) => "NOT_ADMIN",
        ChatError::TargetAlreadyMember(..) => "ALREADY_MEMBER",
        ChatError::TargetNotMember(..) => "TARGET_NOT_MEMBER",
        ChatError::AlreadyAdmin(..) => "ALREADY_ADMIN",
        ChatError::NotFriends(_) => "NOT_FRIENDS",
        ChatError::SelfTarget => "SELF",
        ChatError::AlreadyFriends(_) => "ALREADY_FRIENDS",
        ChatError::RequestPending(_) => "REQUEST_PENDING",
        ChatError::NoRequest(_) => "NO_REQUEST",
        ChatError::AlreadyBlocked(_) => "ALREADY_BLOCKED",
        ChatError::BadPusher(_) => "BAD_PUSHER",
        ChatError::NoSuchPusher => "NO_SUCH_PUSHER",
        ChatError::TooManyPushers(_) => "TOO_MANY_PUSHERS",
        ChatError::Muted { .. } => "MUTED",
        ChatError::AlreadyBanned(..) => "ALREADY_BANNED",
        ChatError::NotBanned(..) => "NOT_BANNED",
        ChatError::NotMuted(..) => "NOT_MUTED",
        ChatError::BadMinutes(_) => "BAD_ARGS",
        ChatError::TargetNotAdmin(..) => "TARGET_NOT_ADMIN",
        ChatError::LastAdmin(_) => "LAST_ADMIN",
        ChatError::Banned(_) | ChatError::TargetBanned(..) => "BANNED",
        ChatError::NotBlocked(_) => "NOT_BLOCKED",
        ChatError::YouBlock(_) => "BLOCKED",
        ChatError::NoConversation(_) | ChatError::NoSuchConversation => "NO_SUCH_CONVERSATION",
        ChatError::NoSuchMessage => "NO_SUCH_MESSAGE",
        ChatError::TooManySessions => "TOO_MANY_SESSIONS",
        ChatError::TooManyRooms(_) => "TOO_MANY_ROOMS",
        ChatError::RoomFull(_) => "ROOM_FULL",
        ChatError::NotYours => "NOT_YOURS",
        ChatError::BadText | ChatError::ReservedText => "BAD_TEXT",
        ChatError::TooLarge(_) => "TOO_LARGE",
        ChatError::NotEditable => "NOT_EDITABLE",
        ChatError::BadReaction => "BAD_REACTION",
        ChatError::AlreadyReacted => "ALREADY_REACTED",
        ChatError::NotReacted => "NOT_REACTED",
        ChatError::TooManyReactions(_) => "TOO_MANY_REACTIONS",
        ChatError::BadFilename => "BAD_FILENAME",
        ChatError::BadMime => "BAD_MIME",
        ChatError::NoSuchBlob => "NO_SUCH_BLOB",
        ChatError::TextTooLong(_) => "TEXT_TOO_LONG",
        ChatError::NoSuchHelp => "UNKNOWN_COMMAND",
        ChatError::Storage => "STORAGE",
        ChatError::Unavailable | ChatError::InDoubt => "UNAVAILABLE",
        ChatError::Internal => "INTERNAL",
    }
}

pub fn parse_code(e: &ParseError) -> &'static str {
    match e {
        ParseError::UnknownVerb => "UNKNOWN_COMMAND",
        ParseError::Usage(_) => "BAD_ARGS",
        ParseError::BadTarget => "BAD_TARGET",
        ParseError::LineTooLong => "LINE_TOO_LONG",
        ParseError::BadUtf8 => "BAD_UTF8",
    }
}

pub fn lost_code(e: &Lost) -> &'static str {
    match e {
        Lost::BadSize => "BAD_ARGS",
        Lost::TooLarge(_) => "TOO_LARGE",
        Lost::LongAttach => "LINE_TOO_LONG",
        Lost::Utf8Attach => "BAD_UTF8",
    }
}

/// `ERR <code> <text>`.
pub fn err(code: &str, text: impl fmt::Display) -> Bytes {
    encode::line(format_args!("ERR {code} {text}"))
}

/// Builds a multi-line answer in one buffer.
struct Lines(BytesMut);

impl Lines {
    fn new() -> Self {
        Lines(BytesMut::with_capacity(64))
    }

    fn line(&mut self, args: fmt::Arguments<'_>) {
        // Writing into a BytesMut cannot fail.
        let _ = self.0.write_fmt(args);
        self.0.extend_from_slice(b"\n");
    }

    fn done(self) -> Bytes {
        self.0.freeze()
    }
}

/// The verb of an admin's action, in AUDIT lines and the command's OK.
fn audit_word(action: AuditAction) -> &'static str {
    match action {
        AuditAction::Kick => "KICK",
        AuditAction::Ban => "BAN",
        AuditAction::Unban => "UNBAN",
        AuditAction::Mute => "MUTE",
        AuditAction::Unmute => "UNMUTE",
        AuditAction::Op => "OP",
        AuditAction::Deop => "DEOP",
        AuditAction::Topic => "TOPIC",
        AuditAction::Delete => "DELETE",
    }
}

pub fn ms_to_time(ms: i64) -> String {
    encode::time(chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default())
}

fn last_seen(at: Option<i64>) -> String {
    at.map_or("never".into(), ms_to_time)
}

fn msg_state_word(s: MsgState) -> &'static str {
    match s {
        MsgState::Sent => "sent",
        MsgState::Edited => "edited",
        MsgState::Deleted => "deleted",
    }
}

fn request_state_word(s: RequestState) -> &'static str {
    match s {
        RequestState::Pending => "pending",
        RequestState::Accepted => "accepted",
        RequestState::Rejected => "rejected",
    }
}

fn progress_word(p: Progress) -> &'static str {
    match p {
        Progress::Sent => "sent",
        Progress::Delivered => "delivered",
        Progress::Read => "read",
    }
}

fn presence_words(p: &Presence) -> Cow<'static, str> {
    match p {
        Presence::Online => "online".into(),
        Presence::Away(text) => format!("away {text}").into(),
        Presence::Offline(at) => format!("offline {}", last_seen(*at)).into(),
    }
}

/// `MSG <conv> <seq> <msgid> <sender> <time> <text>`, `conv` as the viewer
/// names it; appended to `buf`.
pub fn msg_line(buf: &mut BytesMut, conv_name: &str, m: &Msg, dir: &impl Directory) {
    let _ = writeln!(
        buf,
        "MSG {conv_name} {} {} {} {} {}{}",
        m.seq,
        m.id,
        dir.user_name(m.sender),
        ms_to_time(m.at),
        ReplyMark(m),
        m.text
    );
}

/// `[re <seq>] ` before the text of a reply (protocol.md, REPLY); nothing
/// for other messages. SAY refuses text that starts this way, so a client
/// can tell the two apart.
struct ReplyMark<'a>(&'a Msg);

impl std::fmt::Display for ReplyMark<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.reply_to {
            Some(seq) if self.0.state != MsgState::Deleted => write!(f, "[re {seq}] "),
            _ => Ok(()),
        }
    }
}

/// `<VERB> <conv> <seq> <msgid> <sender> <time> <state> <text>` (HISTORY, FOUND).
fn past_line(lines: &mut Lines, verb: &str, view: &str, m: &Msg, dir: &impl Directory) {
    lines.line(format_args!(
        "{verb} {view} {} {} {} {} {} {}{}",
        m.seq,
        m.id,
        dir.user_name(m.sender),
        ms_to_time(m.at),
        msg_state_word(m.state),
        ReplyMark(m),
        m.text
    ));
}

/// The final answer to a command of `viewer`'s session (`None` before login).
pub fn reply(r: &Reply, viewer: Option<UserId>, dir: &impl Directory) -> Bytes {
    let user = |u: UserId| dir.user_name(u);
    let conv = |c: ConvId| dir.conv_name(c, viewer);
    let mut out = Lines::new();
    match r {
        Reply::Pong(Some(token)) => out.line(format_args!("OK PONG {token}")),
        Reply::Pong(None) => out.line(format_args!("OK PONG")),
        Reply::Quit => out.line(format_args!("OK QUIT bye")),
        Reply::Registered(u) => out.line(format_args!("OK REGISTER {}", user(*u))),
        Reply::LoggedIn(u) => out.line(format_args!("OK LOGIN {}", user(*u))),
        Reply::Joined {
            conv: c,
            created,
            replay,
            topic,
        } => {
            let name = conv(*c);
            let how = if *created { "created" } else { "joined" };
            out.line(format_args!("OK JOIN {name} {how}"));
            if let Some(topic) = topic {
                out.line(format_args!("TOPIC {name} {topic}"));
            }
            for m in replay {
                msg_line(&mut out.0, &name, m, dir);
            }
        }
        Reply::Created(c) => out.line(format_args!("OK CREATE {}", conv(*c))),
        Reply::Away(Some(text)) => out.line(format_args!("OK AWAY {text}")),
        Reply::PusherSet {
            app_id,
            pushkey,
            added,
        } => {
            let verb = if *added { "ADD" } else { "REMOVE" };
            out.line(format_args!("OK PUSHER {verb} {app_id} {pushkey}"))
        }
        Reply::Pushers(list) => {
            for p in list {
                out.line(format_args!("PUSHER {} {} {}", p.app_id, p.pushkey, p.url));
            }
            out.line(format_args!("OK PUSHER LIST {}", list.len()));
        }
        Reply::Away(None) => out.line(format_args!("OK AWAY")),
        Reply::Moderated {
            conv: c,
            action,
            user: u,
            until,
        } => {
            let (name, who) = (conv(*c), user(*u));
            let verb = audit_word(*action);
            match until {
                Some(until) => out.line(format_args!(
                    "OK {verb} {name} {who} {}",
                    ms_to_time(*until)
                )),
                None => out.line(format_args!("OK {verb} {name} {who}")),
            }
        }
        Reply::Topic { conv: c, topic } => {
            let name = conv(*c);
            if let Some(topic) = topic {
                out.line(format_args!("TOPIC {name} {topic}"));
            }
            out.line(format_args!("OK TOPIC {name}"));
        }
        Reply::Audit { conv: c, entries } => {
            let name = conv(*c);
            for e in entries {
                let target = e.target.map_or_else(|| "-".into(), |u| user(u).to_string());
                let line = format!(
                    "AUDIT {name} {} {} {} {target}",
                    ms_to_time(e.at),
                    user(e.by),
                    audit_word(e.action)
                );
                match &e.detail {
                    Some(detail) => out.line(format_args!("{line} {detail}")),
                    None => out.line(format_args!("{line}")),
                }
            }
            out.line(format_args!("OK AUDIT {name} {}", entries.len()));
        }
        Reply::Left(c) => out.line(format_args!("OK LEAVE {}", conv(*c))),
        Reply::Who {
            conv: c,
            members,
            topic,
        } => {
            let name = conv(*c);
            if let Some(topic) = topic {
                out.line(format_args!("TOPIC {name} {topic}"));
            }
            for m in members {
                out.line(format_args!(
                    "MEMBER {name} {} {} {}",
                    user(m.user),
                    match (m.online, m.away) {
                        (true, false) => "online",
                        (true, true) => "away",
                        (false, _) => "offline",
                    },
                    if m.admin { "admin" } else { "member" }
                ));
            }
            out.line(format_args!("OK WHO {name} {}", members.len()));
        }
        Reply::Rooms(rooms) => {
            for r in rooms {
                let kind = if r.kind == ConvKind::Group {
                    "group"
                } else {
                    "public"
                };
                let role = if r.admin { "admin" } else { "member" };
                let name = conv(r.conv);
                out.line(format_args!("ROOM {name} {kind} {} {role}", r.members));
            }
            out.line(format_args!("OK ROOMS {}", rooms.len()));
        }
        Reply::Inbox(entries) => {
            for e in entries {
                let kind = match e.kind {
                    ConvKind::Public => "public",
                    ConvKind::Group => "group",
                    ConvKind::Direct => "direct",
                };
                let name = conv(e.conv);
                let (seq, unread, mentions) = (e.last_seq, e.unread, e.mentions);
                match e.last {
                    Some((at, from)) => out.line(format_args!(
                        "INBOX {name} {kind} {seq} {unread} {mentions} {} {}",
                        ms_to_time(at),
                        user(from)
                    )),
                    None => out.line(format_args!("INBOX {name} {kind} {seq} {unread} 0 - -")),
                }
            }
            out.line(format_args!("OK INBOX {}", entries.len()));
        }
        Reply::Added { conv: c, user: u } => {
            out.line(format_args!("OK ADD {} {}", conv(*c), user(*u)))
        }
        Reply::Kicked { conv: c, user: u } => {
            out.line(format_args!("OK KICK {} {}", conv(*c), user(*u)))
        }
        Reply::Opped { conv: c, user: u } => {
            out.line(format_args!("OK OP {} {}", conv(*c), user(*u)))
        }
        Reply::Said { conv: c, seq, id } => {
            out.line(format_args!("OK SAY {} {seq} {id}", conv(*c)))
        }
        Reply::Replied { conv: c, seq, id } => {
            out.line(format_args!("OK REPLY {} {seq} {id}", conv(*c)))
        }
        Reply::Attached {
            conv: c,
            seq,
            id,
            blob,
        } => out.line(format_args!("OK ATTACH {} {seq} {id} {blob}", conv(*c))),
        Reply::FriendAdded { other, accepted } => {
            let word = if *accepted { "accepted" } else { "pending" };
            out.line(format_args!("OK FRIEND ADD {} {word}", user(*other)))
        }
        Reply::FriendAnswered { other, accepted } => {
            let word = if *accepted { "ACCEPT" } else { "REJECT" };
            out.line(format_args!("OK FRIEND {word} {}", user(*other)))
        }
        Reply::FriendRemoved(other) => out.line(format_args!("OK FRIEND REMOVE {}", user(*other))),
        Reply::Blocked { other, on } => {
            let verb = if *on { "BLOCK" } else { "UNBLOCK" };
            out.line(format_args!("OK FRIEND {verb} {}", user(*other)))
        }
        Reply::BlockList(users) => {
            for u in users {
                out.line(format_args!("BLOCKED {}", user(*u)));
            }
            out.line(format_args!("OK FRIEND BLOCKED {}", users.len()));
        }
        Reply::Friends(friends) => {
            for (f, p) in friends {
                out.line(format_args!(
                    "FRIENDINFO {} {}",
                    user(*f),
                    presence_words(p)
                ));
            }
            out.line(format_args!("OK FRIEND LIST {}", friends.len()));
        }
        Reply::FriendRequests(reqs) => {
            for r in reqs {
                out.line(format_args!(
                    "REQUEST {} {} {} {}",
                    if r.outgoing { "out" } else { "in" },
                    user(r.other),
                    request_state_word(r.state),
                    ms_to_time(r.at)
                ));
            }
            out.line(format_args!("OK FRIEND REQUESTS {}", reqs.len()));
        }
        Reply::Help(verb) => {
            for (usage, what) in help::topics(*verb) {
                out.line(format_args!("HELP {usage} - {what}"));
            }
            match verb {
                Some(v) => out.line(format_args!("OK HELP {v}")),
                None => out.line(format_args!("OK HELP {}", help::topics(None).count())),
            }
        }
        Reply::History {
            conv: c,
            msgs,
            reactions,
        } => {
            let name = conv(*c);
            let mut reactions = reactions.iter().peekable();
            for m in msgs {
                past_line(&mut out, "HISTORY", &name, m, dir);
                if let Some((_, counts)) = reactions.next_if(|(seq, _)| *seq == m.seq) {
                    let mut line = format!("REACTIONS {name} {}", m.seq);
                    for (reaction, n) in counts {
                        let _ = write!(line, " {reaction} {n}");
                    }
                    out.line(format_args!("{line}"));
                }
            }
            out.line(format_args!("OK HISTORY {name} {}", msgs.len()));
        }
        Reply::Reacted {
            conv: c,
            seq,
            reaction,
            added,
        } => {
            let verb = if *added { "REACT" } else { "UNREACT" };
            out.line(format_args!("OK {verb} {} {seq} {reaction}", conv(*c)))
        }
        Reply::Reactions {
            conv: c,
            seq,
            holders,
        } => {
            let name = conv(*c);
            for (u, reaction) in holders {
                out.line(format_args!(
                    "REACTION {name} {seq} {reaction} {}",
                    user(*u)
                ));
            }
            out.line(format_args!("OK REACTIONS {name} {seq} {}", holders.len()));
        }
        Reply::Found { conv: c, msgs } => {
            let name = conv(*c);
            for m in msgs {
                past_line(&mut out, "FOUND", &name, m, dir);
            }
            out.line(format_args!("OK SEARCH {name} {}", msgs.len()));
        }
        Reply::Edited { conv: c, seq } => out.line(format_args!("OK EDIT {} {seq}", conv(*c))),
        Reply::Deleted { conv: c, seq } => out.line(format_args!("OK DELETE {} {seq}", conv(*c))),
        Reply::Synced(count) => out.line(format_args!("OK SYNC {count}")),
        Reply::Read { conv: c, seq } => out.line(format_args!("OK READ {} {seq}", conv(*c))),
        Reply::Status {
            conv: c,
            seq,
            members,
        } => {
            let name = conv(*c);
            for (u, p) in members {
                let word = progress_word(*p);
                out.line(format_args!("STATUS {name} {seq} {} {word}", user(*u)));
            }
            out.line(format_args!("OK STATUS {name} {seq} {}", members.len()));
        }
        Reply::Typing(c) => out.line(format_args!("OK TYPING {}", conv(*c))),
        Reply::Presence { user: u, presence } => {
            out.line(format_args!(
                "OK PRESENCE {} {}",
                user(*u),
                presence_words(presence)
            ));
        }
        // The file's bytes end without a LF of their own: one ends them.
        Reply::Fetched(blob) => out.line(format_args!("\nOK FETCH {blob}")),
        Reply::Failed(e) => return err(chat_code(e), e),
        Reply::Refused(e) => return err(parse_code(e), e),
        Reply::Lost(e) => return err(lost_code(e), e),
    }
    out.done()
}

/// An event as `viewer` sees it. A batch of messages is encoded by
/// [`msg_line`], since its recipients may each see a different subset.
pub fn event(e: &Event, viewer: UserId, dir: &impl Directory) -> Bytes {
    let user = |u: UserId| dir.user_name(u);
    let conv = |c: ConvId| dir.conv_name(c, Some(viewer));
    let mut out = Lines::new();
    match e {
        Event::Messages { conv: c, posts, .. } => {
            let name = conv(*c);
            for p in posts {
                msg_line(&mut out.0, &name, &p.msg, dir);
            }
        }
        Event::Joined { conv: c, user: u } => {
            out.line(format_args!("JOINED {} {}", conv(*c), user(*u)))
        }
        Event::Left { conv: c, user: u } => {
            out.line(format_args!("LEFT {} {}", conv(*c), user(*u)))
        }
        Event::Added {
            conv: c,
            user: u,
            by,
        } => out.line(format_args!(
            "ADDED {} {} {}",
            conv(*c),
            user(*u),
            user(*by)
        )),
        Event::Deopped {
            conv: c,
            user: u,
            by,
        }
        | Event::Banned {
            conv: c,
            user: u,
            by,
        }
        | Event::Unbanned {
            conv: c,
            user: u,
            by,
        }
        | Event::Unmuted {
            conv: c,
            user: u,
            by,
        } => {
            let verb = match e {
                Event::Deopped { .. } => "DEOPPED",
                Event::Banned { .. } => "BANNED",
                Event::Unbanned { .. } => "UNBANNED",
                _ => "UNMUTED",
            };
            out.line(format_args!(
                "{verb} {} {} {}",
                conv(*c),
                user(*u),
                user(*by)
            ))
        }
        Event::Muted {
            conv: c,
            user: u,
            by,
            until,
        } => out.line(format_args!(
            "MUTED {} {} {} {}",
            conv(*c),
            user(*u),
            user(*by),
            ms_to_time(*until)
        )),
        Event::TopicSet { conv: c, by, topic } => out.line(format_args!(
            "TOPICSET {} {} {}",
            conv(*c),
            user(*by),
            topic.as_deref().unwrap_or("")
        )),
        Event::Kicked {
            conv: c,
            user: u,
            by,
        } => out.line(format_args!(
            "KICKED {} {} {}",
            conv(*c),
            user(*u),
            user(*by)
        )),
        Event::Opped {
            conv: c,
            user: u,
            by,
        } => out.line(format_args!(
            "OPPED {} {} {}",
            conv(*c),
            user(*u),
            by.map_or("server", user)
        )),
        Event::Edited { conv: c, msg, by } => out.line(format_args!(
            "EDITED {} {} {} {} {}{}",
            conv(*c),
            msg.seq,
            msg.id,
            user(*by),
            ReplyMark(msg),
            msg.text
        )),
        Event::Deleted { conv: c, seq, by } => {
            out.line(format_args!("DELETED {} {seq} {}", conv(*c), user(*by)))
        }
        Event::Receipt {
            conv: c,
            seq,
            reader,
            progress,
        } => out.line(format_args!(
            "RECEIPT {} {seq} {} {}",
            conv(*c),
            user(*reader),
            progress_word(*progress)
        )),
        Event::Typing { conv: c, user: u } => {
            out.line(format_args!("TYPING {} {}", conv(*c), user(*u)))
        }
        Event::Unread { conv: c, unread } => out.line(format_args!("UNREAD {} {unread}", conv(*c))),
        Event::Reaction {
            conv: c,
            seq,
            user: u,
            reaction,
            added,
        } => {
            let verb = if *added { "REACTED" } else { "UNREACTED" };
            out.line(format_args!(
                "{verb} {} {seq} {} {reaction}",
                conv(*c),
                user(*u)
            ))
        }
        Event::Presence { user: u, presence } => out.line(format_args!(
            "PRESENCE {} {}",
            user(*u),
            presence_words(presence)
        )),
        Event::Friend { news, other } => {
            let word = match news {
                FriendNews::Request => "REQUEST",
                FriendNews::Requested => "REQUESTED",
                FriendNews::Accepted => "ACCEPTED",
                FriendNews::Rejected => "REJECTED",
                FriendNews::Removed => "REMOVED",
                FriendNews::Blocked => "BLOCKED",
                FriendNews::Unblocked => "UNBLOCKED",
            };
            out.line(format_args!("FRIEND {word} {}", user(*other)))
        }
    }
    out.done()
}

/// Part of a streamed answer.
pub fn part(p: &Part, viewer: Option<UserId>, dir: &impl Directory) -> Bytes {
    match p {
        Part::Messages { conv, msgs, .. } => {
            let name = dir.conv_name(*conv, viewer);
            let mut buf = BytesMut::new();
            for m in msgs {
                msg_line(&mut buf, &name, m, dir);
            }
            buf.freeze()
        }
    }
}

/// A piece of a FETCH answer: its `BLOB` header line, or the file's bytes.
pub fn body(b: Body) -> Bytes {
    match b {
        Body::Header { blob, size, mime } => {
            encode::line(format_args!("BLOB {blob} {size} {mime}"))
        }
        Body::Raw(bytes) => bytes,
    }
}
