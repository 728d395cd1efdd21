//! Building outgoing lines.
//!
//! Every line is built once into a [`Bytes`]; fan-out clones the handle (a
//! reference count), never the bytes.

use std::fmt::{self, Write};

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, SecondsFormat, Utc};

/// Formats one protocol line and appends the LF.
pub fn line(args: fmt::Arguments<'_>) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    // Writing into a BytesMut cannot fail.
    let _ = buf.write_fmt(args);
    buf.extend_from_slice(b"\n");
    buf.freeze()
}

/// `line!(...)`: `format!`-style construction of one protocol line.
#[macro_export]
macro_rules! line {
    ($($arg:tt)*) => {
        $crate::protocol::encode::line(format_args!($($arg)*))
    };
}

/// Timestamps on the wire: RFC 3339, UTC, milliseconds.
pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Concatenates several lines into one buffer, for multi-line replies.
pub fn join(lines: &[Bytes]) -> Bytes {
    let mut buf = BytesMut::with_capacity(lines.iter().map(Bytes::len).sum());
    for l in lines {
        buf.extend_from_slice(l);
    }
    buf.freeze()
}
