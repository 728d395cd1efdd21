//! What a client's bytes travel in: plain TCP, TLS (from the first byte, or
//! after a plaintext greeting line as NATS does), and WebSocket over either.
//!
//! [`WsClient`] is a small hand-written client side of RFC 6455, kept cheap
//! because the load tool must not be what limits a run: the upgrade request
//! goes out first and frames only once the server's `101` has come; every
//! write becomes one masked text frame holding whole lines (the server ends
//! a line at the end of a text message); server frames are decoded in place
//! in the engine's read buffer, so a payload is neither copied into a
//! buffer of its own nor allocated.

use linechat::stream::{Pending, Stream, TlsStream};
use mio::net::TcpStream;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{self, Cursor, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// How every connection of a run is made.
#[derive(Clone, Default)]
pub struct Wire {
    /// TLS with this configuration.
    pub tls: Option<Arc<ClientConfig>>,
    /// WebSocket frames (over TLS when `tls` is set).
    pub ws: bool,
}

impl Wire {
    /// The name reports give it: tcp, tls, ws or wss.
    pub fn name(&self) -> &'static str {
        match (self.ws, self.tls.is_some()) {
            (false, false) => "tcp",
            (false, true) => "tls",
            (true, false) => "ws",
            (true, true) => "wss",
        }
    }

    /// The stream for a connection being made to `addr`. With
    /// `tls_after_greeting` a TLS wire starts in plaintext; the engine calls
    /// [`ClientStream::start_tls`] once the greeting line has come.
    pub fn open(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
        tls_after_greeting: bool,
    ) -> io::Result<ClientStream> {
        let stream = match &self.tls {
            Some(config) if !tls_after_greeting => {
                Stream::Tls(Box::new(tls_stream(tcp, addr, config)?))
            }
            _ => Stream::Tcp(tcp),
        };
        Ok(if self.ws {
            ClientStream::Ws(Box::new(WsClient::new(stream, addr)))
        } else {
            ClientStream::Direct(stream)
        })
    }
}

fn tls_stream(
    tcp: TcpStream,
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
) -> io::Result<TlsStream> {
    let name = ServerName::IpAddress(addr.ip().into());
    TlsStream::client(tcp, Arc::clone(config), name).map_err(io::Error::other)
}

/// One client connection: the server's own [`Stream`] (TCP or TLS), or
/// WebSocket frames over it.
pub enum ClientStream {
    Direct(Stream),
    Ws(Box<WsClient>),
}

impl ClientStream {
    fn stream(&self) -> &Stream {
        match self {
            ClientStream::Direct(s) => s,
            ClientStream::Ws(ws) => &ws.inner,
        }
    }

    fn stream_mut(&mut self) -> &mut Stream {
        match self {
            ClientStream::Direct(s) => s,
            ClientStream::Ws(ws) => &mut ws.inner,
        }
    }

    pub fn socket(&self) -> &TcpStream {
        self.stream().socket()
    }

    /// Bytes of the stream's own wait for the socket (TLS records, a
    /// WebSocket frame or upgrade request).
    pub fn holds_output(&self) -> bool {
        match self {
            ClientStream::Direct(s) => s.holds_output(),
            ClientStream::Ws(ws) => ws.holds_output(),
        }
    }

    /// Whether the read that returned `n` of `asked` bytes drained the
    /// socket, so that the next one would block. Only a plain TCP socket's
    /// short read proves it: TLS and WebSocket hand out fewer bytes than
    /// they took.
    pub fn read_drained(&self, n: usize, asked: usize) -> bool {
        match self {
            ClientStream::Direct(s) => s.short_read_drains() && n < asked,
            ClientStream::Ws(ws) => ws.last_read_drained,
        }
    }

