//! HELP: the command reference a person at `nc` reads. It describes the
//! linechat wire syntax, so it lives with the parser; the hub only checks
//! that a verb exists and the codec writes the lines.

use super::command::VERBS;

/// (verb, usage, what it does). One entry per verb in `VERBS`.
const TOPICS: &[(&str, &str, &str)] = &[
    ("HELP", "HELP [command]", "list commands, or explain one"),
    (
        "PING",
        "PING [token]",
        "check the connection: answers OK PONG [token]",
    ),
    ("QUIT", "QUIT", "close the connection"),
    (
        "REGISTER",
        "REGISTER <user> <password>",
        "create an account and log in (user: 1-32 of a-z 0-9 _ -, starting with a letter; password: 8-128 characters, no spaces)",
    ),
    (
        "LOGIN",
        "LOGIN <user> <password>",
        "log in; you may be logged in on several connections at once",
    ),
    (
        "JOIN",
        "JOIN #room",
        "join a public room, creating it if absent (its creator is its admin); recent messages follow the OK",
    ),
    (
        "CREATE",
        "CREATE #group",
        "create an invite-only group; you are its admin",
    ),
    ("LEAVE", "LEAVE #room", "leave a room or group"),
    (
        "WHO",
        "WHO #room",
        "list members, each online or offline, admin or member",
    ),
    ("ROOMS", "ROOMS", "list your rooms and groups"),
    (
        "INBOX",
        "INBOX",
        "list all your conversations, newest activity first, with unread counts",
    ),
    (
        "ADD",
        "ADD #room <user>",
        "admins: add a user to a room or group",
    ),
    (
        "KICK",
        "KICK #room <user>",
        "admins: remove a user from a room or group",
    ),
    (
        "OP",
        "OP #room <user>",
        "admins: make a member an admin too",
    ),
    (
        "AWAY",
        "AWAY [<text>]",
        "say you are away, with a text; AWAY alone says you are back",
    ),
    (
        "PUSHER",
        "PUSHER ADD <app-id> <pushkey> <gateway-url> | PUSHER REMOVE <app-id> <pushkey> | PUSHER LIST",
        "register a device for push notifications through a Matrix push gateway",
    ),
    (
        "DEOP",
        "DEOP #room <user>",
        "admins: take a member's admin rights (a room keeps at least one admin)",
    ),
    (
        "BAN",
        "BAN #room <user>",
        "admins: remove a user and keep them out until UNBAN",
    ),
    (
        "UNBAN",
        "UNBAN #room <user>",
        "admins: let a banned user back in",
    ),
    (
        "MUTE",
        "MUTE #room <user> <minutes>",
        "admins: stop a member speaking for a while (1 to 525600 minutes)",
    ),
    ("UNMUTE", "UNMUTE #room <user>", "admins: end a mute early"),
    (
        "TOPIC",
        "TOPIC #room [<text> | -]",
        "show the topic; admins set it, or clear it with -",
    ),
    (
        "AUDIT",
        "AUDIT #room [<n>]",
        "admins: the newest n (default 50, at most 100) admin actions, oldest first",
    ),
    (
        "SAY",
        "SAY #room <text> | SAY @friend <text>",
        "send a message to a room you are in, or to a friend; the text is the rest of the line",
    ),
    (
        "REPLY",
        "REPLY <conv> <seq> <text>",
        "send a message that answers message <seq>; it shows as [re <seq>] <text>",
    ),
    (
        "REACT",
        "REACT <conv> <seq> <reaction>",
        "react to a message with an emoji or a word (1-32 bytes, no spaces)",
    ),
    (
        "UNREACT",
        "UNREACT <conv> <seq> <reaction>",
        "take one of your reactions off a message",
    ),
    (
        "REACTIONS",
        "REACTIONS <conv> <seq>",
        "list who reacted how to a message",
    ),
    (
        "FRIEND",
        "FRIEND ADD|ACCEPT|REJECT|REMOVE|BLOCK|UNBLOCK <user> | FRIEND LIST|REQUESTS|BLOCKED",
        "send, answer and list friend requests; list friends; block a user",
    ),
    (
        "PRESENCE",
        "PRESENCE <user>",
        "is the user online, and when were they last seen",
    ),
    (
        "HISTORY",
        "HISTORY <conv> [BEFORE <seq>] [LIMIT <n>]",
        "older messages of #room or @friend, oldest first (default 50, at most 500); page back with BEFORE <oldest seq seen>",
    ),
    (
        "SYNC",
        "SYNC | SYNC <conv> <after-seq>",
        "messages you missed everywhere (LOGIN does this too), or in one conversation after a seq",
    ),
    (
        "READ",
        "READ <conv> <seq>",
        "mark everything up to seq read; senders get a read receipt",
    ),
    (
        "STATUS",
        "STATUS <conv> <seq>",
        "who has the message: sent, delivered or read, per member",
    ),
    (
        "TYPING",
        "TYPING <conv>",
        "tell the others you are typing (they show it for about 5 seconds)",
    ),
    (
        "DELETE",
        "DELETE <conv> <seq>",
        "delete your message (admins: any message in their room)",
    ),
    (
        "EDIT",
        "EDIT <conv> <seq> <text>",
        "replace the text of your message",
    ),
    (
        "SEARCH",
        "SEARCH <conv> [BEFORE <seq>] <words>",
        "find messages containing every word, newest first, 20 a page",
    ),
    (
        "ATTACH",
        "ATTACH <conv> <filename> <mime> <size>",
        "send a file: this line, then exactly <size> raw bytes; members see [file|image <blob-id> <mime> <size> <filename>]",
    ),
    (
        "FETCH",
        "FETCH <blob-id>",
        "download a file from a conversation of yours: BLOB <id> <size> <mime>, the bytes, a LF, then OK FETCH",
    ),
    ("STATS", "STATS", "the server's counters"),
];

/// The canonical verb `v` names (any case), if it is a command.
pub fn verb(v: &str) -> Option<&'static str> {
    TOPICS
        .iter()
        .find(|t| t.0.eq_ignore_ascii_case(v))
        .map(|t| t.0)
}

/// `(usage, what)` of every verb in `VERBS` order (`None`), or of one.
pub fn topics(verb: Option<&str>) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
    VERBS
        .iter()
        .filter(move |v| verb.is_none_or(|one| one == **v))
        .filter_map(|v| TOPICS.iter().find(|t| t.0 == *v))
        .map(|&(_, usage, what)| (usage, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verb_has_a_topic() {
        for verb in VERBS {
            assert!(TOPICS.iter().any(|t| t.0 == *verb), "{verb} lacks HELP");
        }
        assert_eq!(TOPICS.len(), VERBS.len());
    }

    #[test]
    fn one_topic() {
        assert_eq!(verb("say"), Some("SAY"));
        assert_eq!(verb("nope"), None);
        let (usage, _) = topics(Some("SAY")).next().unwrap();
        assert!(usage.starts_with("SAY #room <text>"));
        assert_eq!(topics(None).count(), VERBS.len());
    }
}
