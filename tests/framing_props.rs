//! Properties of the framer, the parser and the hub's answers.
//!
//! - Any byte stream, cut at any points, gives the frames a plain reference
//!   model gives: one per complete non-blank line (an over-long line gives one
//!   `TooLong`, however it arrives; blank lines give nothing), never a panic.
//!   A `TooLong` or `BadUtf8` says whether the line was an ATTACH, whose body
//!   the server must then not read as lines.
//! - Whatever one session sends, each line gets exactly one answer.

use bytes::Bytes;
use linechat::chat::{Durability, FixedEnv, Hub, HubConfig, Out, SessionId};
use linechat::fanout::{self, Wire};
use linechat::protocol::command::VERBS;
use linechat::protocol::{Command, Frame, LineFramer, ParseError, parse};
use linechat::store::{self, MemoryBackend, Snapshot};
use linechat::{auth, blob};
use proptest::prelude::*;
use proptest::sample::Index;

// ---------------------------------------------------------------------------
// The framer against a reference model.

/// A frame as the model sees it; the flags are the frames' `attach`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum F {
    Line(String),
    TooLong(bool),
    BadUtf8(bool),
}

const IAC: u8 = 0xFF;

/// Telnet as the framer treats it, line by line: `IAC IAC` is a 0xFF data
/// byte, `IAC WILL|WONT|DO|DONT x` and any other `IAC x` are dropped, and
/// `IAC SB` is dropped up to the next `IAC SE` or the end of the line (so a
/// stray `IAC SB` can never swallow the lines after it).
fn strip_telnet(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < line.len() {
        if line[i] != IAC {
            out.push(line[i]);
            i += 1;
            continue;
        }
        match line.get(i + 1) {
            Some(&IAC) => {
                out.push(IAC);
                i += 2;
            }
            Some(251..=254) => i += 3,
            Some(250) => {
                let mut j = i + 2;
                while j < line.len() && !(line[j] == IAC && line.get(j + 1) == Some(&240)) {
                    j += 1;
                }
                i = j + 2;
            }
            _ => i += 2,
        }
    }
    out
}

const SEP: [char; 2] = [' ', '\t'];

/// An over-long line is an ATTACH if its first `max + 1` bytes (all that a
/// line cut anywhere is sure to have buffered), telnet removed, are spaces
/// or tabs, the verb in any case, and a space or tab.
fn long_attach(line: &[u8], max: usize) -> bool {
    let head = strip_telnet(&line[..max + 1]);
    let head = String::from_utf8_lossy(&head);
    let rest = head.trim_start_matches(SEP);
    rest.get(..6)
        .is_some_and(|v| v.eq_ignore_ascii_case("ATTACH"))
        && rest[6..].starts_with(SEP)
}

/// A line that is not UTF-8 is an ATTACH if, invalid bytes aside, its first
/// word is the verb and its last word (not the verb) is meant as a size.
fn bad_utf8_attach(line: &[u8]) -> bool {
    let text = String::from_utf8_lossy(line);
    let words: Vec<&str> = text.split(SEP).filter(|w| !w.is_empty()).collect();
    words.len() >= 2
        && words[0].eq_ignore_ascii_case("ATTACH")
        && words[words.len() - 1].starts_with(|c: char| c.is_ascii_digit() || c == '+' || c == '-')
}

/// What the framer must produce for `stream` with limit `max`, once all of it
/// has been fed and the frames drained.
fn model(stream: &[u8], max: usize) -> Vec<F> {
    let mut lines: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    let tail = lines.pop().expect("split yields at least one part");
    let blank = |l: &[u8]| l.iter().all(|&b| b == b' ' || b == b'\t');
    let mut out = Vec::new();
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > max {
            out.push(F::TooLong(long_attach(line, max)));
            continue;
        }
        let line = strip_telnet(line);
        if blank(&line) {
            // Blank (or only telnet negotiation): no frame, no reply.
            continue;
        }
        out.push(match std::str::from_utf8(&line) {
            Ok(s) => F::Line(s.to_string()),
            Err(_) => F::BadUtf8(bad_utf8_attach(&line)),
        });
    }
    // An unfinished line is reported as soon as it cannot fit any more
    // (one byte of slack for a CR that may still come).
    if tail.len() > max + 1 {
        out.push(F::TooLong(long_attach(tail, max)));
    }
    out
}

