//! Parsing one line into a [`Command`].
//!
//! Parsing is a pure function from `&str` to a command that borrows from the
//! line, so it allocates nothing and can be fuzzed on its own. It checks shape
//! only (verb, argument count, target sigils); names are validated by the chat
//! layer, which owns the rules for them.

use super::ParseError;
use crate::chat::types::{AuditAction, Seq};

/// A conversation as the client names it: `#room` or `@friend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Room(&'a str),
    User(&'a str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FriendCmd<'a> {
    Add(&'a str),
    Accept(&'a str),
    Reject(&'a str),
    Remove(&'a str),
    List,
    Requests,
    Block(&'a str),
    Unblock(&'a str),
    Blocked,
}

/// PUSHER's sub-commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PusherCmd<'a> {
    Add {
        app_id: &'a str,
        pushkey: &'a str,
        url: &'a str,
    },
    Remove {
        app_id: &'a str,
        pushkey: &'a str,
    },
    List,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    Help(Option<&'a str>),
    Ping(Option<&'a str>),
    Quit,
    Register {
        user: &'a str,
        password: &'a str,
    },
    Login {
        user: &'a str,
        password: &'a str,
    },
    Join(&'a str),
    Create(&'a str),
    Leave(&'a str),
    Who(&'a str),
    Rooms,
    Inbox,
    Add {
        room: &'a str,
        user: &'a str,
    },
    Kick {
        room: &'a str,
        user: &'a str,
    },
    Op {
        room: &'a str,
        user: &'a str,
    },
    /// BAN, UNBAN, MUTE (for `minutes`), UNMUTE or DEOP.
    Moderate {
        room: &'a str,
        user: &'a str,
        action: AuditAction,
        minutes: Option<u64>,
    },
    /// AWAY with text, or back without.
    Away(Option<&'a str>),
    Pusher(PusherCmd<'a>),
    /// TOPIC #room shows it; with text, sets it.
    Topic {
        room: &'a str,
        text: Option<&'a str>,
    },
    Audit {
        room: &'a str,
        limit: Option<usize>,
    },
    Say {
        to: Target<'a>,
        text: &'a str,
    },
    Reply {
        to: Target<'a>,
        seq: Seq,
        text: &'a str,
    },
    /// REACT (`added`) or UNREACT.
    React {
        conv: Target<'a>,
        seq: Seq,
        reaction: &'a str,
        added: bool,
    },
    Reactions {
        conv: Target<'a>,
        seq: Seq,
    },
    Presence(&'a str),
    Friend(FriendCmd<'a>),
    Stats,
    History {
        conv: Target<'a>,
        before: Option<Seq>,
        limit: Option<usize>,
    },
    /// `SYNC` (everything missed) or `SYNC <conv> <after-seq>`.
    Sync(Option<(Target<'a>, Seq)>),
    Read {
        conv: Target<'a>,
        seq: Seq,
    },
    Status {
        conv: Target<'a>,
        seq: Seq,
    },
    Typing(Target<'a>),
    Delete {
        conv: Target<'a>,
        seq: Seq,
    },
    Edit {
        conv: Target<'a>,
        seq: Seq,
        text: &'a str,
    },
    Search {
        conv: Target<'a>,
        before: Option<Seq>,
        words: &'a str,
    },
    /// Followed on the wire by exactly `size` raw bytes.
    Attach {
        conv: Target<'a>,
        name: &'a str,
        mime: &'a str,
        size: u64,
    },
    Fetch(&'a str),
}

/// Every verb the server knows, in the order HELP lists them.
pub const VERBS: &[&str] = &[
    "HELP",
    "PING",
    "QUIT",
    "REGISTER",
    "LOGIN",
    "JOIN",
    "CREATE",
    "LEAVE",
    "WHO",
    "ROOMS",
    "INBOX",
    "ADD",
    "KICK",
    "OP",
    "DEOP",
    "BAN",
    "UNBAN",
    "MUTE",
    "UNMUTE",
    "TOPIC",
    "AUDIT",
    "SAY",
    "REPLY",
    "REACT",
    "UNREACT",
    "REACTIONS",
    "FRIEND",
    "PRESENCE",
    "AWAY",
    "PUSHER",
    "HISTORY",
    "SYNC",
    "READ",
    "STATUS",
    "TYPING",
    "DELETE",
    "EDIT",
    "SEARCH",
    "ATTACH",
    "FETCH",
    "STATS",
];

impl Command<'_> {
    /// Commands a session may send before it has logged in.
    pub fn allowed_before_login(&self) -> bool {
        matches!(
            self,
            Command::Help(_)
                | Command::Ping(_)
                | Command::Quit
                | Command::Register { .. }
                | Command::Login { .. }
        )
    }
}

/// Word separators: spaces, and tabs as a pasted line may have them.
const SEP: [char; 2] = [' ', '\t'];

/// Splits off the first word; the rest keeps its inner spacing.
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches(SEP);
    match s.find(SEP) {
        Some(i) => (&s[..i], s[i + 1..].trim_start_matches(SEP)),
        None => (s, ""),
    }
}

/// Splits exactly `N` space-separated words, refusing fewer or more.
fn words<'a, const N: usize>(
    args: &'a str,
    verb: &'static str,
) -> Result<[&'a str; N], ParseError> {
    let mut out = [""; N];
    let mut it = args.split(SEP).filter(|w| !w.is_empty());
    for slot in out.iter_mut() {
        *slot = it.next().ok_or(ParseError::Usage(verb))?;
    }
    if it.next().is_some() {
        return Err(ParseError::Usage(verb));
    }
    Ok(out)
}

/// `<user> <password>`: the password is the rest of the line, so one with a
/// space in it reaches the chat layer and is refused as BAD_PASSWORD rather
/// than as a wrong number of words.
fn credentials<'a>(args: &'a str, verb: &'static str) -> Result<(&'a str, &'a str), ParseError> {
    match split_word(args) {
        ("", _) | (_, "") => Err(ParseError::Usage(verb)),
        pair => Ok(pair),
    }
}

fn optional_word<'a>(args: &'a str, verb: &'static str) -> Result<Option<&'a str>, ParseError> {
    match args.split(SEP).filter(|w| !w.is_empty()).count() {
        0 => Ok(None),
        1 => Ok(Some(args.trim_matches(SEP))),
        _ => Err(ParseError::Usage(verb)),
    }
}

fn target(word: &str) -> Result<Target<'_>, ParseError> {
    if word.starts_with('#') {
        Ok(Target::Room(word))
    } else if let Some(user) = word.strip_prefix('@') {
        Ok(Target::User(user))
    } else {
        Err(ParseError::BadTarget)
    }
}

/// Parses one line (without its line ending).
pub fn parse(line: &str) -> Result<Command<'_>, ParseError> {
    let line = line.trim_matches(SEP);
    let (verb, args) = split_word(line);
    let is = |name: &str| verb.eq_ignore_ascii_case(name);
    let cmd = if is("HELP") {
        // `HELP FRIEND ADD` explains FRIEND: the words after the verb are
        // the shape of the command being asked about.
        let (verb, _) = split_word(args);
        Command::Help((!verb.is_empty()).then_some(verb))
    } else if is("PING") {
        Command::Ping(optional_word(args, "PING")?)
    } else if is("QUIT") {
        Command::Quit
    } else if is("REGISTER") {
        let (user, password) = credentials(args, "REGISTER")?;
        Command::Register { user, password }
    } else if is("LOGIN") {
        let (user, password) = credentials(args, "LOGIN")?;
        Command::Login { user, password }
    } else if is("JOIN") {
        Command::Join(words::<1>(args, "JOIN")?[0])
    } else if is("CREATE") {
        Command::Create(words::<1>(args, "CREATE")?[0])
    } else if is("LEAVE") {
        Command::Leave(words::<1>(args, "LEAVE")?[0])
    } else if is("WHO") {
        Command::Who(words::<1>(args, "WHO")?[0])
    } else if is("ROOMS") {
        words::<0>(args, "ROOMS")?;
        Command::Rooms
    } else if is("INBOX") {
        words::<0>(args, "INBOX")?;
        Command::Inbox
    } else if is("ADD") {
        let [room, user] = words(args, "ADD")?;
        Command::Add { room, user }
    } else if is("KICK") {
        let [room, user] = words(args, "KICK")?;
        Command::Kick { room, user }
    } else if is("OP") {
        let [room, user] = words(args, "OP")?;
        Command::Op { room, user }
    } else if is("BAN") || is("UNBAN") || is("UNMUTE") || is("DEOP") {
        let (verb, action) = [
            ("BAN", AuditAction::Ban),
            ("UNBAN", AuditAction::Unban),
            ("UNMUTE", AuditAction::Unmute),
            ("DEOP", AuditAction::Deop),
        ]
        .into_iter()
        .find(|(v, _)| is(v))
        .unwrap_or(("BAN", AuditAction::Ban));
        let [room, user] = words(args, verb)?;
        Command::Moderate {
            room,
            user,
            action,
            minutes: None,
        }
    } else if is("MUTE") {
        let [room, user, minutes] = words(args, "MUTE")?;
        Command::Moderate {
            room,
            user,
            action: AuditAction::Mute,
            minutes: Some(number(minutes, "MUTE")?),
        }
    } else if is("PUSHER") {
        let (sub, rest) = split_word(args);
        let sub_is = |name: &str| sub.eq_ignore_ascii_case(name);
        Command::Pusher(if sub_is("ADD") {
            let [app_id, pushkey, url] = words(rest, "PUSHER")?;
            PusherCmd::Add {
                app_id,
                pushkey,
                url,
            }
        } else if sub_is("REMOVE") {
            let [app_id, pushkey] = words(rest, "PUSHER")?;
            PusherCmd::Remove { app_id, pushkey }
        } else if sub_is("LIST") {
            words::<0>(rest, "PUSHER")?;
            PusherCmd::List
        } else {
            return Err(ParseError::Usage("PUSHER"));
        })
    } else if is("AWAY") {
        Command::Away((!args.is_empty()).then_some(args))
    } else if is("TOPIC") {
        let (room, text) = split_word(args);
        if room.is_empty() {
            return Err(ParseError::Usage("TOPIC"));
        }
        Command::Topic {
            room,
            text: (!text.is_empty()).then_some(text),
        }
    } else if is("AUDIT") {
        let mut it = args.split(SEP).filter(|w| !w.is_empty());
        let room = it.next().ok_or(ParseError::Usage("AUDIT"))?;
        let limit = it.next().map(|n| number(n, "AUDIT")).transpose()?;
        if it.next().is_some() {
            return Err(ParseError::Usage("AUDIT"));
        }
        Command::Audit { room, limit }
    } else if is("SAY") {
        let (to, text) = split_word(args);
        if to.is_empty() || text.is_empty() {
            return Err(ParseError::Usage("SAY"));
        }
        Command::Say {
            to: target(to)?,
            text,
        }
    } else if is("PRESENCE") {
        Command::Presence(words::<1>(args, "PRESENCE")?[0])
    } else if is("FRIEND") {
        Command::Friend(parse_friend(args)?)
    } else if is("STATS") {
        words::<0>(args, "STATS")?;
        Command::Stats
    } else if is("HISTORY") {
        parse_history(args)?
    } else if is("SYNC") {
        match args.split(SEP).filter(|w| !w.is_empty()).count() {
            0 => Command::Sync(None),
            _ => {
                let [conv, after] = words(args, "SYNC")?;
                Command::Sync(Some((target(conv)?, number(after, "SYNC")?)))
            }
        }
    } else if is("READ") || is("STATUS") || is("DELETE") {
        let verb = if is("READ") {
            "READ"
        } else if is("STATUS") {
            "STATUS"
        } else {
            "DELETE"
        };
        let [conv, seq] = words(args, verb)?;
        let (conv, seq) = (target(conv)?, number(seq, verb)?);
        match verb {
            "READ" => Command::Read { conv, seq },
            "STATUS" => Command::Status { conv, seq },
            _ => Command::Delete { conv, seq },
        }
    } else if is("TYPING") {
        Command::Typing(target(words::<1>(args, "TYPING")?[0])?)
    } else if is("REPLY") || is("EDIT") {
        // `<conv> <seq> <text>`, the text being the rest of the line.
        let verb = if is("REPLY") { "REPLY" } else { "EDIT" };
        let (conv, rest) = split_word(args);
        let (seq, text) = split_word(rest);
        if text.is_empty() {
            return Err(ParseError::Usage(verb));
        }
        let (conv, seq) = (target(conv)?, number(seq, verb)?);
        if verb == "REPLY" {
            Command::Reply {
                to: conv,
                seq,
                text,
            }
        } else {
            Command::Edit { conv, seq, text }
        }
    } else if is("REACT") || is("UNREACT") {
        let verb = if is("REACT") { "REACT" } else { "UNREACT" };
        let [conv, seq, reaction] = words(args, verb)?;
        Command::React {
            conv: target(conv)?,
            seq: number(seq, verb)?,
            reaction,
            added: verb == "REACT",
        }
    } else if is("REACTIONS") {
        let [conv, seq] = words(args, "REACTIONS")?;
        Command::Reactions {
            conv: target(conv)?,
            seq: number(seq, "REACTIONS")?,
        }
    } else if is("ATTACH") {
        let [conv, name, mime, size] = words(args, "ATTACH")?;
        Command::Attach {
            conv: target(conv)?,
            name,
            mime,
            size: number(size, "ATTACH")?,
        }
    } else if is("FETCH") {
        Command::Fetch(words::<1>(args, "FETCH")?[0])
    } else if is("SEARCH") {
        let (conv, rest) = split_word(args);
        let (first, after_first) = split_word(rest);
        let (before, words) = if first.eq_ignore_ascii_case("BEFORE") {
            let (seq, words) = split_word(after_first);
            (Some(number(seq, "SEARCH")?), words)
        } else {
            (None, rest)
        };
        if conv.is_empty() || words.is_empty() {
            return Err(ParseError::Usage("SEARCH"));
        }
        Command::Search {
            conv: target(conv)?,
            before,
            words,
        }
    } else {
        return Err(ParseError::UnknownVerb);
    };
    Ok(cmd)
}

/// Whether `head`, the first bytes of a line, starts with the ATTACH verb
/// as [`parse`] reads it: after any spaces or tabs, in any case, and followed
/// by a space or tab. The framer asks this of a line too long to parse,
/// since such a line declares a body it cannot find.
pub fn starts_attach(head: &[u8]) -> bool {
    let verb_at = head
        .iter()
        .position(|b| !SEP.contains(&char::from(*b)))
        .unwrap_or(head.len());
    let verb = b"ATTACH";
    let rest = &head[verb_at..];
    rest.len() > verb.len()
        && rest[..verb.len()].eq_ignore_ascii_case(verb)
        && SEP.contains(&char::from(rest[verb.len()]))
}

/// What the last word of an ATTACH line declares about the body after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    /// Not an ATTACH line, or its last word is not meant as a size (no
    /// digit or sign first): no body follows.
    Nothing,
    /// This many raw bytes follow.
    Size(u64),
    /// A size was meant (the word starts with a digit or sign) but is not a
    /// number of bytes: the body's extent is unknown.
    Unreadable,
}

/// The body size an ATTACH line declares: its last word, read the same way
/// whether or not the rest of the line parses.
pub fn declared_size(line: &str) -> Declared {
    let (verb, args) = split_word(line.trim_matches(SEP));
    if !verb.eq_ignore_ascii_case("ATTACH") {
        return Declared::Nothing;
    }
    let Some(last) = args.split(SEP).rfind(|w| !w.is_empty()) else {
        return Declared::Nothing;
    };
    match last.parse() {
        Ok(n) => Declared::Size(n),
        Err(_) if last.starts_with(|c: char| c.is_ascii_digit() || c == '+' || c == '-') => {
            Declared::Unreadable
        }
        Err(_) => Declared::Nothing,
    }
}

fn number<T: std::str::FromStr>(word: &str, verb: &'static str) -> Result<T, ParseError> {
    word.parse().map_err(|_| ParseError::Usage(verb))
}

/// `HISTORY <conv> [BEFORE <seq>] [LIMIT <n>]`, options in either order.
fn parse_history(args: &str) -> Result<Command<'_>, ParseError> {
    let mut it = args.split(SEP).filter(|w| !w.is_empty());
    let conv = target(it.next().ok_or(ParseError::Usage("HISTORY"))?)?;
    let (mut before, mut limit) = (None, None);
    while let Some(opt) = it.next() {
        let value = it.next().ok_or(ParseError::Usage("HISTORY"))?;
        if opt.eq_ignore_ascii_case("BEFORE") && before.is_none() {
            before = Some(number(value, "HISTORY")?);
        } else if opt.eq_ignore_ascii_case("LIMIT") && limit.is_none() {
            limit = Some(number(value, "HISTORY")?);
        } else {
            return Err(ParseError::Usage("HISTORY"));
        }
    }
    Ok(Command::History {
        conv,
        before,
        limit,
    })
}

fn parse_friend(args: &str) -> Result<FriendCmd<'_>, ParseError> {
    let (sub, rest) = split_word(args);
    let is = |name: &str| sub.eq_ignore_ascii_case(name);
    let user = || words::<1>(rest, "FRIEND").map(|[u]| u);
    Ok(if is("ADD") {
        FriendCmd::Add(user()?)
    } else if is("ACCEPT") {
        FriendCmd::Accept(user()?)
    } else if is("REJECT") {
        FriendCmd::Reject(user()?)
    } else if is("REMOVE") {
        FriendCmd::Remove(user()?)
    } else if is("LIST") {
        words::<0>(rest, "FRIEND")?;
        FriendCmd::List
    } else if is("REQUESTS") {
        words::<0>(rest, "FRIEND")?;
        FriendCmd::Requests
    } else if is("BLOCK") {
        FriendCmd::Block(user()?)
    } else if is("UNBLOCK") {
        FriendCmd::Unblock(user()?)
    } else if is("BLOCKED") {
        words::<0>(rest, "FRIEND")?;
        FriendCmd::Blocked
    } else {
        return Err(ParseError::Usage("FRIEND"));
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_attach_reads_the_verb_as_parse_does() {
        for head in ["ATTACH #r", "attach\t", " \tAttach x", "ATTACH  "] {
            assert!(starts_attach(head.as_bytes()), "{head:?}");
        }
        for head in ["ATTACH", "ATTACHED #r", "SAY ATTACH x", "", "  ", "ATTAC"] {
            assert!(!starts_attach(head.as_bytes()), "{head:?}");
        }
    }

    #[test]
    fn verbs_are_case_insensitive_and_text_keeps_spaces() {
        assert_eq!(
            parse("say #Room  hello   world ").unwrap(),
            Command::Say {
                to: Target::Room("#Room"),
                text: "hello   world"
            }
        );
        assert_eq!(
            parse("SAY @bob hi").unwrap(),
            Command::Say {
                to: Target::User("bob"),
                text: "hi"
            }
        );
    }

    #[test]
    fn tabs_separate_words_like_spaces() {
        assert_eq!(
            parse("SAY\t#a\thi\tthere").unwrap(),
            Command::Say {
                to: Target::Room("#a"),
                text: "hi\tthere"
            }
        );
        assert_eq!(parse("PING\tx").unwrap(), Command::Ping(Some("x")));
    }

    #[test]
    fn argument_counts_are_checked() {
        assert_eq!(parse("LOGIN alice"), Err(ParseError::Usage("LOGIN")));
        assert_eq!(
            parse("LOGIN a b c").unwrap(),
            Command::Login {
                user: "a",
                password: "b c"
            }
        );
        assert_eq!(parse("JOIN"), Err(ParseError::Usage("JOIN")));
        assert_eq!(parse("ROOMS x"), Err(ParseError::Usage("ROOMS")));
        assert_eq!(parse("SAY #a"), Err(ParseError::Usage("SAY")));
        assert_eq!(parse("SAY room hi"), Err(ParseError::BadTarget));
        assert_eq!(parse("PING a b"), Err(ParseError::Usage("PING")));
        assert_eq!(parse("FRIEND EAT bob"), Err(ParseError::Usage("FRIEND")));
    }

    #[test]
    fn history_sync_and_message_commands() {
        assert_eq!(
            parse("HISTORY #r LIMIT 5 before 10").unwrap(),
            Command::History {
                conv: Target::Room("#r"),
                before: Some(Seq(10)),
                limit: Some(5)
            }
        );
        assert_eq!(parse("HISTORY #r LIMIT"), Err(ParseError::Usage("HISTORY")));
        assert_eq!(
            parse("HISTORY #r LIMIT x"),
            Err(ParseError::Usage("HISTORY"))
        );
        assert_eq!(parse("SYNC").unwrap(), Command::Sync(None));
        assert_eq!(
            parse("SYNC @bob 7").unwrap(),
            Command::Sync(Some((Target::User("bob"), Seq(7))))
        );
        assert_eq!(parse("SYNC #r"), Err(ParseError::Usage("SYNC")));
        assert_eq!(
            parse("EDIT #r 3 new  text").unwrap(),
            Command::Edit {
                conv: Target::Room("#r"),
                seq: Seq(3),
                text: "new  text"
            }
        );
        assert_eq!(parse("EDIT #r 3"), Err(ParseError::Usage("EDIT")));
        assert_eq!(parse("DELETE #r -1"), Err(ParseError::Usage("DELETE")));
        assert_eq!(
            parse("SEARCH #r BEFORE 9 hello world").unwrap(),
            Command::Search {
                conv: Target::Room("#r"),
                before: Some(Seq(9)),
                words: "hello world"
            }
        );
        assert_eq!(
            parse("SEARCH #r hello").unwrap(),
            Command::Search {
                conv: Target::Room("#r"),
                before: None,
                words: "hello"
            }
        );
    }

    #[test]
    fn unknown_verbs_are_reported() {
        assert_eq!(parse("FROB x"), Err(ParseError::UnknownVerb));
    }

    #[test]
    fn optional_arguments() {
        assert_eq!(parse("ping").unwrap(), Command::Ping(None));
        assert_eq!(parse("PING  abc ").unwrap(), Command::Ping(Some("abc")));
        assert_eq!(parse("help say").unwrap(), Command::Help(Some("say")));
        assert_eq!(
            parse("HELP friend add\tbob").unwrap(),
            Command::Help(Some("friend"))
        );
        assert_eq!(
            parse("friend accept Bob").unwrap(),
            Command::Friend(FriendCmd::Accept("Bob"))
        );
    }

    #[test]
    fn every_listed_verb_parses_as_known() {
        for verb in VERBS {
            assert_ne!(parse(verb), Err(ParseError::UnknownVerb), "{verb}");
        }
    }
}
