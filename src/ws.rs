//! The WebSocket listener's stream: an HTTP/1.1 request first, then
//! WebSocket frames carrying the line protocol's bytes.
//!
//! [`WsStream`] reads the request head itself (`httparse`, with a bounded
//! head size and header count) and refuses the shapes that smuggle requests
//! past proxies (two `Content-Length`, any `Transfer-Encoding`, a body on a
//! GET). An upgrade is answered with `101` (the accept key from
//! tungstenite); any other GET is handed to the server to answer
//! ([`WsStream::respond`]). After the upgrade, reads return the unmasked
//! payloads of data frames as one byte stream: a text message holds one or
//! more whole lines (an LF is added at its end if it has none), a binary
//! one raw bytes (an ATTACH body). Pings are answered with pongs, and a
//! close frame is echoed and ends the stream.
//! Writes cut what the outbox hands over into frames of at most
//! [`WsLimits::max_frame`] bytes: a text frame when the bytes are UTF-8
//! (cut back to a character boundary), a binary frame otherwise (attachment
//! bodies). What the stream holds for the socket is at most one frame past
//! what it already held; beyond that a write reports `WouldBlock`, so the
//! outbox's limits stay the session's bound.

use std::cell::RefCell;
use std::io::{self, Cursor, IoSlice, Read, Write};

use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use crate::stream::{Pending, READ_CHUNK, Stream, read_appending};

/// Bounds of one WebSocket connection (from the `--ws-*` flags).
#[derive(Debug, Clone, Copy)]
pub struct WsLimits {
    /// Bytes of the HTTP request head (request line and headers).
    pub max_request: usize,
    /// Headers in the request head.
    pub max_headers: usize,
    /// Payload bytes of one frame, either way.
    pub max_frame: usize,
}

/// What a complete, acceptable request asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// A WebSocket upgrade on `/`: `101` is queued and frames follow.
    Upgrade,
    /// A plain GET of this path, for the server to answer.
    Get(String),
}

/// Why a request was refused. Each one is answered with its status and the
/// connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("request head over the size limit")]
    HeadTooLarge,
    #[error("too many request headers")]
    TooManyHeaders,
    #[error("malformed request")]
    Malformed,
    #[error("two Content-Length headers")]
    TwoContentLengths,
    #[error("Transfer-Encoding is not accepted")]
    TransferEncoding,
    #[error("a GET with a body")]
    BodyOnGet,
    #[error("method not allowed")]
    NotGet,
    #[error("bad WebSocket upgrade")]
    BadUpgrade,
    #[error("connection closed before the request was complete")]
    Cut,
    /// On wss: the peer broke the TLS protocol. Nothing can be answered.
    #[error("TLS protocol error")]
    Tls,
}

impl HttpError {
    /// The status line this refusal is answered with.
    pub fn status(self) -> &'static str {
        match self {
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => {
                "431 Request Header Fields Too Large"
            }
            HttpError::NotGet => "405 Method Not Allowed",
            _ => "400 Bad Request",
        }
    }
}

/// Why the peer's frames were refused: answered with a close frame, and the
/// read fails with this as its inner error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame over the size limit")]
    TooLarge,
    #[error("unmasked frame from a client")]
    Unmasked,
    #[error("reserved bits or opcode")]
    Reserved,
}

impl FrameError {
    fn close_code(self) -> u16 {
        match self {
            FrameError::TooLarge => CLOSE_TOO_BIG,
            FrameError::Unmasked | FrameError::Reserved => CLOSE_PROTOCOL,
        }
    }
}

/// Close codes (RFC 6455 section 7.4.1).
pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_PROTOCOL: u16 = 1002;
pub const CLOSE_POLICY: u16 = 1008;
pub const CLOSE_TOO_BIG: u16 = 1009;

/// Whether a read failed because the peer broke the WebSocket protocol.
pub fn frame_error(e: &io::Error) -> Option<FrameError> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<FrameError>())
        .copied()
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    /// Reading the HTTP request head.
    Request,
    /// Upgraded: frames both ways.
    Open,
    /// An HTTP answer or a close frame was sent (or the peer's close came):
    /// nothing more is read or framed.
    Done,
}

