//! The wire protocol: framing, parsing and encoding, with no I/O.

pub mod codec;
pub mod command;
pub mod directive;
pub mod driver_lines;
pub mod encode;
pub mod framing;
pub mod help;

pub use codec::ms_to_time;
pub use command::{Command, FriendCmd, PusherCmd, Target, parse};
pub use directive::{Framing, Lost, framing};
pub use framing::{Frame, LineFramer};

/// Why a line could not become a command. Each variant is one ERR code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unknown command; try HELP")]
    UnknownVerb,
    /// The verb is known but its arguments are not; carries the verb for HELP.
    #[error("wrong arguments for {0}; try HELP {0}")]
    Usage(&'static str),
    #[error("a conversation is #room or @user")]
    BadTarget,
    #[error("line longer than the limit; it was discarded")]
    LineTooLong,
    #[error("line is not valid UTF-8")]
    BadUtf8,
}