    /// Switches a plaintext connection to TLS (NATS: after its INFO line).
    /// Nothing is in flight then: the server waits for the ClientHello.
    pub fn start_tls(self, addr: SocketAddr, config: &Arc<ClientConfig>) -> io::Result<Self> {
        match self {
            ClientStream::Direct(Stream::Tcp(tcp)) => Ok(ClientStream::Direct(Stream::Tls(
                Box::new(tls_stream(tcp, addr, config)?),
            ))),
            _ => Err(io::Error::other(
                "TLS after a greeting needs a plain TCP stream",
            )),
        }
    }
}

impl Read for ClientStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ClientStream::Direct(s) => s.read(buf),
            ClientStream::Ws(ws) => ws.read(buf),
        }
    }
}

impl Write for ClientStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ClientStream::Direct(s) => s.write(buf),
            ClientStream::Ws(ws) => ws.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            ClientStream::Direct(s) => s.flush(),
            ClientStream::Ws(ws) => ws.flush(),
        }
    }
}

impl mio::event::Source for ClientStream {
    fn register(&mut self, r: &mio::Registry, t: mio::Token, i: mio::Interest) -> io::Result<()> {
        self.stream_mut().register(r, t, i)
    }

    fn reregister(&mut self, r: &mio::Registry, t: mio::Token, i: mio::Interest) -> io::Result<()> {
        self.stream_mut().reregister(r, t, i)
    }

    fn deregister(&mut self, r: &mio::Registry) -> io::Result<()> {
        self.stream_mut().deregister(r)
    }
}

/// Payload bytes of one frame the client sends: a publisher's batch of
/// lines in a few frames, under the server's `--ws-max-frame` default
/// (64 KiB); a server started with less refuses them.
const MAX_FRAME: usize = 16 * 1024;
/// Bytes of the server's upgrade answer (status line and headers).
const MAX_RESPONSE_HEAD: usize = 8192;
/// Largest control frame payload (RFC 6455 section 5.5).
const MAX_CONTROL: u64 = 125;

/// A WebSocket client connection (see the module documentation).
pub struct WsClient {
    inner: Stream,
    /// The upgrade answer has not come yet.
    upgrading: bool,
    /// The Sec-WebSocket-Accept value the answer must carry.
    accept: String,
    /// Bytes read and not decoded yet: the answer head while upgrading,
    /// then what followed it, or a frame header cut by the end of a read.
    raw: Vec<u8>,
    /// Payload bytes of the current frame still to come.
    payload_left: u64,
    /// The current frame is this control frame (its payload is collected
    /// in `control`); `None`: a data frame, whose payload is handed out.
    control_op: Option<Control>,
    control: Vec<u8>,
    /// The last socket read was shorter than asked: the socket is drained.
    last_read_drained: bool,
    /// The server's close frame came: reads end.
    closed: bool,
    /// The last frame sent ended inside a line: the next one continues it.
    continuing: bool,
    /// Wire bytes (the request, frames) not taken by the socket yet.
    out: Pending,
    /// xorshift state for the masking keys.
    rng: u64,
}

impl WsClient {
    pub fn new(inner: Stream, addr: SocketAddr) -> WsClient {
        let key = tungstenite::handshake::client::generate_key();
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        let mut out = Pending::default();
        out.push(request.into_bytes());
        WsClient {
            inner,
            upgrading: true,
            accept,
            raw: Vec::new(),
            payload_left: 0,
            control_op: None,
            control: Vec::new(),
            last_read_drained: false,
            closed: false,
            continuing: false,
            out,
            rng: RandomState::new().hash_one(&key) | 1,
        }
    }

    fn holds_output(&self) -> bool {
        !self.out.is_empty() || self.inner.holds_output()
    }

