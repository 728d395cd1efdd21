//! Splitting a byte stream into protocol lines.
//!
//! The framer is a pure state machine (bytes in, frames out) so that it can be
//! property-tested and fuzzed without sockets. It owns the only per-session read
//! buffer, and keeps it empty (unallocated) whenever no partial line is pending:
//! an idle session costs no buffer memory.

use super::command::{self, Declared};

/// Telnet "Interpret As Command" escape byte.
const IAC: u8 = 0xFF;
/// Telnet commands in 251..=254 (WILL, WONT, DO, DONT) carry one option byte.
const WILL: u8 = 251;
const DONT: u8 = 254;
/// Subnegotiation begin/end: everything between `IAC SB` and `IAC SE` is dropped.
const SB: u8 = 250;
const SE: u8 = 240;

/// A buffer that grew past this while holding a long line is released once
/// the line is consumed, so one burst does not pin memory for the session's life.
const SHRINK_ABOVE: usize = 16 * 1024;

/// One unit of input handed to the command layer.
///
/// A line that is not handed on as text can still be an ATTACH, whose body
/// follows it raw; `attach` says so, since the body's extent is then unknown
/// and must not be read as lines.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete, non-empty UTF-8 line without its CR/LF.
    Line(&'a str),
    /// A line longer than the limit; the rest of it up to its LF is discarded.
    /// `attach`: its first `limit + 1` bytes begin with the ATTACH verb and a
    /// space or tab, as [`command::starts_attach`] reads them.
    TooLong { attach: bool },
    /// A complete line that is not valid UTF-8. `attach`: it is an ATTACH
    /// line whose last word declares a size, as [`command::declared_size`]
    /// reads it (each invalid sequence taken as U+FFFD).
    BadUtf8 { attach: bool },
}

/// Incremental line framer: feed it bytes, then take frames until `None`.
///
/// Bytes are kept as they came; telnet IAC sequences are stripped from each
/// line as it is taken, so that a binary payload (ATTACH) that follows a
/// line can be taken raw, 0xFF bytes and all.
#[derive(Debug)]
pub struct LineFramer {
    buf: Vec<u8>,
    /// Start of the first unconsumed byte in `buf`.
    start: usize,
    /// Bytes of `buf[start..]` already known to contain no LF.
    scanned: usize,
    max_line: usize,
    /// Dropping the rest of an over-long line until its LF.
    discarding: bool,
}

/// Removes telnet IAC sequences from `line` in place (the result is never
/// longer); returns the new length.
fn strip_telnet(line: &mut [u8]) -> usize {
    let (mut i, mut w) = (0, 0);
    while i < line.len() {
        match (line[i], line.get(i + 1).copied()) {
            (IAC, Some(IAC)) => {
                // An escaped 0xFF data byte; never valid UTF-8, so the line
                // will be answered with BAD_UTF8.
                line[w] = IAC;
                w += 1;
                i += 2;
            }
            (IAC, Some(WILL..=DONT)) => i += 3,
            (IAC, Some(SB)) => {
                i = line[i + 2..]
                    .windows(2)
                    .position(|pair| pair == [IAC, SE])
                    .map_or(line.len(), |p| i + 2 + p + 2);
            }
            (IAC, _) => i += 2,
            (b, _) => {
                line[w] = b;
                w += 1;
                i += 1;
            }
        }
    }
    w
}

fn utf8_frame(line: &[u8]) -> Frame<'_> {
    match std::str::from_utf8(line) {
        Ok(line) => Frame::Line(line),
        Err(_) => {
            let text = String::from_utf8_lossy(line);
            let attach = command::declared_size(&text) != Declared::Nothing;
            Frame::BadUtf8 { attach }
        }
    }
}

/// The frame for a line over `max_line` whose bytes start at `line`; only
/// its first `max_line + 1` bytes are looked at (the line has at least that
/// many, however it arrived), so the answer does not depend on how the
/// input was cut. The bytes are changed: the line is being dropped.
fn too_long(line: &mut [u8], max_line: usize) -> Frame<'static> {
    let head = &mut line[..max_line + 1];
    let len = if head.contains(&IAC) {
        strip_telnet(head)
    } else {
        head.len()
    };
    Frame::TooLong {
        attach: command::starts_attach(&head[..len]),
    }
}

