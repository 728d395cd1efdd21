//! What can go wrong in the chat domain. Each case becomes a stable ERR
//! code in one place, the codec (`protocol::codec::chat_code`).

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChatError {
    #[error("log in first with LOGIN <user> <password> or REGISTER <user> <password>")]
    NotLoggedIn,
    #[error("this session is already logged in")]
    AlreadyLoggedIn,
    #[error("user names are 1-32 characters: letters, digits, '_' or '-', starting with a letter")]
    BadUsername,
    #[error("passwords are 8-128 characters without spaces")]
    BadPassword,
    #[error("that user name is taken")]
    UserExists,
    #[error("invalid user name or password")]
    BadLogin,
    #[error("room names are '#' and 1-32 characters: letters, digits, '_' or '-'")]
    BadRoomName,
    #[error("no such room")]
    NoSuchRoom,
    #[error("no such user")]
    NoSuchUser,
    #[error("you are not a member of {0}")]
    NotMember(String),
    #[error("already a member of {0}")]
    AlreadyMember(String),
    #[error("{0} already exists")]
    RoomExists(String),
    #[error("{0} is invite-only; an admin must ADD you")]
    InviteOnly(String),
    #[error("only an admin of {0} can do that")]
    NotAdmin(String),
    #[error("{0} is already in {1}")]
    TargetAlreadyMember(String, String),
    #[error("{0} is not in {1}")]
    TargetNotMember(String, String),
    #[error("{0} is already an admin of {1}")]
    AlreadyAdmin(String, String),
    #[error("you and {0} are not friends")]
    NotFriends(String),
    #[error("you cannot do that to yourself")]
    SelfTarget,
    #[error("you and {0} are already friends")]
    AlreadyFriends(String),
    #[error("a request to {0} is already pending")]
    RequestPending(String),
    #[error("no pending request from {0}")]
    NoRequest(String),
    #[error("you are muted in {room} until {}", crate::protocol::ms_to_time(*until))]
    Muted { room: String, until: i64 },
    #[error("{0} is already banned from {1}")]
    AlreadyBanned(String, String),
    #[error("{0} is not banned from {1}")]
    NotBanned(String, String),
    #[error("{0} is not muted in {1}")]
    NotMuted(String, String),
    #[error("a mute lasts 1 to {0} minutes")]
    BadMinutes(u64),
    #[error("{0} is not an admin of {1}")]
    TargetNotAdmin(String, String),
    #[error("{0} needs an admin; OP someone first")]
    LastAdmin(String),
    #[error("you are banned from {0}")]
    Banned(String),
    #[error("{0} is banned from {1}; UNBAN first")]
    TargetBanned(String, String),
    #[error("{0}")]
    BadPusher(&'static str),
    #[error("no such pusher")]
    NoSuchPusher,
    #[error("at most {0} pushers per user")]
    TooManyPushers(usize),
    #[error("you already block {0}")]
    AlreadyBlocked(String),
    #[error("you do not block {0}")]
    NotBlocked(String),
    #[error("you block {0}; FRIEND UNBLOCK them first")]
    YouBlock(String),
    #[error("no such conversation")]
    NoSuchConversation,
    #[error("no conversation with {0} yet")]
    NoConversation(String),
    #[error("too many sessions open for this user")]
    TooManySessions,
    #[error("{0} is in too many rooms already")]
    TooManyRooms(String),
    #[error("{0} is full")]
    RoomFull(String),
    #[error("no such message")]
    NoSuchMessage,
    #[error("only its sender (or, to delete, an admin) can change that message")]
    NotYours,
    #[error("an attachment cannot be edited; DELETE it and send another")]
    NotEditable,
    #[error("attachments are at most {0} bytes")]
    TooLarge(u64),
    #[error("file names are 1-255 bytes without spaces or control characters")]
    BadFilename,
    #[error("a MIME type looks like type/subtype, e.g. image/png")]
    BadMime,
    #[error("no such blob, or not in a conversation of yours")]
    NoSuchBlob,
    #[error("text starting with [file, [image or [re is reserved for attachments and replies")]
    ReservedText,
    #[error("a reaction is 1-32 bytes without spaces or control characters, e.g. an emoji")]
    BadReaction,
    #[error("you already reacted that way")]
    AlreadyReacted,
    #[error("you have not reacted that way")]
    NotReacted,
    #[error("at most {0} reactions per user and message")]
    TooManyReactions(usize),
    #[error("message text may not contain control characters")]
    BadText,
    #[error("message longer than {0} bytes")]
    TextTooLong(usize),
    #[error("no command by that name; try HELP")]
    NoSuchHelp,
    #[error("the server could not save that; try again")]
    Storage,
    /// The shared database cannot be reached; nothing was saved.
    #[error("the database is unreachable; nothing was saved, try again shortly")]
    Unavailable,
    /// The shared database went away while committing and did not come
    /// back in time to say whether it had: the change may be saved.
    #[error("the database went away while saving that; it may be saved, look before sending again")]
    InDoubt,
    #[error("the server could not check that password; try again")]
    Internal,
}