    /// Reads the upgrade answer; `WouldBlock` until it is whole.
    fn read_answer(&mut self) -> io::Result<()> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut answer = httparse::Response::new(&mut headers);
            let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
            match answer.parse(&self.raw) {
                Ok(httparse::Status::Complete(head)) => {
                    let accept = answer
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
                        .map(|h| h.value);
                    if answer.code != Some(101) || accept != Some(self.accept.as_bytes()) {
                        let status = String::from_utf8_lossy(
                            self.raw.split(|&b| b == b'\r').next().unwrap_or(b""),
                        );
                        return Err(invalid(format!("WebSocket upgrade refused: {status}")));
                    }
                    self.raw.drain(..head);
                    self.upgrading = false;
                    return Ok(());
                }
                Ok(httparse::Status::Partial) if self.raw.len() < MAX_RESPONSE_HEAD => {}
                Ok(httparse::Status::Partial) => {
                    return Err(invalid("upgrade answer too long".into()));
                }
                Err(e) => return Err(invalid(format!("upgrade answer: {e}"))),
            }
            let mut chunk = [0; 1024];
            match self.inner.read(&mut chunk)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => self.raw.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Decodes the frames in `data` in place: the data payloads are moved
    /// to its front, control frames are acted on, and a cut frame header is
    /// kept in `raw`. Returns the payload bytes now at the front.
    fn decode(&mut self, data: &mut [u8]) -> io::Result<usize> {
        let (mut at, mut payload_end) = (0, 0);
        while at < data.len() && !self.closed {
            if self.payload_left > 0 {
                let take = self.payload_left.min((data.len() - at) as u64) as usize;
                if self.control_op.is_none() {
                    data.copy_within(at..at + take, payload_end);
                    payload_end += take;
                } else {
                    self.control.extend_from_slice(&data[at..at + take]);
                }
                at += take;
                self.payload_left -= take as u64;
                if self.payload_left == 0 {
                    self.on_control();
                }
                continue;
            }
            let mut cursor = Cursor::new(&data[at..]);
            let parsed = FrameHeader::parse(&mut cursor)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let Some((header, len)) = parsed else {
                self.raw.extend_from_slice(&data[at..]);
                break;
            };
            at += cursor.position() as usize;
            if header.mask.is_some() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "masked frame from the server",
                ));
            }
            self.control_op = match header.opcode {
                OpCode::Data(_) => None,
                OpCode::Control(_) if len > MAX_CONTROL => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "control frame too long",
                    ));
                }
                OpCode::Control(op) => Some(op),
            };
            self.control.clear();
            self.payload_left = len;
            if len == 0 {
                self.on_control();
            }
        }
        Ok(payload_end)
    }

    /// Acts on the control frame just completed, if the frame was one.
    fn on_control(&mut self) {
        match self.control_op.take() {
            Some(Control::Ping) => {
                let payload = std::mem::take(&mut self.control);
                self.queue_frame(OpCode::Control(Control::Pong), true, &payload);
                self.control = payload;
            }
            Some(Control::Close) => {
                let code = self.control.get(..2).map_or([0x03, 0xe8], |c| [c[0], c[1]]);
                self.queue_frame(OpCode::Control(Control::Close), true, &code);
                self.closed = true;
            }
            Some(_) | None => {}
        }
    }

    /// Appends a masked frame to `out`.
    fn queue_frame(&mut self, opcode: OpCode, is_final: bool, payload: &[u8]) {
        // xorshift64: masking keys need not be secret here, only varied.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let key = (self.rng as u32).to_ne_bytes();
        let header = frame_header(opcode, is_final, Some(key));
        // Formatting into a Vec cannot fail.
        let out = self.out.buffer();
        let _ = header.format(payload.len() as u64, out);
        let start = out.len();
        out.extend_from_slice(payload);
        apply_mask(&mut out[start..], key);
    }

    /// Writes queued wire bytes to the stream underneath.
    fn push(&mut self) -> io::Result<()> {
        self.out.write_to(&mut self.inner)
    }
}

/// A frame header without extensions.
fn frame_header(opcode: OpCode, is_final: bool, mask: Option<[u8; 4]>) -> FrameHeader {
    FrameHeader {
        is_final,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode,
        mask,
    }
}