fn drain(framer: &mut LineFramer, out: &mut Vec<F>) {
    while let Some(frame) = framer.next_frame() {
        out.push(match frame {
            Frame::Line(l) => F::Line(l.to_string()),
            Frame::TooLong { attach } => F::TooLong(attach),
            Frame::BadUtf8 { attach } => F::BadUtf8(attach),
        });
    }
}

/// Feeds `stream` cut at `cuts` (positions, any order, repeats allowed);
/// frames are drained after chunk `k` only if `drain_after[k]` (and always at
/// the end), as a reader that is sometimes busy would.
fn run(stream: &[u8], max: usize, cuts: &[Index], drain_after: &[bool]) -> Vec<F> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
    at.push(0);
    at.push(stream.len());
    at.sort_unstable();
    let mut framer = LineFramer::new(max);
    let mut frames = Vec::new();
    for (k, w) in at.windows(2).enumerate() {
        framer.feed(&stream[w[0]..w[1]]);
        if drain_after.get(k).copied().unwrap_or(true) {
            drain(&mut framer, &mut frames);
        }
    }
    drain(&mut framer, &mut frames);
    // Whatever is still held is the start of one line that may yet fit.
    assert!(
        framer.buffered() <= max + 1,
        "{} buffered",
        framer.buffered()
    );
    frames
}

/// Byte strings that exercise the framer's corners: line endings, blanks,
/// telnet sequences (whole and cut), invalid UTF-8, multi-byte characters,
/// ATTACH verbs and sizes.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::sample::select(vec![
            &b"PING"[..],
            b"PING x",
            b"ATTACH ",
            b"aTTach\t",
            b"ATTACHED ",
            b" 12",
            b" -1",
            b"SAY #a hi",
            b" ",
            b"\t",
            b"\r",
            b"\n",
            b"\r\n",
            b"\n\n",
            b"\0",
            &[IAC],
            &[IAC, IAC],
            &[IAC, 251],
            &[IAC, 253, 3],
            &[IAC, 250, 24, 1],
            &[IAC, 250, 31, IAC, IAC, 7, IAC, 240],
            &[IAC, 240],
            &[240],
            &[0xC3, 0x28],
            &[0xE2, 0x82],
            "é€😀".as_bytes(),
        ])
        .prop_map(|b| b.to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..6),
        1 => (1usize..80).prop_map(|n| vec![b'x'; n]),
    ]
}

fn stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(piece(), 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Crafted streams, cut anywhere, match the model.
    #[test]
    fn framer_matches_model(
        stream in stream(),
        max in 1usize..48,
        cuts in prop::collection::vec(any::<Index>(), 0..12),
        drain_after in prop::collection::vec(any::<bool>(), 0..13),
    ) {
        prop_assert_eq!(run(&stream, max, &cuts, &drain_after), model(&stream, max));
    }

    /// Arbitrary bytes: two different cuttings give the same frames, which are
    /// the model's, and each line frame parses to exactly one result.
    #[test]
    fn frames_do_not_depend_on_cuts(
        stream in prop::collection::vec(any::<u8>(), 0..400),
        max in 1usize..64,
        a in prop::collection::vec(any::<Index>(), 0..20),
        b in prop::collection::vec(any::<Index>(), 0..20),
    ) {
        let one = run(&stream, max, &a, &[]);
        let two = run(&stream, max, &b, &[]);
        prop_assert_eq!(&one, &two);
        prop_assert_eq!(&one, &model(&stream, max));
        for f in &one {
            if let F::Line(l) = f {
                prop_assert!(!l.is_empty() && !l.contains('\n'));
                let _ = parse(l);
            }
        }
    }

    /// Streams of tens of KiB, so the framer compacts and releases its buffer
    /// (at 16 KiB) in the middle of lines, and over-long lines span chunks.
    #[test]
    fn big_streams_match_model(
        lines in prop::collection::vec(
            (0usize..6000, prop::sample::select(vec![&b"\n"[..], b"\r\n", b"\r", b""])),
            1..24,
        ),
        max in prop::sample::select(vec![100usize, 4096, 5000]),
        cuts in prop::collection::vec(any::<Index>(), 0..16),
        drain_after in prop::collection::vec(any::<bool>(), 0..17),
    ) {
        let mut stream = Vec::new();
        for (i, (len, end)) in lines.iter().enumerate() {
            stream.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, *len));
            stream.extend_from_slice(end);
        }
        prop_assert_eq!(run(&stream, max, &cuts, &drain_after), model(&stream, max));
    }

    /// Every byte of a stream fed one at a time.
    #[test]
    fn byte_at_a_time(stream in stream(), max in 1usize..48) {
        let mut framer = LineFramer::new(max);
        let mut frames = Vec::new();
        for b in &stream {
            framer.feed(std::slice::from_ref(b));
            drain(&mut framer, &mut frames);
        }
        prop_assert_eq!(frames, model(&stream, max));
    }
}

