//! A session's queue of outgoing bytes.
//!
//! Each entry is a [`Bytes`] handle that may be shared with hundreds of other
//! outboxes (one encoded event, many recipients). Flushing hands many entries
//! to the kernel in one vectored write. The queue is released when it
//! empties, so an idle session holds no outbox memory.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::{Buf, Bytes};

/// Entries handed to one `writev`. Linux takes up to 1024; 64 entries of
/// typical chat lines already fill a socket buffer.
const IOV_BATCH: usize = 64;

/// Marks an entry that carries message `seq` of conversation `conv`; it is
/// reported once the entry has been written whole.
pub type Tag = Option<(u32, u64)>;

#[derive(Debug)]
struct Entry {
    bytes: Bytes,
    tag: Tag,
}

#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<Entry>,
    bytes: usize,
}

/// What a flush achieved.
#[derive(Debug, PartialEq, Eq)]
pub enum Flushed {
    /// Everything was written.
    All,
    /// The socket is full; wait for it to become writable.
    Blocked,
}

impl Outbox {
    pub fn len_bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Queues `b` unless that would pass `limit`; returns whether it was queued.
    pub fn push(&mut self, b: Bytes, tag: Tag, limit: usize) -> bool {
        if self.bytes + b.len() > limit {
            return false;
        }
        self.bytes += b.len();
        self.queue.push_back(Entry { bytes: b, tag });
        true
    }

    /// Drops everything queued, releasing the memory.
    pub fn clear(&mut self) {
        self.queue = VecDeque::new();
        self.bytes = 0;
    }

    /// Writes as much as the socket takes; returns the bytes written too.
    /// Tags of entries written whole are appended to `written_tags`.
    pub fn flush<W: Write>(
        &mut self,
        w: &mut W,
        written_tags: &mut Vec<(u32, u64)>,
    ) -> io::Result<(Flushed, usize)> {
        let mut written = 0;
        while !self.queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); IOV_BATCH];
            let n = self
                .queue
                .iter()
                .zip(slices.iter_mut())
                .map(|(e, s)| *s = IoSlice::new(&e.bytes))
                .count();
            match w.write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => {
                    written += k;
                    self.consume(k, written_tags);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok((Flushed::Blocked, written));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.queue = VecDeque::new();
        Ok((Flushed::All, written))
    }

    fn consume(&mut self, mut k: usize, written_tags: &mut Vec<(u32, u64)>) {
        self.bytes -= k;
        while k > 0 {
            let Some(front) = self.queue.front_mut() else {
                return;
            };
            if front.bytes.len() <= k {
                k -= front.bytes.len();
                if let Some(tag) = front.tag {
                    written_tags.push(tag);
                }
                self.queue.pop_front();
            } else {
                front.bytes.advance(k);
                k = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `cap` bytes per call, then blocks.
    struct Trickle {
        got: Vec<u8>,
        cap: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.calls == 2 {
                self.calls = 0;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls += 1;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.cap - n);
                self.got.extend_from_slice(&b[..take]);
                n += take;
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_resume_where_they_stopped() {
        let mut o = Outbox::default();
        let shared = Bytes::from_static(b"MSG #a 1 x\n");
        assert!(o.push(shared.clone(), Some((7, 1)), 100));
        assert!(o.push(Bytes::from_static(b"OK\n"), None, 100));
        assert!(!o.push(Bytes::from(vec![b'x'; 90]), None, 100), "limit");
        let mut w = Trickle {
            got: Vec::new(),
            cap: 5,
            calls: 0,
        };
        let mut tags = Vec::new();
        assert_eq!(o.flush(&mut w, &mut tags).unwrap(), (Flushed::Blocked, 10));
        assert_eq!(o.len_bytes(), 4);
        assert!(tags.is_empty(), "the tagged entry is not written whole yet");
        assert_eq!(o.flush(&mut w, &mut tags).unwrap(), (Flushed::All, 4));
        assert_eq!(tags, [(7, 1)]);
        assert_eq!(w.got, b"MSG #a 1 x\nOK\n");
        assert_eq!(&shared[..], b"MSG #a 1 x\n", "shared buffer untouched");
    }
}