/// XORs `bytes` with the repeated 4-byte `key`, eight bytes at a time.
fn apply_mask(bytes: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut words = bytes.chunks_exact_mut(8);
    for word in &mut words {
        let masked = u64::from_ne_bytes((&*word).try_into().expect("8 bytes")) ^ wide;
        word.copy_from_slice(&masked.to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so the key starts over.
    for (k, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= key[k % 4];
    }
}

impl Read for WsClient {
    /// The data frames' payloads, as one byte stream. `Ok(0)` once the
    /// server's close frame came or the socket ended.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.upgrading {
            self.read_answer()?;
        }
        loop {
            if self.closed {
                return Ok(0);
            }
            // Undecoded bytes go in front of the new ones.
            let held = self.raw.len().min(buf.len());
            buf[..held].copy_from_slice(&self.raw[..held]);
            let asked = buf.len() - held;
            let got = match self.inner.read(&mut buf[held..]) {
                Ok(0) if asked > 0 => return Ok(0),
                Ok(n) => n,
                // What was held may still be whole frames (behind the 101).
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && held > 0 => 0,
                Err(e) => return Err(e),
            };
            self.last_read_drained = got < asked && matches!(self.inner, Stream::Tcp(_));
            self.raw.drain(..held);
            let payload = self.decode(&mut buf[..held + got])?;
            if payload > 0 {
                return Ok(payload);
            }
            if got == 0 || self.last_read_drained {
                return if self.closed {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            }
        }
    }
}

impl Write for WsClient {
    /// Frames a prefix of `buf`: up to its last line end within
    /// [`MAX_FRAME`], or, if a line is longer, that much of it as a
    /// fragment. `WouldBlock` until the upgrade is done and what was framed
    /// before has gone to the socket.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.push()?;
        if self.upgrading || self.closed {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let window = &buf[..buf.len().min(MAX_FRAME)];
        let (take, is_final) = match window.iter().rposition(|&b| b == b'\n') {
            Some(end) => (end + 1, true),
            None => (window.len(), false),
        };
        let opcode = if self.continuing {
            Data::Continue
        } else {
            Data::Text
        };
        self.queue_frame(OpCode::Data(opcode), is_final, &buf[..take]);
        self.continuing = !is_final;
        match self.push() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(take),
        }
    }

    /// Queued frames go to the socket, then whatever the stream underneath
    /// holds (TLS records); `WouldBlock` while some remain.
    fn flush(&mut self) -> io::Result<()> {
        self.push()?;
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client past the upgrade, over a real loopback socket, and the
    /// server's end of it.
    fn open_client() -> (WsClient, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let tcp = TcpStream::from_std(std::net::TcpStream::connect(addr).unwrap());
        let (server_end, _) = listener.accept().unwrap();
        server_end
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut ws = WsClient::new(Stream::Tcp(tcp), addr);
        ws.upgrading = false;
        ws.out = Pending::default();
        (ws, server_end)
    }

    fn server_frame(opcode: OpCode, is_final: bool, payload: &[u8]) -> Vec<u8> {
        let header = frame_header(opcode, is_final, None);
        let mut wire = Vec::new();
        header.format(payload.len() as u64, &mut wire).unwrap();
        wire.extend_from_slice(payload);
        wire
    }

    /// Frames cut anywhere by the reads (inside a header, inside a payload,
    /// around a ping) decode to the same payload bytes, and the ping is
    /// answered with a masked pong carrying its payload.
    #[test]
    fn frames_decode_in_place_wherever_the_reads_cut_them() {
        let long = vec![b'x'; 300];
        let mut wire = server_frame(OpCode::Data(Data::Text), false, b"HELLO linechat\nOK ");
        wire.extend(server_frame(OpCode::Control(Control::Ping), true, b"p1"));
        wire.extend(server_frame(
            OpCode::Data(Data::Continue),
            true,
            b"LOGIN a\n",
        ));
        wire.extend(server_frame(OpCode::Data(Data::Text), true, &long));
        let mut expected = b"HELLO linechat\nOK LOGIN a\n".to_vec();
        expected.extend_from_slice(&long);
        for cut in 0..wire.len() {
            let (mut ws, _server_end) = open_client();
            let mut got = Vec::new();
            for piece in [&wire[..cut], &wire[cut..]] {
                let mut buf = [ws.raw.as_slice(), piece].concat();
                ws.raw.clear();
                let n = ws.decode(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(got, expected, "cut at {cut}");
            assert!(ws.raw.is_empty());
            let out = ws.out.buffer().clone();
            let mut pong = Cursor::new(&out[..]);
            let (header, len) = FrameHeader::parse(&mut pong).unwrap().unwrap();
            assert_eq!(header.opcode, OpCode::Control(Control::Pong));
            let mut payload = out[pong.position() as usize..].to_vec();
            assert_eq!(len, 2);
            apply_mask(&mut payload, header.mask.expect("client frames are masked"));
            assert_eq!(payload, b"p1");
        }
    }

    #[test]
    fn a_close_frame_ends_the_stream_and_is_echoed() {
        let (mut ws, _server_end) = open_client();
        let mut wire = server_frame(OpCode::Data(Data::Text), true, b"BYE\n");
        wire.extend(server_frame(
            OpCode::Control(Control::Close),
            true,
            &1001u16.to_be_bytes(),
        ));
        wire.extend(server_frame(OpCode::Data(Data::Text), true, b"after\n"));
        assert_eq!(ws.decode(&mut wire).unwrap(), 4);
        assert_eq!(&wire[..4], b"BYE\n");
        assert!(ws.closed);
        assert_eq!(ws.read(&mut [0; 16]).unwrap(), 0);
        let out = ws.out.buffer().clone();
        let mut echo = Cursor::new(&out[..]);
        let (header, _) = FrameHeader::parse(&mut echo).unwrap().unwrap();
        let mut code = out[echo.position() as usize..].to_vec();
        apply_mask(&mut code, header.mask.unwrap());
        assert_eq!(
            (header.opcode, code),
            (
                OpCode::Control(Control::Close),
                1001u16.to_be_bytes().to_vec()
            )
        );
    }

    /// Writes frame whole lines; a line longer than a frame goes as
    /// fragments, the last one final.
    #[test]
    fn writes_frame_whole_lines_and_fragment_long_ones() {
        let (mut ws, mut server_end) = open_client();
        let long_line = [vec![b'y'; MAX_FRAME + 10], b"\n".to_vec()].concat();
        let input = [b"SAY r hi\n".to_vec(), long_line].concat();
        let mut at = 0;
        while at < input.len() {
            // The socket takes these few KiB at once.
            at += ws.write(&input[at..]).unwrap();
        }
        let mut frames = Vec::new();
        let mut payloads = Vec::new();
        for _ in 0..3 {
            let mut head = [0; 2];
            server_end.read_exact(&mut head).unwrap();
            let extended = match head[1] & 0x7f {
                126 => 2,
                _ => 0,
            };
            let mut rest = vec![0; extended + 4];
            server_end.read_exact(&mut rest).unwrap();
            let wire = [&head[..], &rest].concat();
            let (header, len) = FrameHeader::parse(&mut Cursor::new(&wire))
                .unwrap()
                .unwrap();
            let mut payload = vec![0; len as usize];
            server_end.read_exact(&mut payload).unwrap();
            apply_mask(&mut payload, header.mask.expect("client frames are masked"));
            frames.push((header.opcode, header.is_final, payload.len()));
            payloads.extend(payload);
        }
        let (text, more) = (OpCode::Data(Data::Text), OpCode::Data(Data::Continue));
        assert_eq!(
            frames,
            [(text, true, 9), (text, false, MAX_FRAME), (more, true, 11)]
        );
        assert_eq!(payloads, input);
    }

    #[test]
    fn masking_matches_the_bytewise_definition_at_every_length() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in 0..40u8 {
            let plain: Vec<u8> = (0..len).collect();
            let mut bytes = plain.clone();
            apply_mask(&mut bytes, key);
            let expected: Vec<u8> = plain
                .iter()
                .enumerate()
                .map(|(k, b)| b ^ key[k % 4])
                .collect();
            assert_eq!(bytes, expected, "length {len}");
        }
    }
}
