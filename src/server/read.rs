//! Reading and framing: a bounded read budget per session per turn, the
//! flood bucket, lines handed to the hub, and ATTACH bodies read raw.

use std::io::{self, Read};

use crate::chat::{Out, Reply, SessionId};
use crate::fanout;
use crate::protocol::{self, Frame, Framing, Lost, ParseError};
use crate::stream;
use crate::ws::{self, FrameError};

use super::Server;
use super::close::CloseReason;
use super::session::{Session, Upload};
use super::transport::Socket;

impl Server {
    /// Reads and handles input for connection `i`; then, if the read left
    /// the transport bytes of its own to send (a TLS handshake message),
    /// marks the session for a flush.
    pub(super) fn service(&mut self, i: usize) {
        if self
            .conns
            .get(i)
            .is_some_and(|c| matches!(&c.transport, Socket::Ws(ws) if ws.is_handshaking()))
        {
            self.serve_http(i);
        }
        self.read_input(i);
        if self
            .conns
            .get(i)
            .is_some_and(|c| c.transport.holds_output())
        {
            self.mark_dirty(i);
        }
    }

    /// Reads and handles input for connection `i` within its budget.
    fn read_input(&mut self, i: usize) {
        let mut budget = self.cfg.read_budget;
        loop {
            let Some(conn) = self.conns.get_mut(i) else {
                return;
            };
            let sid = conn.session.sid;
            if conn.session.closing {
                return;
            }
            self.handle_lines(i);
            let Some(conn) = self.conns.get_mut(i) else {
                return;
            };
            // Busy, throttled or closing: leave the rest in the kernel's
            // buffer, which pushes back on the client.
            let wanted = self.hub.accepts_input(sid) || conn.session.upload.is_some();
            if !wanted || conn.session.closing || conn.session.throttled_until.is_some() {
                return;
            }
            if conn.session.eof {
                if conn.session.finished() {
                    conn.session.close_as(CloseReason::ClientClosed);
                    self.dead.push(i);
                }
                return;
            }
            if budget == 0 {
                self.again.push(i);
                return;
            }
            let want = budget.min(self.scratch.len());
            match conn.transport.read(&mut self.scratch[..want]) {
                Ok(0) if conn.session.upload.is_some() => {
                    // The body of an ATTACH was cut short: nothing is published.
                    conn.session.close_as(CloseReason::UploadCut);
                    self.dead.push(i);
                    return;
                }
                Ok(0) => conn.session.eof = true,
                Ok(n) => {
                    budget -= n;
                    conn.session.framer.feed(&self.scratch[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if ws::frame_error(&e).is_some() => {
                    log::info!("session {sid}: {e}");
                    conn.session.close_as(match ws::frame_error(&e) {
                        Some(FrameError::TooLarge) => CloseReason::WsFrameTooLarge,
                        _ => CloseReason::WsError,
                    });
                    self.dead.push(i);
                    return;
                }
                Err(e) if stream::is_protocol_error(&e) => {
                    log::info!("session {sid}: {e}");
                    conn.session.close_as(CloseReason::TlsError);
                    self.dead.push(i);
                    return;
                }
                Err(e) => {
                    log::debug!("session {sid} read error: {e}");
                    conn.session.close_as(CloseReason::ReadError);
                    self.dead.push(i);
                    return;
                }
            }
        }
    }

    /// Hands every complete buffered line of connection `i` to the hub, while
    /// the hub accepts input from it.
    pub(super) fn handle_lines(&mut self, i: usize) {
        let now = self.now_ms();
        let (rate, burst) = (self.cfg.command_rate, self.cfg.command_burst);
        let max_body = self.cfg.max_attachment;
        let Server {
            conns,
            hub,
            out,
            wire,
            throttled,
            ..
        } = self;
        loop {
            let Some(session) = conns.get_mut(i).map(|c| &mut c.session) else {
                return;
            };
            let sid = session.sid;
            if session.closing {
                break;
            }
            if let Some(up) = &mut session.upload {
                let chunk = session
                    .framer
                    .take_raw(up.remaining.min(usize::MAX as u64) as usize);
                if chunk.is_empty() {
                    break;
                }
                up.remaining -= chunk.len() as u64;
                if let Some(data) = &mut up.data {
                    data.extend_from_slice(chunk);
                }
                if up.remaining == 0
                    && let Some(Upload {
                        data: Some(data), ..
                    }) = session.upload.take().map(|u| *u)
                {
                    hub.payload(sid, data, out);
                }
                continue;
            }
            if session.throttled_until.is_some() || !hub.accepts_input(sid) {
                break;
            }
            if !session.framer.has_line() {
                break;
            }
            if rate > 0
                && burst > 0
                && let Err(wait) = session.bucket.take(now, rate, burst)
            {
                session.throttled_until = Some(now.saturating_add(wait));
                throttled.push(i);
                break;
            }
            let Some(frame) = session.framer.next_frame() else {
                break;
            };
            match frame {
                Frame::Line(line) => {
                    let parsed = protocol::parse(line);
                    let framing = protocol::framing(line, &parsed, max_body);
                    if let Framing::Lost(lost) = framing {
                        lose_framing(session, sid, lost, out);
                        continue;
                    }
                    match parsed {
                        Ok(cmd) => {
                            if hub.publishes_first(&cmd) {
                                // Their audience is who is in the room now,
                                // before this command can change that.
                                hub.flush_posts(out);
                                fanout::route(hub, &mut out.emits, wire);
                            }
                            hub.handle(sid, cmd, out)
                        }
                        Err(e) => hub.bad_line(sid, e, out),
                    }
                    match framing {
                        // Stop reading right away: what follows is ignored.
                        Framing::Close => {
                            session.closing = true;
                            session.close_as(CloseReason::Quit);
                        }
                        // The body follows whatever the answer: read it, and
                        // keep it only if the hub wants it.
                        Framing::Body(size) => {
                            let data = hub
                                .wants_payload(sid)
                                .then(|| Vec::with_capacity(size.min(1 << 20) as usize));
                            if size == 0 {
                                if let Some(data) = data {
                                    hub.payload(sid, data, out);
                                }
                            } else {
                                session.upload = Some(Box::new(Upload {
                                    remaining: size,
                                    data,
                                }));
                            }
                        }
                        Framing::Line | Framing::Lost(_) => {}
                    }
                }
                Frame::TooLong { attach: false } => hub.bad_line(sid, ParseError::LineTooLong, out),
                Frame::BadUtf8 { attach: false } => hub.bad_line(sid, ParseError::BadUtf8, out),
                Frame::TooLong { attach: true } => {
                    lose_framing(session, sid, Lost::LongAttach, out)
                }
                Frame::BadUtf8 { attach: true } => {
                    lose_framing(session, sid, Lost::Utf8Attach, out)
                }
            }
        }
        self.apply_out();
    }

    /// Serves throttled sessions whose bucket has refilled.
    pub(super) fn wake_throttled(&mut self) {
        if self.throttled.is_empty() {
            return;
        }
        let now = self.now_ms();
        let mut still = Vec::new();
        for i in std::mem::take(&mut self.throttled) {
            let Some(conn) = self.conns.get_mut(i) else {
                continue;
            };
            match conn.session.throttled_until {
                Some(until) if until > now => still.push(i),
                _ => {
                    conn.session.throttled_until = None;
                    self.service(i);
                }
            }
        }
        self.throttled.extend(still);
    }
}

/// The input of `session` can no longer be split into lines: answer, stop
/// reading.
fn lose_framing(session: &mut Session, sid: SessionId, lost: Lost, out: &mut Out) {
    out.reply(sid, Reply::Lost(lost));
    session.closing = true;
    session.close_as(match lost {
        Lost::TooLarge(_) => CloseReason::TooLarge,
        Lost::BadSize | Lost::LongAttach | Lost::Utf8Attach => CloseReason::ProtocolError,
    });
}
