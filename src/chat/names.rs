//! The rules for names, in one place. Names are case-insensitive: they are
//! folded to lowercase, and shown that way.

use super::ChatError;

pub const MAX_NAME: usize = 32;

fn valid_body(s: &str) -> bool {
    (1..=MAX_NAME).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A user name: 1-32 of `[a-z0-9_-]`, starting with a letter.
pub fn user(name: &str) -> Result<String, ChatError> {
    if valid_body(name) && name.as_bytes()[0].is_ascii_alphabetic() {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(ChatError::BadUsername)
    }
}

/// Whether `text` mentions `user` (a valid, lowercase name): `@user` in any
/// case, not inside a longer name or word (`@bobby` and `x@bob` do not
/// mention bob).
pub fn mentions(text: &str, user: &str) -> bool {
    let bytes = text.as_bytes();
    let name_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    bytes.iter().enumerate().any(|(at, &b)| {
        let name_at = at + 1;
        b == b'@'
            && (at == 0 || !name_byte(bytes[at - 1]))
            && bytes.len() >= name_at + user.len()
            && bytes[name_at..name_at + user.len()].eq_ignore_ascii_case(user.as_bytes())
            && bytes
                .get(name_at + user.len())
                .is_none_or(|&b| !name_byte(b))
    })
}

/// A reaction: 1-32 bytes, no whitespace or control characters (an emoji,
/// or a short word).
pub fn reaction(r: &str) -> Result<(), ChatError> {
    if (1..=32).contains(&r.len()) && !r.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Ok(())
    } else {
        Err(ChatError::BadReaction)
    }
}

/// A room name: `#` then 1-32 of `[a-z0-9_-]`.
pub fn room(name: &str) -> Result<String, ChatError> {
    match name.strip_prefix('#') {
        Some(body) if valid_body(body) => Ok(name.to_ascii_lowercase()),
        _ => Err(ChatError::BadRoomName),
    }
}

/// A password: 8-128 characters, no whitespace or control characters.
pub fn password(pw: &str) -> Result<(), ChatError> {
    let n = pw.chars().count();
    if (8..=128).contains(&n) && !pw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Ok(())
    } else {
        Err(ChatError::BadPassword)
    }
}

/// Message text: no control characters (they would corrupt terminals and
/// framing), at most `max` bytes.
pub fn text(text: &str, max: usize) -> Result<(), ChatError> {
    if text.len() > max {
        return Err(ChatError::TextTooLong(max));
    }
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ChatError::BadText);
    }
    Ok(())
}

/// The text of a message a user writes (SAY, REPLY, EDIT): [`text`]'s
/// rules, and none of the starts that mark what only the server writes.
pub fn message_text(t: &str, max: usize) -> Result<(), ChatError> {
    text(t, max)?;
    if is_reserved_text(t) {
        return Err(ChatError::ReservedText);
    }
    Ok(())
}

/// An attachment's file name: one word of 1-255 bytes, no control characters.
pub fn filename(name: &str) -> Result<(), ChatError> {
    if (1..=255).contains(&name.len()) && !name.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        Ok(())
    } else {
        Err(ChatError::BadFilename)
    }
}

/// A MIME type: `type/subtype`, each of letters, digits and `!#$&^_.+-`.
pub fn mime(m: &str) -> Result<String, ChatError> {
    let ok_part = |p: &str| {
        (1..=64).contains(&p.len())
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    match m.split_once('/') {
        Some((t, s)) if ok_part(t) && ok_part(s) => Ok(m.to_ascii_lowercase()),
        _ => Err(ChatError::BadMime),
    }
}

/// How an attachment appears as message text.
pub fn is_attachment_text(text: &str) -> bool {
    text.starts_with("[file ") || text.starts_with("[image ")
}

/// Text that SAY, REPLY and EDIT may not start with: how an attachment
/// appears, and the `[re <seq>]` a reply is shown with, which a client
/// would otherwise take for the real thing.
pub fn is_reserved_text(text: &str) -> bool {
    is_attachment_text(text) || text.starts_with("[re ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names() {
        assert_eq!(user("Alice_1").unwrap(), "alice_1");
        assert!(user("1alice").is_err());
        assert!(user("").is_err());
        assert!(user("al ice").is_err());
        assert!(user("a\u{7}").is_err());
        assert!(user(&"a".repeat(33)).is_err());
        assert!(user(&"a".repeat(32)).is_ok());
    }

    #[test]
    fn room_names() {
        assert_eq!(room("#Lobby").unwrap(), "#lobby");
        assert!(room("#").is_err());
        assert!(room("lobby").is_err());
        assert!(room("#a#b").is_err());
        assert!(room("#1").is_ok());
    }

    #[test]
    fn a_mention_is_the_whole_name_after_an_at_sign() {
        assert!(mentions("@bob hi", "bob"));
        assert!(mentions("hi @Bob!", "bob"));
        assert!(mentions("(@bob)", "bob"));
        assert!(mentions("ping @alice and @bob", "bob"));
        assert!(!mentions("@bobby hi", "bob"));
        assert!(!mentions("mail x@bob", "bob"));
        assert!(!mentions("@bob-2 hi", "bob"));
        assert!(!mentions("bob", "bob"));
        assert!(!mentions("@", "bob"));
        assert!(!mentions("@bo", "bob"));
    }

    #[test]
    fn attachment_names() {
        assert!(filename("cat.png").is_ok());
        assert!(filename("a b").is_err());
        assert!(filename("").is_err());
        assert_eq!(mime("Image/PNG").unwrap(), "image/png");
        assert!(mime("image").is_err());
        assert!(mime("image/").is_err());
        assert!(mime("a/b/c").is_err());
        assert!(is_attachment_text("[image x]"));
        assert!(!is_attachment_text("[imagine]"));
        assert!(is_reserved_text("[re 3] hi"));
        assert!(!is_reserved_text("[really]"));
    }

    #[test]
    fn passwords_and_text() {
        assert!(password("hunter22").is_ok());
        assert!(password("short").is_err());
        assert!(text("hi\tthere", 10).is_ok());
        assert_eq!(text("a\rb", 10), Err(ChatError::BadText));
        assert_eq!(text("abcdef", 3), Err(ChatError::TextTooLong(3)));
    }
}