/// A WebSocket connection over a plain or TLS stream.
#[derive(Debug)]
pub struct WsStream {
    inner: Stream,
    limits: WsLimits,
    phase: Phase,
    /// The request was an upgrade: this is a session, not an HTTP exchange.
    upgraded: bool,
    /// Bytes read and not parsed yet (the request head, then frames).
    input: Vec<u8>,
    /// Data frame payload not handed to the reader yet.
    payload: Pending,
    /// The data message being received is text (its continuations are too).
    in_text: bool,
    /// Wire bytes (response, frames) not taken by the socket yet.
    output: Pending,
}

thread_local! {
    /// Where the WebSocket streams' reads land (see [`read_appending`]).
    static WS_READ_SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

impl WsStream {
    pub fn new(inner: Stream, limits: WsLimits) -> WsStream {
        WsStream {
            inner,
            limits,
            phase: Phase::Request,
            upgraded: false,
            input: Vec::new(),
            payload: Pending::default(),
            in_text: false,
            output: Pending::default(),
        }
    }

    pub fn inner(&self) -> &Stream {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut Stream {
        &mut self.inner
    }

    /// Not upgraded (yet): reading a request or answering one over HTTP.
    /// Such a connection is no session of the line protocol.
    pub fn is_http_only(&self) -> bool {
        !self.upgraded
    }

    /// Still reading the request (or, under it, the TLS handshake).
    pub fn is_handshaking(&self) -> bool {
        self.phase == Phase::Request
    }

    /// Nothing more is read or framed, yet the last bytes (an HTTP answer,
    /// a close frame) still wait for the socket.
    pub fn is_finishing(&self) -> bool {
        self.phase == Phase::Done && self.holds_output()
    }

    /// Bytes wait for the socket, here or in the stream underneath.
    pub fn holds_output(&self) -> bool {
        !self.output.is_empty() || self.inner.holds_output()
    }

    /// Reads the request head. `Ok(None)`: not complete yet, wait for the
    /// next readiness. An upgrade switches the stream to frames with `101`
    /// queued.
    pub fn read_request(&mut self) -> Result<Option<Request>, HttpError> {
        loop {
            if let Some(request) = self.parse_request()? {
                return Ok(Some(request));
            }
            if self.input.len() > self.limits.max_request {
                return Err(HttpError::HeadTooLarge);
            }
            match self.fill() {
                Ok(0) => return Err(HttpError::Cut),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if crate::stream::is_protocol_error(&e) => return Err(HttpError::Tls),
                Err(_) => return Err(HttpError::Cut),
            }
        }
    }

    fn parse_request(&mut self) -> Result<Option<Request>, HttpError> {
        let mut headers = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
        let mut req = httparse::Request::new(&mut headers);
        let head_len = match req.parse(&self.input) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
            Err(_) => return Err(HttpError::Malformed),
        };
        if head_len > self.limits.max_request {
            return Err(HttpError::HeadTooLarge);
        }
        let header = |name: &'static str| header_values(req.headers, name);
        let lengths: Vec<&str> = header("content-length").collect();
        if lengths.len() > 1 {
            return Err(HttpError::TwoContentLengths);
        }
        if header("transfer-encoding").next().is_some() {
            return Err(HttpError::TransferEncoding);
        }
        if req.method != Some("GET") {
            return Err(HttpError::NotGet);
        }
        if lengths.first().is_some_and(|l| l.trim() != "0") {
            return Err(HttpError::BodyOnGet);
        }
        let path = req.path.unwrap_or("/");
        let path = path.split('?').next().unwrap_or(path).to_string();
        let wants_upgrade = header("upgrade").any(|v| v.eq_ignore_ascii_case("websocket"));
        if !wants_upgrade || path != "/" {
            self.consume_input(head_len);
            return Ok(Some(Request::Get(path)));
        }
        let connection_upgrade = header("connection").any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
        let version_13 = header("sec-websocket-version").any(|v| v.trim() == "13");
        let key = header("sec-websocket-key").next().map(str::trim);
        let (true, true, Some(key)) = (connection_upgrade, version_13, key) else {
            return Err(HttpError::BadUpgrade);
        };
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        self.output.buffer().extend_from_slice(response.as_bytes());
        // Frames the client sent right behind its request stay in `input`.
        self.consume_input(head_len);
        self.phase = Phase::Open;
        self.upgraded = true;
        Ok(Some(Request::Upgrade))
    }

    /// Queues a complete HTTP response (the connection closes after it).
    pub fn respond(&mut self, status: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut head = format!("HTTP/1.1 {status}\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ));
        let output = self.output.buffer();
        output.extend_from_slice(head.as_bytes());
        output.extend_from_slice(body);
        self.phase = Phase::Done;
    }

    /// Ends the stream: a close frame with `code` and `reason` if frames
    /// are open, then what the socket takes now (best effort).
    pub fn close(&mut self, code: u16, reason: &str) {
        if self.phase == Phase::Open {
            self.send_close(code, reason);
        }
        let _ = self.flush();
        self.inner.close();
    }

    fn send_close(&mut self, code: u16, reason: &str) {
        // A control frame's payload is at most 125 bytes: the code and 123
        // bytes of reason, cut at a character boundary.
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(&reason.as_bytes()[..end]);
        self.queue_frame(OpCode::Control(Control::Close), &body);
        self.phase = Phase::Done;
    }

    fn queue_frame(&mut self, opcode: OpCode, payload: &[u8]) {
        let header = FrameHeader {
            opcode,
            ..FrameHeader::default()
        };
        // Writing into a Vec cannot fail.
        let output = self.output.buffer();
        let _ = header.format(payload.len() as u64, output);
        output.extend_from_slice(payload);
    }

    /// Reads what the socket has into `input`, at most [`READ_CHUNK`]
    /// bytes past what is there. `input` only ever holds bytes not parsed
    /// yet: an idle session keeps no read buffer.
    fn fill(&mut self) -> io::Result<usize> {
        read_appending(&WS_READ_SCRATCH, &mut self.inner, &mut self.input)
    }

    /// Drops `n` parsed bytes from `input`; an emptied buffer is freed, as
    /// idle sessions are most sessions.
    fn consume_input(&mut self, n: usize) {
        self.input.drain(..n);
        if self.input.is_empty() {
            self.input = Vec::new();
        }
    }

    /// Parses one frame from `input`. `Ok(false)`: no complete frame yet.
    fn next_frame(&mut self) -> io::Result<bool> {
        let mut cursor = Cursor::new(&self.input[..]);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(false),
            Err(_) => return Err(self.refuse(FrameError::Reserved)),
        };
        let header_len = cursor.position() as usize;
        if len > self.limits.max_frame as u64 {
            return Err(self.refuse(FrameError::TooLarge));
        }
        let Some(mask) = header.mask else {
            return Err(self.refuse(FrameError::Unmasked));
        };
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(self.refuse(FrameError::Reserved));
        }
        let end = header_len + len as usize;
        if self.input.len() < end {
            return Ok(false);
        }
        let body: Vec<u8> = self.input[header_len..end]
            .iter()
            .enumerate()
            .map(|(k, b)| b ^ mask[k % 4])
            .collect();
        self.consume_input(end);
        match header.opcode {
            OpCode::Data(data @ (Data::Text | Data::Binary | Data::Continue)) => {
                if data != Data::Continue {
                    self.in_text = data == Data::Text;
                }
                self.payload.push(body);
                // A text message holds whole lines: its end ends the last
                // one, so a client may send a line per message without LF.
                let payload = self.payload.buffer();
                if header.is_final && self.in_text && payload.last() != Some(&b'\n') {
                    payload.push(b'\n');
                }
            }
            OpCode::Control(Control::Ping) => {
                self.queue_frame(OpCode::Control(Control::Pong), &body)
            }
            OpCode::Control(Control::Pong) => {}
            OpCode::Control(Control::Close) => {
                // Echo the code, as RFC 6455 asks; the stream then ends.
                let code = body
                    .get(..2)
                    .map_or(CLOSE_NORMAL, |c| u16::from_be_bytes([c[0], c[1]]));
                self.send_close(code, "");
            }
            OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => {
                return Err(self.refuse(FrameError::Reserved));
            }
        }
        Ok(true)
    }

    /// Queues the close frame for a protocol violation and returns the
    /// read error that reports it.
    fn refuse(&mut self, e: FrameError) -> io::Error {
        self.send_close(e.close_code(), &e.to_string());
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    /// The common case of a write, without copying: the entries are
    /// whole UTF-8 lines, so they go out as one text frame, its header and
    /// the entries themselves in one vectored write; only what the socket
    /// does not take is copied, to `output`, and goes out before anything
    /// else. `None`: the bytes are not all UTF-8 in whole entries (an
    /// attachment body, a cut character), for the copying path.
    fn write_text_frame_direct(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<Option<usize>> {
        /// Entries in one direct frame (header included); more go in the
        /// next.
        const MAX_SLICES: usize = 64;
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let (mut used, mut len) = (1, 0);
        for b in bufs.iter().take(MAX_SLICES - 1) {
            let part = &b[..b.len().min(self.limits.max_frame - len)];
            // Protocol lines are nearly always ASCII: the cheap check first.
            if !part.is_ascii() && std::str::from_utf8(part).is_err() {
                return Ok(None);
            }
            slices[used] = IoSlice::new(part);
            used += 1;
            len += part.len();
            if len == self.limits.max_frame {
                break;
            }
        }
        if len == 0 {
            return Ok(None);
        }
        let mut header = [0u8; 14];
        let mut cursor = Cursor::new(&mut header[..]);
        let frame = FrameHeader {
            opcode: OpCode::Data(Data::Text),
            ..FrameHeader::default()
        };
        // 14 bytes hold any frame header.
        let _ = frame.format(len as u64, &mut cursor);
        let header_len = cursor.position() as usize;
        slices[0] = IoSlice::new(&header[..header_len]);
        // On `WouldBlock` nothing was taken: the entries stay the outbox's.
        let written = self.inner.write_vectored(&slices[..used])?;
        // The rest of the frame waits in `output`.
        let mut skip = written;
        for slice in &slices[..used] {
            let from = skip.min(slice.len());
            self.output.buffer().extend_from_slice(&slice[from..]);
            skip -= from;
        }
        Ok(Some(len))
    }

    /// Pushes queued wire bytes into the stream underneath.
    fn push_output(&mut self) -> io::Result<()> {
        self.output.write_to(&mut self.inner)
    }
}

/// The values of the headers called `name` (any case); a value that is not
/// UTF-8 reads as empty.
fn header_values<'a, 'b>(
    headers: &'a [httparse::Header<'b>],
    name: &'a str,
) -> impl Iterator<Item = &'b str> + 'a {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| std::str::from_utf8(h.value).unwrap_or(""))
}

