//! A session's queue of outgoing bytes.
//!
//! Each entry is a [`Bytes`] handle that may be shared with hundreds of other
//! outboxes (one encoded event, many recipients). Flushing hands many entries
//! to the kernel in one vectored write.
//!
//! The oldest entry is held inline and the rest in a queue that is allocated
//! only while two or more entries wait and released when it empties. Most
//! flushes carry one entry (one event, or one group commit's batch), so a
//! delivery allocates nothing per recipient and an idle session holds no
//! outbox memory.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use crate::chat::{ConvId, Seq};
use bytes::{Buf, Bytes};

/// Entries handed to one `writev`. Linux takes up to 1024; 64 entries of
/// typical chat lines already fill a socket buffer.
const IOV_BATCH: usize = 64;

/// Marks an entry that carries message `seq` of conversation `conv`; it is
/// reported once the entry has been written whole.
pub type Tag = Option<(ConvId, Seq)>;

#[derive(Debug)]
struct Entry {
    bytes: Bytes,
    tag: Tag,
}

#[derive(Debug, Default)]
pub struct Outbox {
    /// The oldest entry; `None` only when the outbox is empty.
    head: Option<Entry>,
    /// Entries after `head`, in order.
    rest: VecDeque<Entry>,
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
        self.head.is_none()
    }

    /// Queues `b` unless that would pass `limit`; returns whether it was queued.
    pub fn push(&mut self, b: Bytes, tag: Tag, limit: usize) -> bool {
        if self.bytes + b.len() > limit {
            return false;
        }
        self.bytes += b.len();
        let entry = Entry { bytes: b, tag };
        if self.head.is_none() {
            self.head = Some(entry);
        } else {
            self.rest.push_back(entry);
        }
        true
    }

    /// Drops everything queued, releasing the memory.
    pub fn clear(&mut self) {
        self.head = None;
        self.rest = VecDeque::new();
        self.bytes = 0;
    }

    /// Writes as much as the transport takes; returns the bytes written too.
    /// Tags of entries written whole are appended to `written_tags`.
    pub fn flush<W: Write>(
        &mut self,
        w: &mut W,
        written_tags: &mut Vec<(ConvId, Seq)>,
    ) -> io::Result<(Flushed, usize)> {
        let mut written = 0;
        while let Some(head) = &self.head {
            // One entry is a plain write (`send`), which costs the kernel
            // less than a one-element `writev`.
            let result = if self.rest.is_empty() {
                w.write(&head.bytes)
            } else {
                let mut slices = [IoSlice::new(&[]); IOV_BATCH];
                slices[0] = IoSlice::new(&head.bytes);
                let n = 1 + self
                    .rest
                    .iter()
                    .zip(slices[1..].iter_mut())
                    .map(|(e, s)| *s = IoSlice::new(&e.bytes))
                    .count();
                w.write_vectored(&slices[..n])
            };
            match result {
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
        self.rest = VecDeque::new();
        // Then what the transport holds itself (TLS records); nothing for TCP.
        match w.flush() {
            Ok(()) => Ok((Flushed::All, written)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok((Flushed::Blocked, written)),
            Err(e) => Err(e),
        }
    }

    fn consume(&mut self, mut k: usize, written_tags: &mut Vec<(ConvId, Seq)>) {
        self.bytes -= k;
        while k > 0 {
            let Some(head) = &mut self.head else {
                return;
            };
            if head.bytes.len() <= k {
                k -= head.bytes.len();
                if let Some(tag) = head.tag {
                    written_tags.push(tag);
                }
                self.head = self.rest.pop_front();
            } else {
                head.bytes.advance(k);
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
        assert!(o.push(shared.clone(), Some((ConvId(7), Seq(1))), 100));
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
        assert_eq!(tags, [(ConvId(7), Seq(1))]);
        assert_eq!(w.got, b"MSG #a 1 x\nOK\n");
        assert_eq!(&shared[..], b"MSG #a 1 x\n", "shared buffer untouched");
    }

    /// A transport that takes every byte but holds them (TLS records not yet
    /// on the socket) keeps the outbox blocked, so write interest stays on,
    /// until its `flush` gets them out.
    #[test]
    fn bytes_the_transport_holds_count_as_blocked() {
        struct Holding {
            held: Vec<u8>,
            socket_ready: bool,
        }
        impl Write for Holding {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.held.extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                if self.socket_ready {
                    self.held.clear();
                    Ok(())
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                }
            }
        }
        let mut o = Outbox::default();
        let mut w = Holding {
            held: Vec::new(),
            socket_ready: false,
        };
        let mut tags = Vec::new();
        assert!(o.push(Bytes::from_static(b"one\n"), Some((ConvId(2), Seq(5))), 100));
        assert_eq!(o.flush(&mut w, &mut tags).unwrap(), (Flushed::Blocked, 4));
        assert!(o.is_empty());
        assert_eq!(tags, [(ConvId(2), Seq(5))], "handed whole to the transport");
        assert_eq!(w.held, b"one\n");
        w.socket_ready = true;
        assert_eq!(o.flush(&mut w, &mut tags).unwrap(), (Flushed::All, 0));
        assert!(w.held.is_empty());
    }

    /// One entry at a time, the common case, never allocates the queue; a
    /// backlog does, and gives the memory back once written.
    #[test]
    fn a_lone_entry_needs_no_queue_and_a_drained_queue_is_released() {
        let mut o = Outbox::default();
        let mut w = Trickle {
            got: Vec::new(),
            cap: 100,
            calls: 0,
        };
        let mut tags = Vec::new();
        assert!(o.push(Bytes::from_static(b"one\n"), Some((ConvId(1), Seq(1))), 100));
        assert_eq!(o.rest.capacity(), 0);
        assert_eq!(o.flush(&mut w, &mut tags).unwrap(), (Flushed::All, 4));
        assert!(o.is_empty());
        for line in [&b"two\n"[..], b"three\n", b"four\n"] {
            assert!(o.push(Bytes::from_static(line), None, 100));
        }
        assert!(o.rest.capacity() > 0);
        assert_eq!(o.flush(&mut w, &mut tags).unwrap(), (Flushed::All, 15));
        assert_eq!(o.rest.capacity(), 0);
        assert_eq!(o.len_bytes(), 0);
        assert_eq!(tags, [(ConvId(1), Seq(1))]);
        assert_eq!(w.got, b"one\ntwo\nthree\nfour\n");
    }
}