// ---------------------------------------------------------------------------
// The parser on its own.

/// Lines made of known verbs (any case), sub-commands and awkward words.
fn command_line() -> impl Strategy<Value = String> {
    let mut verbs: Vec<String> = VERBS.iter().map(|v| v.to_string()).collect();
    verbs.extend(VERBS.iter().map(|v| v.to_lowercase()));
    verbs.extend(["FROB", "PIN", "SAYX", "", "#r", "@bob"].map(String::from));
    let word = prop_oneof![
        4 => prop::sample::select(vec![
            "alice", "Bob", "bob", "carol", "#r", "#R", "#g", "#", "@alice", "@bob", "@",
            "password1", "password2", "short", "ADD", "ACCEPT", "REJECT", "REMOVE", "LIST",
            "REQUESTS", "hello", "1", "3", "\0", "\r", "a\u{7}b", "é", "\u{1b}[31m",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "#bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        ])
        .prop_map(String::from),
        1 => "\\PC{0,6}",
        1 => ".{0,6}",
    ];
    let sep = prop::sample::select(vec![" ", " ", " ", "  ", "\t"]);
    (
        prop::sample::select(verbs),
        prop::collection::vec((sep, word), 0..5),
        prop::sample::select(vec!["", " ", "\t"]),
    )
        .prop_map(|(verb, args, end)| {
            let mut line = verb;
            for (sep, word) in args {
                line.push_str(sep);
                line.push_str(&word);
            }
            line.push_str(end);
            line
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Parsing never panics; arguments it returns are single words (free
    /// text and passwords: the rest of the line), and a
    /// known verb is never reported as unknown.
    #[test]
    fn parse_is_total_and_well_shaped(line in prop_oneof![command_line(), ".*"]) {
        match parse(&line) {
            Ok(cmd) => {
                let words: Vec<&str> = match cmd {
                    Command::Help(w) | Command::Ping(w) => w.into_iter().collect(),
                    // The password is the rest of the line, like SAY's text.
                    Command::Register { user, password } | Command::Login { user, password } => {
                        prop_assert!(!password.is_empty() && !password.starts_with(' '));
                        vec![user]
                    }
                    Command::Join(r) | Command::Create(r) | Command::Leave(r) | Command::Who(r) => {
                        vec![r]
                    }
                    Command::Add { room, user }
                    | Command::Kick { room, user }
                    | Command::Op { room, user }
                    | Command::Moderate { room, user, .. } => vec![room, user],
                    Command::Topic { room, text } => {
                        prop_assert!(text.is_none_or(|t| !t.is_empty() && !t.starts_with(' ')));
                        vec![room]
                    }
                    Command::Audit { room, .. } => vec![room],
                    Command::Pusher(_) => vec![],
                    Command::Away(text) => {
                        prop_assert!(text.is_none_or(|t| !t.is_empty() && !t.starts_with(' ')));
                        vec![]
                    }
                    Command::Say { text, .. } => {
                        prop_assert!(!text.is_empty() && !text.starts_with(' '));
                        vec![]
                    }
                    Command::Presence(u) | Command::Fetch(u) => vec![u],
                    Command::Edit { text, .. } | Command::Reply { text, .. } => {
                        prop_assert!(!text.is_empty() && !text.starts_with(' '));
                        vec![]
                    }
                    Command::Search { words, .. } => {
                        prop_assert!(!words.is_empty() && !words.starts_with(' '));
                        vec![]
                    }
                    Command::Attach { name, mime, .. } => vec![name, mime],
                    Command::React { reaction, .. } => vec![reaction],
                    Command::Quit
                    | Command::Rooms
                    | Command::Inbox
                    | Command::Stats
                    | Command::Friend(_)
                    | Command::History { .. }
                    | Command::Sync(_)
                    | Command::Read { .. }
                    | Command::Status { .. }
                    | Command::Typing(_)
                    | Command::Delete { .. }
                    | Command::Reactions { .. } => vec![],
                };
                for w in words {
                    prop_assert!(!w.is_empty() && !w.contains(' '), "{:?}", w);
                }
            }
            Err(ParseError::UnknownVerb) => {
                let verb = line.trim_matches([' ', '\t']).split(' ').next().unwrap_or("");
                prop_assert!(
                    !VERBS.iter().any(|v| v.eq_ignore_ascii_case(verb)),
                    "{:?} is a known verb",
                    verb
                );
            }
            Err(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------
// The hub: exactly one answer per line.

const ME: SessionId = SessionId(1);
const OTHER: SessionId = SessionId(2);

/// One unit of input, as the server hands it to the hub.
#[derive(Debug, Clone)]
enum Input {
    Line(String),
    TooLong,
    BadUtf8,
}

/// Answers hashing jobs, storage requests (on an in-memory store), blob
/// jobs, upload bodies (empty) and stream pulls at once (the "hash" of p is
/// "h:p"), until nothing more is asked; returns every output.
fn settle(hub: &mut Hub, db: &mut MemoryBackend, mut out: Out) -> Vec<(SessionId, Wire)> {
    let mut lines = Vec::new();
    loop {
        // The end of the server's loop turn.
        hub.flush_posts(&mut out);
        fanout::route(hub, &mut out.emits, &mut lines);
        let mut next = Out::default();
        for job in out.auth.drain(..) {
            let outcome = match job.work {
                auth::Work::Hash { password } => {
                    auth::Outcome::Hashed(Some(format!("h:{password}")))
                }
                auth::Work::Verify { password, phc } => {
                    auth::Outcome::Verified(phc == format!("h:{password}"))
                }
            };
            hub.authed(
                auth::Done {
                    outcome,
                    ctx: job.ctx,
                },
                &mut next,
            );
        }
        let batch: Vec<_> = out.store.drain(..).collect();
        let done = store::run_batch(db, batch);
        for job in out.blobs.drain(..) {
            let outcome = match job.work {
                blob::Work::Put(_) => blob::Outcome::Stored(Ok("ab".repeat(32))),
                blob::Work::Read { len, .. } => blob::Outcome::Read(Ok(vec![b'x'; len])),
            };
            hub.blob_done(
                blob::Done {
                    outcome,
                    ctx: job.ctx,
                },
                &mut next,
            );
        }
        for sid in [ME, OTHER] {
            if hub.wants_payload(sid) {
                hub.payload(sid, Vec::new(), &mut next);
            }
        }
        let waiting: Vec<SessionId> = hub.streams_waiting().collect();
        for sid in waiting {
            hub.stream_more(sid, &mut next);
        }
        if !done.is_empty() {
            hub.committed(
                store::Committed {
                    done,
                    messages: 0,
                    took: std::time::Duration::ZERO,
                },
                &mut next,
            );
        }
        if next.is_empty() {
            return lines;
        }
        out = next;
    }
}

/// Hands `input` to the hub; returns what is left to settle, the bytes it
/// produced at once, and whether it was QUIT or STATS.
fn send(hub: &mut Hub, sid: SessionId, input: &Input) -> (Out, Vec<(SessionId, Wire)>, bool, bool) {
    let mut out = Out::default();
    let (mut quit, mut stats) = (false, false);
    match input {
        Input::Line(l) => match parse(l) {
            Ok(cmd) => {
                quit = cmd == Command::Quit;
                stats = cmd == Command::Stats;
                hub.handle(sid, cmd, &mut out);
            }
            Err(e) => hub.bad_line(sid, e, &mut out),
        },
        Input::TooLong => hub.bad_line(sid, ParseError::LineTooLong, &mut out),
        Input::BadUtf8 => hub.bad_line(sid, ParseError::BadUtf8, &mut out),
    }
    let mut wire = Vec::new();
    fanout::route(hub, &mut out.emits, &mut wire);
    (out, wire, quit, stats)
}

/// A whole answer: LF-terminated lines, the last (and only the last) one
/// starting with OK or ERR.
fn check_answer(b: &Bytes) -> Result<(), TestCaseError> {
    let text = std::str::from_utf8(b).map_err(|e| TestCaseError::fail(format!("{e}")))?;
    prop_assert!(text.ends_with('\n'), "unterminated answer {:?}", text);
    let lines: Vec<&str> = text[..text.len() - 1].split('\n').collect();
    let (last, body) = lines.split_last().unwrap();
    prop_assert!(
        last.starts_with("OK ") || last.starts_with("ERR "),
        "final line {:?}",
        last
    );
    for l in body {
        prop_assert!(
            !l.starts_with("OK ") && !l.starts_with("ERR "),
            "early final line {:?} in {:?}",
            l,
            text
        );
    }
    Ok(())
}

fn hub_input() -> impl Strategy<Value = Input> {
    prop_oneof![
        20 => command_line().prop_map(Input::Line),
        2 => ".{1,12}".prop_map(Input::Line),
        1 => Just(Input::TooLong),
        1 => Just(Input::BadUtf8),
    ]
}

/// What a session gets in answer to its commands: events, deliveries and
/// the middle parts of streams left out.
fn answers_of(lines: &[(SessionId, Wire)], sid: SessionId) -> Vec<&Wire> {
    lines
        .iter()
        .filter(|(s, o)| {
            *s == sid
                && !matches!(
                    o,
                    Wire::Event(_) | Wire::Deliver { .. } | Wire::Partial { .. } | Wire::Body(_)
                )
        })
        .map(|(_, o)| o)
        .collect()
}

fn is_event(o: &Wire) -> bool {
    matches!(o, Wire::Event(_) | Wire::Deliver { .. })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_line_gets_exactly_one_answer(
        async_commits in any::<bool>(),
        logged_in in any::<bool>(),
        in_room in any::<bool>(),
        inputs in prop::collection::vec(hub_input(), 1..40),
    ) {
        let mut cfg = HubConfig::default();
        if async_commits {
            cfg.durability = Durability::Async;
        }
        // Two messages in memory: EDIT, DELETE, HISTORY and STATUS of older
        // ones take their storage paths too.
        cfg.recent = 2;
        let env = Box::new(FixedEnv::at(0));
        let mut hub = Hub::new(cfg, Snapshot::default(), "decoy".into(), env);
        let mut db = MemoryBackend::new(None);
        // A second user, so commands naming bob or #g have someone to act on.
        hub.connect(OTHER);
        for l in ["REGISTER bob password2", "CREATE #g", "JOIN #r"] {
            let (out, _, _, _) = send(&mut hub, OTHER, &Input::Line(l.into()));
            settle(&mut hub, &mut db, out);
        }
        hub.connect(ME);
        let mut script = Vec::new();
        if logged_in {
            script.push(Input::Line("REGISTER alice password1".into()));
            if in_room {
                script.push(Input::Line("JOIN #r".into()));
            }
        }
        script.extend(inputs);

        for input in &script {
            prop_assert!(hub.accepts_input(ME), "input held before {:?}", input);
            let (out, wire, quit, stats) = send(&mut hub, ME, input);
            prop_assert!(wire.iter().all(|(s, o)| *s == ME || is_event(o)),
                "{:?}: non-event output for another session", input);
            let direct = answers_of(&wire, ME);
            let logged = hub.user_of(ME).is_some();
            match direct.as_slice() {
                [Wire::Reply(b)] => {
                    prop_assert!(!quit, "{:?} did not close", input);
                    prop_assert!(!(stats && logged), "{:?} answered in the hub", input);
                    check_answer(b)?;
                }
                [Wire::Reply(b), Wire::Close] => {
                    prop_assert!(quit, "{:?} closed the session", input);
                    prop_assert_eq!(&b[..], b"OK QUIT bye\n");
                }
                [Wire::Stats] => prop_assert!(stats && logged, "{:?}", input),
                [Wire::Defer, ..] => {
                    // The answer comes once the hashing, commit or stream is
                    // done (perhaps at once): one Complete per Defer (LOGIN
                    // defers twice, as its implied SYNC follows OK LOGIN).
                    let later = settle(&mut hub, &mut db, out);
                    let mut answers = direct.clone();
                    answers.extend(answers_of(&later, ME));
                    let mut open = 0;
                    for o in &answers {
                        match o {
                            Wire::Defer => open += 1,
                            Wire::Complete(b, _) => {
                                prop_assert!(open > 0, "{:?}: unasked {:?}", input, answers);
                                open -= 1;
                                check_answer(b)?;
                            }
                            other => prop_assert!(false, "{:?}: then {:?}", input, other),
                        }
                    }
                    prop_assert_eq!(open, 0, "{:?}: {:?}", input, answers);
                    prop_assert!(hub.accepts_input(ME), "{:?} left the session held", input);
                    continue;
                }
                other => prop_assert!(false, "{:?} answered {:?}", input, other),
            }
            // Nothing deferred: settling asks nothing more of this session.
            let later = settle(&mut hub, &mut db, out);
            prop_assert_eq!(answers_of(&later, ME).len(), 0, "{:?}", input);
            if quit {
                // The server reads nothing more from a session after QUIT.
                break;
            }
        }
    }
}