impl Read for WsStream {
    /// Payload bytes of data frames. `Ok(0)` once the peer's close frame
    /// came or the socket ended; `WouldBlock` before the upgrade.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.payload.is_empty() {
                return Ok(self.payload.read_into(buf));
            }
            match self.phase {
                Phase::Request => return Err(io::ErrorKind::WouldBlock.into()),
                Phase::Done => return Ok(0),
                Phase::Open => {}
            }
            if self.next_frame()? {
                continue;
            }
            if self.fill()? == 0 {
                return Ok(0);
            }
        }
    }
}

impl Write for WsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Frames a prefix of `bufs` (at most one frame) once what was queued
    /// before has gone to the socket; `WouldBlock` until then, and before
    /// the upgrade.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self.phase {
            // No frames yet; what the stream underneath holds (a TLS
            // handshake message) still goes out.
            Phase::Request => {
                self.flush()?;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            // Nothing may follow a close frame: what the session still
            // says is dropped, so that it can finish.
            Phase::Done => return Ok(bufs.iter().map(|b| b.len()).sum()),
            Phase::Open => {}
        }
        self.push_output()?;
        if let Some(taken) = self.write_text_frame_direct(bufs)? {
            return Ok(taken);
        }
        let mut chunk = Vec::new();
        for b in bufs {
            let room = self.limits.max_frame - chunk.len();
            chunk.extend_from_slice(&b[..b.len().min(room)]);
            if chunk.len() == self.limits.max_frame {
                break;
            }
        }
        if chunk.is_empty() {
            return Ok(0);
        }
        let opcode = match std::str::from_utf8(&chunk) {
            Ok(_) => Data::Text,
            // A character cut by the frame size: it starts the next frame.
            Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => {
                chunk.truncate(e.valid_up_to());
                Data::Text
            }
            Err(_) => Data::Binary,
        };
        self.queue_frame(OpCode::Data(opcode), &chunk);
        match self.push_output() {
            Ok(()) => Ok(chunk.len()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(chunk.len()),
            Err(e) => Err(e),
        }
    }

    /// Queued frames go to the socket, then whatever the stream underneath
    /// holds (TLS records); `WouldBlock` while some remain.
    fn flush(&mut self) -> io::Result<()> {
        self.push_output()?;
        self.inner.flush()
    }
}
