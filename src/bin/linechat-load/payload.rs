//! Message payloads: `<publisher>.<seq>.<send-ns>.` followed by printable
//! filler up to the requested size. No spaces, so every adapter can find the
//! payload as the last word of a delivered line.

const FILLER: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Smallest payload size that always fits the header (three u64 + dots).
pub const MIN_SIZE: usize = 64;

/// Appends a payload of exactly `size` bytes (`size >= MIN_SIZE`) to `out`.
pub fn write(out: &mut Vec<u8>, size: usize, publisher: u64, seq: u64, send_ns: u64) {
    let start = out.len();
    write_u64(out, publisher);
    out.push(b'.');
    write_u64(out, seq);
    out.push(b'.');
    write_u64(out, send_ns);
    out.push(b'.');
    let mut left = size.saturating_sub(out.len() - start);
    while left > 0 {
        let n = left.min(FILLER.len());
        out.extend_from_slice(&FILLER[..n]);
        left -= n;
    }
}

/// Parses the header written by [`write`]: (publisher, seq, send_ns).
pub fn parse(p: &[u8]) -> Option<(u64, u64, u64)> {
    let mut fields = [0u64; 3];
    let mut i = 0;
    for f in &mut fields {
        let start = i;
        while i < p.len() && p[i].is_ascii_digit() {
            *f = f.wrapping_mul(10).wrapping_add(u64::from(p[i] - b'0'));
            i += 1;
        }
        if i == start || i >= p.len() || p[i] != b'.' {
            return None;
        }
        i += 1;
    }
    Some((fields[0], fields[1], fields[2]))
}

/// Decimal formatting without going through `fmt` (this runs per message).
pub fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_exact_size() {
        let mut out = Vec::new();
        write(&mut out, 128, 3, 123_456, u64::MAX);
        assert_eq!(out.len(), 128);
        assert!(out.iter().all(|b| b.is_ascii_graphic()));
        assert_eq!(parse(&out), Some((3, 123_456, u64::MAX)));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse(b"hello"), None);
        assert_eq!(parse(b"1.2."), None);
    }
}