impl LineFramer {
    pub fn new(max_line: usize) -> Self {
        LineFramer {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            max_line,
            discarding: false,
        }
    }

    /// Bytes held for lines not yet taken.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether `next_frame` has work to do: a complete line, an over-long
    /// one to report, or bytes of one to discard.
    pub fn has_line(&self) -> bool {
        let pending = self.buf.len() - self.start;
        (self.discarding && pending > 0)
            || pending > self.max_line + 1
            || self.buf[self.start + self.scanned..].contains(&b'\n')
    }

    /// Appends raw socket bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Takes up to `max` raw bytes (a payload that follows a line).
    pub fn take_raw(&mut self, max: usize) -> &[u8] {
        self.compact();
        let n = max.min(self.buf.len() - self.start);
        let from = self.start;
        self.start += n;
        self.scanned = 0;
        &self.buf[from..from + n]
    }

    /// Takes the next frame, or `None` when no complete line is buffered.
    pub fn next_frame(&mut self) -> Option<Frame<'_>> {
        let (line_start, end) = loop {
            let from = self.start + self.scanned;
            let Some(pos) = self.buf[from..].iter().position(|&b| b == b'\n') else {
                return self.no_newline();
            };
            let line_start = self.start;
            let lf = from + pos;
            self.start = lf + 1;
            self.scanned = 0;
            if self.discarding {
                self.discarding = false;
                self.compact();
                continue;
            }
            let mut end = lf;
            if end > line_start && self.buf[end - 1] == b'\r' {
                end -= 1;
            }
            if end - line_start > self.max_line {
                return Some(too_long(&mut self.buf[line_start..end], self.max_line));
            }
            // Blank lines (spaces and tabs only) are ignored, not answered.
            if self.buf[line_start..end]
                .iter()
                .all(|&b| b == b' ' || b == b'\t')
            {
                self.compact();
                continue;
            }
            break (line_start, end);
        };
        if !self.buf[line_start..end].contains(&IAC) {
            return Some(utf8_frame(&self.buf[line_start..end]));
        }
        let len = strip_telnet(&mut self.buf[line_start..end]);
        let line = line_start..line_start + len;
        if self.buf[line.clone()]
            .iter()
            .all(|&b| b == b' ' || b == b'\t')
        {
            // Only telnet negotiation: nothing to answer.
            return self.next_frame();
        }
        Some(utf8_frame(&self.buf[line]))
    }

    /// Handles the buffered tail that has no LF yet.
    fn no_newline(&mut self) -> Option<Frame<'_>> {
        let tail = self.buf.len() - self.start;
        if self.discarding {
            self.buf.truncate(self.start);
            self.scanned = 0;
            self.compact();
            return None;
        }
        // A CR may still come before the LF, hence the +1.
        if tail > self.max_line + 1 {
            let frame = too_long(&mut self.buf[self.start..], self.max_line);
            self.discarding = true;
            self.buf.truncate(self.start);
            self.scanned = 0;
            self.compact();
            return Some(frame);
        }
        self.scanned = tail;
        self.compact();
        None
    }

    /// Drops consumed bytes; releases the allocation when nothing is pending.
    fn compact(&mut self) {
        if self.start == self.buf.len() {
            if self.buf.capacity() > SHRINK_ABOVE {
                self.buf = Vec::new();
            } else {
                self.buf.clear();
            }
            self.start = 0;
            self.scanned = 0;
        } else if self.start > SHRINK_ABOVE / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(framer: &mut LineFramer) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(f) = framer.next_frame() {
            out.push(match f {
                Frame::Line(l) => l.to_string(),
                Frame::TooLong { attach: false } => "<too long>".into(),
                Frame::TooLong { attach: true } => "<too long attach>".into(),
                Frame::BadUtf8 { attach: false } => "<bad utf8>".into(),
                Frame::BadUtf8 { attach: true } => "<bad utf8 attach>".into(),
            });
        }
        out
    }

    #[test]
    fn splits_lines_and_drops_cr_and_empty_lines() {
        let mut f = LineFramer::new(100);
        f.feed(b"PING a\r\n\r\n\nPING b\nPI");
        assert_eq!(frames(&mut f), ["PING a", "PING b"]);
        f.feed(b"NG c\r");
        assert!(frames(&mut f).is_empty());
        f.feed(b"\n");
        assert_eq!(frames(&mut f), ["PING c"]);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn over_long_line_is_reported_once_and_skipped() {
        let mut f = LineFramer::new(8);
        f.feed(b"0123456789abcdef");
        assert_eq!(frames(&mut f), ["<too long>"]);
        f.feed(b"still the same line\nok\n");
        assert_eq!(frames(&mut f), ["ok"]);
        f.feed(b"0123456789\nok2\n");
        assert_eq!(frames(&mut f), ["<too long>", "ok2"]);
    }

    #[test]
    fn an_attach_line_that_is_not_handed_on_is_flagged() {
        let mut f = LineFramer::new(10);
        f.feed(b"ATTACH #r a-very-long-name.txt text/plain 5\n");
        f.feed(b"\tattach\t#r x\n");
        f.feed(&[IAC, 251, 3]);
        f.feed(b"ATTACH #r long\n");
        f.feed(b"ATTACHED #r long long\n");
        f.feed(b"PING \xe9 5\nATTACH \xe9 5\nATTACH \xe9\n");
        assert_eq!(
            frames(&mut f),
            [
                "<too long attach>",
                "<too long attach>",
                "<too long attach>",
                "<too long>",
                "<bad utf8>",
                "<bad utf8 attach>",
                "<bad utf8>"
            ]
        );
        // Cut before its end, the line is judged by its first 11 bytes.
        f.feed(b"attach #r name-that-goes-on");
        assert_eq!(frames(&mut f), ["<too long attach>"]);
        f.feed(b" and on 5\nok\n");
        assert_eq!(frames(&mut f), ["ok"]);
    }

    #[test]
    fn line_of_exactly_max_with_crlf_is_accepted() {
        let mut f = LineFramer::new(4);
        f.feed(b"abcd\r");
        assert!(frames(&mut f).is_empty());
        f.feed(b"\n");
        assert_eq!(frames(&mut f), ["abcd"]);
    }

    #[test]
    fn invalid_utf8_is_reported() {
        let mut f = LineFramer::new(100);
        f.feed(b"SAY #a \xc3\x28\nPING\n");
        assert_eq!(frames(&mut f), ["<bad utf8>", "PING"]);
    }

    #[test]
    fn telnet_negotiation_is_stripped_across_chunks() {
        let mut f = LineFramer::new(100);
        f.feed(&[IAC, 253, 1, b'P', b'I', IAC]);
        f.feed(&[251, 3, b'N', b'G', IAC, SB, 24, 1, IAC]);
        f.feed(&[SE, b'\r', b'\n']);
        assert_eq!(frames(&mut f), ["PING"]);
    }

    #[test]
    fn raw_payload_between_lines_keeps_every_byte() {
        let mut f = LineFramer::new(100);
        f.feed(b"ATTACH x\n\xff\n\x00\r");
        assert_eq!(frames_until_raw(&mut f), ["ATTACH x"]);
        assert_eq!(f.take_raw(3), b"\xff\n\x00");
        f.feed(b"\xffPING\n");
        assert_eq!(f.take_raw(2), b"\r\xff");
        assert_eq!(frames(&mut f), ["PING"]);
    }

    fn frames_until_raw(f: &mut LineFramer) -> Vec<String> {
        match f.next_frame() {
            Some(Frame::Line(l)) => vec![l.to_string()],
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn escaped_ff_is_data() {
        let mut f = LineFramer::new(100);
        f.feed(&[b'a', IAC, IAC, b'\n']);
        assert_eq!(frames(&mut f), ["<bad utf8>"]);
    }
}
