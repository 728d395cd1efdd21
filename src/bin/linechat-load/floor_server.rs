//! `linechat-load floor-server`: the least work a single-threaded fan-out
//! server can do, as a baseline for the others. One mio loop; `SUB`,
//! `PING` and `PUB` (see `proto/floor.rs`); a published line is appended to
//! each subscriber's buffer and every buffer that got something is written
//! with one `write` per loop turn. No accounts, storage, acks or logging,
//! and nothing per message beyond one copy per recipient and that write.
//! What a real server measures above this is its own cost; what this
//! measures is the machine's cost of writing to that many sockets.

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

const LISTENER: Token = Token(usize::MAX);
/// A subscriber with this much unsent is dropped, as a slow consumer.
const MAX_OUT: usize = 4 << 20;
/// Longest line kept while waiting for its LF.
const MAX_LINE: usize = 64 << 10;

struct Conn {
    sock: TcpStream,
    input: Vec<u8>,
    out: Vec<u8>,
    dirty: bool,
    want_write: bool,
}

impl Conn {
    /// Queues connection `i` for this turn's flush, once.
    fn mark_dirty(&mut self, i: usize, dirty: &mut Vec<usize>) {
        if !self.dirty {
            self.dirty = true;
            dirty.push(i);
        }
    }
}

#[derive(Default)]
struct Floor {
    conns: Slab<Conn>,
    /// Subject -> subscribed connections.
    subjects: HashMap<Vec<u8>, Vec<usize>>,
    dirty: Vec<usize>,
    dead: Vec<usize>,
}

pub fn run(listen: SocketAddr) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(listen)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    eprintln!("floor-server listening on {}", listener.local_addr()?);
    let mut events = Events::with_capacity(1024);
    let mut f = Floor::default();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in events.iter() {
            match ev.token() {
                LISTENER => f.accept(&listener, &poll)?,
                Token(i) => {
                    if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                        f.read(i, &mut buf);
                    }
                    if ev.is_writable() {
                        f.mark_dirty(i);
                    }
                }
            }
        }
        f.flush(&poll);
        f.close_dead(&poll);
    }
}

impl Floor {
    fn accept(&mut self, listener: &TcpListener, poll: &Poll) -> io::Result<()> {
        loop {
            match listener.accept() {
                Ok((mut sock, _)) => {
                    sock.set_nodelay(true)?;
                    let entry = self.conns.vacant_entry();
                    poll.registry()
                        .register(&mut sock, Token(entry.key()), Interest::READABLE)?;
                    entry.insert(Conn {
                        sock,
                        input: Vec::new(),
                        out: Vec::new(),
                        dirty: false,
                        want_write: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                // Out of descriptors and the like: the next readiness retries.
                Err(_) => return Ok(()),
            }
        }
    }

    fn read(&mut self, i: usize, buf: &mut [u8]) {
        loop {
            let Some(c) = self.conns.get_mut(i) else {
                return;
            };
            match c.sock.read(buf) {
                Ok(0) => return self.dead.push(i),
                Ok(n) => {
                    let mut input = std::mem::take(&mut c.input);
                    input.extend_from_slice(&buf[..n]);
                    let mut start = 0;
                    while let Some(k) = input[start..].iter().position(|&b| b == b'\n') {
                        self.line(i, &input[start..start + k]);
                        start += k + 1;
                    }
                    input.drain(..start);
                    if input.len() > MAX_LINE {
                        return self.dead.push(i);
                    }
                    if let Some(c) = self.conns.get_mut(i) {
                        c.input = input;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.dead.push(i),
            }
        }
    }

    fn line(&mut self, i: usize, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(subject) = line.strip_prefix(b"SUB ") {
            self.subjects.entry(subject.to_vec()).or_default().push(i);
        } else if line == b"PING" {
            self.send(i, b"PONG\n");
        } else if let Some(rest) = line.strip_prefix(b"PUB ") {
            let subject = rest.split(|&b| b == b' ').next().unwrap_or(rest);
            // Disjoint fields, so the subscriber list is walked in place
            // rather than copied per publish.
            let Floor {
                conns,
                subjects,
                dirty,
                ..
            } = self;
            for &j in subjects.get(subject).into_iter().flatten() {
                if j == i {
                    continue;
                }
                if let Some(c) = conns.get_mut(j) {
                    c.out.extend_from_slice(b"MSG ");
                    c.out.extend_from_slice(rest);
                    c.out.push(b'\n');
                    c.mark_dirty(j, dirty);
                }
            }
        }
    }

    fn send(&mut self, i: usize, bytes: &[u8]) {
        if let Some(c) = self.conns.get_mut(i) {
            c.out.extend_from_slice(bytes);
            c.mark_dirty(i, &mut self.dirty);
        }
    }

    fn mark_dirty(&mut self, i: usize) {
        if let Some(c) = self.conns.get_mut(i) {
            c.mark_dirty(i, &mut self.dirty);
        }
    }

    /// One write per connection that got something this turn.
    fn flush(&mut self, poll: &Poll) {
        for i in std::mem::take(&mut self.dirty) {
            let Some(c) = self.conns.get_mut(i) else {
                continue;
            };
            c.dirty = false;
            let mut done = 0;
            while done < c.out.len() {
                match c.sock.write(&c.out[done..]) {
                    Ok(n) => done += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        self.dead.push(i);
                        break;
                    }
                }
            }
            c.out.drain(..done);
            if c.out.len() > MAX_OUT {
                self.dead.push(i);
                continue;
            }
            let blocked = !c.out.is_empty();
            if blocked != c.want_write {
                c.want_write = blocked;
                let interest = if blocked {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                let _ = poll.registry().reregister(&mut c.sock, Token(i), interest);
            }
        }
    }

    fn close_dead(&mut self, poll: &Poll) {
        for i in std::mem::take(&mut self.dead) {
            if let Some(mut c) = self.conns.try_remove(i) {
                let _ = poll.registry().deregister(&mut c.sock);
                for subs in self.subjects.values_mut() {
                    subs.retain(|&j| j != i);
                }
            }
        }
    }
}
