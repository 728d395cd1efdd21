//! RESP, Redis' wire format, for the Redis adapters: commands out, and
//! replies read one line at a time. A reply is a tree of aggregates
//! (arrays, maps, pushes) whose leaves are lines; the reader keeps only the
//! path of open aggregates, so each leaf comes with its depth and its
//! position in its parent, and the last leaf of a reply says so.

/// Appends one command as a RESP array of bulk strings.
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    crate::payload::write_u64(out, args.len() as u64);
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        crate::payload::write_u64(out, a.len() as u64);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// What one reply line was.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// A simple string or integer (with its type byte: `+PONG`, `:3`), the
    /// data of a bulk string (without one), or a null (empty).
    Value(&'a [u8]),
    /// An error reply, `-` included.
    Error(&'a [u8]),
    /// The header of a non-empty aggregate; its elements follow.
    Open,
}

/// One reply line and where it sits in its reply.
#[derive(Debug, PartialEq, Eq)]
pub struct Token<'a> {
    pub kind: Kind<'a>,
    /// Aggregates this line is inside (0: a whole reply).
    pub depth: usize,
    /// Position in the enclosing aggregate (0 at depth 0).
    pub index: u64,
    /// This line completes a top-level reply.
    pub last: bool,
}

#[derive(Default)]
pub struct Reader {
    /// The next line is bulk data announced by a `$len` header.
    bulk_next: bool,
    /// Open aggregates, outermost first: (elements, elements still to come).
    open: Vec<(u64, u64)>,
}

impl Reader {
    /// Reads one line (without CRLF); None for a bulk header, whose data
    /// line is the token.
    pub fn next<'a>(&mut self, line: &'a [u8]) -> Option<Token<'a>> {
        let kind = if std::mem::take(&mut self.bulk_next) {
            Kind::Value(line)
        } else {
            match line.first() {
                // "$-1" is a null bulk: a value with no data line.
                Some(b'$') if line != b"$-1" => {
                    self.bulk_next = true;
                    return None;
                }
                Some(b'$') => Kind::Value(b""),
                Some(b'-') => Kind::Error(line),
                Some(&t @ (b'*' | b'>' | b'~' | b'%')) => match aggregate_len(t, &line[1..]) {
                    0 => Kind::Value(b""),
                    _ => Kind::Open,
                },
                _ => Kind::Value(line),
            }
        };
        let (depth, index) = match self.open.last() {
            Some(&(len, left)) => (self.open.len(), len - left),
            None => (0, 0),
        };
        if kind == Kind::Open {
            let n = aggregate_len(line[0], &line[1..]);
            self.open.push((n, n));
            return Some(Token {
                kind,
                depth,
                index,
                last: false,
            });
        }
        // A leaf ends its parent if it was the parent's last element, and
        // so on up.
        while let Some((_, left)) = self.open.last_mut() {
            *left -= 1;
            if *left > 0 {
                break;
            }
            self.open.pop();
        }
        Some(Token {
            kind,
            depth,
            index,
            last: self.open.is_empty(),
        })
    }
}

/// Elements of an aggregate with header type `t` and count `n` (a map's
/// entries are two elements each; a null aggregate, `*-1`, has none).
fn aggregate_len(t: u8, n: &[u8]) -> u64 {
    let n = std::str::from_utf8(n)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    if t == b'%' { n * 2 } else { n }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tokens of `text`, each as "<depth>.<index> <value>" (`-` for an
    /// aggregate header), marked `!` where it completes the reply.
    fn tokens(text: &[u8]) -> Vec<String> {
        let mut r = Reader::default();
        text.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter_map(|l| r.next(l))
            .map(|t| {
                let v = match t.kind {
                    Kind::Value(v) | Kind::Error(v) => String::from_utf8_lossy(v).into_owned(),
                    Kind::Open => "-".into(),
                };
                let end = if t.last { "!" } else { "" };
                format!("{}.{} {v}{end}", t.depth, t.index)
            })
            .collect()
    }

    #[test]
    fn command_is_an_array_of_bulk_strings() {
        let mut out = Vec::new();
        command(&mut out, &[b"PING"]);
        command(&mut out, &[b"XADD", b"r", b"*"]);
        assert_eq!(
            out,
            b"*1\r\n$4\r\nPING\r\n*3\r\n$4\r\nXADD\r\n$1\r\nr\r\n$1\r\n*\r\n"
        );
    }

    #[test]
    fn leaves_know_their_place_and_the_last_one_ends_the_reply() {
        let text = b"+PONG\r\n$3\r\n1-0\r\n*2\r\n:1\r\n*2\r\n$1\r\na\r\n*-1\r\n-ERR no\r\n";
        let expected = [
            "0.0 +PONG!",
            "0.0 1-0!",
            "0.0 -",
            "1.0 :1",
            "1.1 -",
            "2.0 a",
            "2.1 !",
            "0.0 -ERR no!",
        ];
        assert_eq!(tokens(text), expected);
    }

    #[test]
    fn map_entries_count_twice_and_empty_aggregates_are_values() {
        let text = b"%1\r\n+k\r\n*0\r\n:7\r\n";
        assert_eq!(tokens(text), ["0.0 -", "1.0 +k", "1.1 !", "0.0 :7!"]);
    }
}
