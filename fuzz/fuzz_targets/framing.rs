//! Bytes through the line framer and the command parser.
//!
//! Input layout: byte 0 picks the split points; byte 1 the line limit and, for
//! a quarter of inputs, that the stream is repeated up to 17 kB (to pass the
//! framer's 16 KiB compaction threshold with short inputs); the rest is the
//! stream.
//!
//! Oracles: no panic; the frames (with what `parse` makes of each line) are
//! the same as when the whole stream is fed at once; at most one frame per LF
//! plus one; a drained framer holds at most one partial line that may still fit.

#![no_main]

use libfuzzer_sys::fuzz_target;
use linechat::protocol::{Frame, LineFramer, parse};

/// Every frame, rendered, with the parse result of each line.
fn drain(framer: &mut LineFramer, out: &mut Vec<String>) {
    while let Some(frame) = framer.next_frame() {
        out.push(match frame {
            Frame::Line(line) => {
                assert!(!line.is_empty() && !line.contains('\n'));
                format!("{line:?} => {:?}", parse(line))
            }
            Frame::TooLong { attach } => format!("<too long, attach: {attach}>"),
            Frame::BadUtf8 { attach } => format!("<bad utf8, attach: {attach}>"),
        });
    }
}

fuzz_target!(|data: &[u8]| {
    let [cut_seed, shape, rest @ ..] = data else {
        return;
    };
    let max_line = if shape & 0x80 != 0 {
        4096
    } else {
        1 + usize::from(shape & 0x3f) * 2
    };
    let stream: Vec<u8> = if shape & 0xc0 == 0x40 && !rest.is_empty() {
        rest.iter()
            .copied()
            .cycle()
            .take(rest.len().max(17_000))
            .collect()
    } else {
        rest.to_vec()
    };

    let mut whole = LineFramer::new(max_line);
    whole.feed(&stream);
    let mut expected = Vec::new();
    drain(&mut whole, &mut expected);
    let lfs = stream.iter().filter(|&&b| b == b'\n').count();
    assert!(expected.len() <= lfs + 1);

    // Chunk lengths from a tiny generator seeded by the first byte: up to
    // 2^(low nibble) bytes each; 0 is an empty read, which must be harmless.
    let limit = (1usize << (cut_seed & 0x0f)) + 1;
    let mut state = u32::from(*cut_seed) | 0x100;
    let mut framer = LineFramer::new(max_line);
    let mut got = Vec::new();
    let mut left = &stream[..];
    while !left.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = ((state >> 8) as usize % limit).min(left.len());
        let (chunk, tail) = left.split_at(n);
        framer.feed(chunk);
        // The high bit of the generator skips draining now and then, as a
        // reader that is busy elsewhere would.
        if state & 0x8000_0000 == 0 || cut_seed & 0x10 == 0 {
            drain(&mut framer, &mut got);
        }
        left = tail;
    }
    drain(&mut framer, &mut got);
    assert_eq!(got, expected);
    assert!(framer.buffered() <= max_line + 1);
});
