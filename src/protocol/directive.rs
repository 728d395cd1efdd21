//! What follows a command line on the wire.
//!
//! The driver must know, for every line, whether raw bytes follow it and
//! whether it may read on, but it should not know commands. This module
//! answers from the line and its parse result, so the driver acts on a
//! [`Framing`] directive only, and the rule lives beside the parser that
//! shares it (the ATTACH size is the last word, whether or not the rest of
//! the line parses).

use super::{Command, ParseError, command};

/// A body refused as too large is read and dropped only up to this size;
/// past it the connection is closed instead, since skipping would take as
/// long as the upload and leave the session deaf meanwhile (Go's net/http
/// discards at most 256 KiB of an unread request body for the same reason).
pub const SKIP_AT_MOST: u64 = 256 * 1024;

/// What the driver does after handing a line on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// The line stands alone: the next line follows.
    Line,
    /// Exactly this many raw bytes follow the line, whatever its answer.
    Body(u64),
    /// Nothing after the line is read; the session closes once its answer
    /// has been written.
    Close,
    /// The stream can no longer be split into lines: the line is not handed
    /// on, the session is answered with `Reply::Lost` and closed.
    Lost(Lost),
}

/// Why the framing of a session's input is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Lost {
    #[error(
        "the ATTACH size must be a number of bytes; closing the connection, since its body cannot be told from commands"
    )]
    BadSize,
    #[error(
        "attachments are at most {0} bytes; closing the connection instead of reading the body"
    )]
    TooLarge(u64),
    /// An ATTACH line over the line limit: its size was never read.
    #[error(
        "the ATTACH line is longer than the limit; closing the connection, since its body cannot be told from commands"
    )]
    LongAttach,
    /// An ATTACH line that declares a size but is not valid UTF-8.
    #[error(
        "the ATTACH line is not valid UTF-8; closing the connection, since its body cannot be told from commands"
    )]
    Utf8Attach,
}

/// The directive for `line`, parsed as `parsed`; bodies over `max_body`
/// bytes are refused (and past [`SKIP_AT_MOST`], not read at all).
pub fn framing(line: &str, parsed: &Result<Command<'_>, ParseError>, max_body: u64) -> Framing {
    let size = match parsed {
        Ok(Command::Quit) => return Framing::Close,
        Ok(Command::Attach { size, .. }) => *size,
        Ok(_) => return Framing::Line,
        Err(_) => match command::declared_size(line) {
            command::Declared::Nothing => return Framing::Line,
            command::Declared::Unreadable => return Framing::Lost(Lost::BadSize),
            command::Declared::Size(n) => n,
        },
    };
    if size > max_body && size > SKIP_AT_MOST {
        Framing::Lost(Lost::TooLarge(max_body))
    } else {
        Framing::Body(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse;

    fn of(line: &str) -> Framing {
        framing(line, &parse(line), 1000)
    }

    #[test]
    fn the_last_word_of_an_attach_line_is_its_size_even_when_it_does_not_parse() {
        assert_eq!(of("ATTACH #r a.bin text/plain 5"), Framing::Body(5));
        assert_eq!(of("attach #r my file.txt text/plain 30"), Framing::Body(30));
        assert_eq!(of("ATTACH room a.bin text/plain 7"), Framing::Body(7));
        assert_eq!(of("ATTACH #r a.bin 12"), Framing::Body(12));
        assert_eq!(of("ATTACH #r a.bin text/plain many"), Framing::Line);
        assert_eq!(of("ATTACH"), Framing::Line);
        assert_eq!(of("ATTACH #r a b -5"), Framing::Lost(Lost::BadSize));
        assert_eq!(of("ATTACH #r a b 12k"), Framing::Lost(Lost::BadSize));
        assert_eq!(
            of("ATTACH #r a b 99999999999999999999999"),
            Framing::Lost(Lost::BadSize)
        );
    }

    #[test]
    fn oversized_bodies_are_skipped_only_while_small() {
        assert_eq!(of("ATTACH #r a b 2000"), Framing::Body(2000));
        assert_eq!(
            of("ATTACH #r a b 99999999999"),
            Framing::Lost(Lost::TooLarge(1000))
        );
        assert_eq!(
            of("ATTACH #r a b/c d 99999999999"),
            Framing::Lost(Lost::TooLarge(1000))
        );
    }

    #[test]
    fn quit_closes_and_other_lines_stand_alone() {
        assert_eq!(of("quit"), Framing::Close);
        assert_eq!(of("SAY #r 5"), Framing::Line);
        assert_eq!(of("FROB 5"), Framing::Line);
    }
}
