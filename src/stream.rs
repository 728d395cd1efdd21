//! Non-blocking byte streams over a mio `TcpStream`: plain, or TLS with
//! rustls. The server's connections and the load tool's clients both use
//! [`Stream`]; the server's `transport` adds what its loop needs on top.
//!
//! [`TlsStream`] drives rustls' unbuffered API, owning the buffers. A read
//! pulls a chunk of ciphertext, runs the connection over it
//! (`process_tls_records`: handshake messages answered, records decrypted)
//! and hands out the plaintext; a write encrypts into the stream's
//! ciphertext buffer and `flush` pushes it to the socket. Handshake messages
//! and alerts wait in the same buffer, so an event loop only has to flush a
//! stream whose read left ciphertext waiting ([`Stream::holds_output`]).
//! Each buffer is freed once empty: an idle TLS session holds rustls'
//! state and no buffer (the buffered API keeps a 4 KiB receive buffer per
//! session for good).
//!
//! What a session holds for the socket is bounded (64 KiB of ciphertext,
//! rustls' own default limit): past that a write takes nothing and reports
//! `WouldBlock`, so the outbox's limits stay the session's bound, as on
//! plain TCP. Ciphertext not yet processed is bounded too (80 KiB: a record
//! or a handshake message and change); more is a protocol error.

use std::cell::RefCell;
use std::io::{self, IoSlice, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::LocalKey;

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::ws::{self, WsStream};

/// A plain or TLS stream. The TLS one is boxed, so that a plain stream
/// carries a pointer's worth of enum, not rustls' state.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream>),
    /// WebSocket, over plain TCP or TLS.
    Ws(Box<WsStream>),
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("TLS certificate {path}: {source}")]
    Cert {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("TLS certificate {0}: no CERTIFICATE block in the file")]
    NoCert(PathBuf),
    #[error("TLS key {path}: {source}")]
    Key {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("TLS certificate and key: {0}")]
    Config(#[from] rustls::Error),
}

/// Reads the PEM certificate chain and key and builds the server's TLS
/// configuration (ring as the crypto provider, TLS 1.2 and 1.3).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let cert_error = |source| TlsSetupError::Cert {
        path: cert.to_path_buf(),
        source,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(cert_error)?;
    if chain.is_empty() {
        return Err(TlsSetupError::NoCert(cert.to_path_buf()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsSetupError::Key {
        path: key.to_path_buf(),
        source,
    })?;
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)?;
    Ok(Arc::new(config))
}

/// The configuration of a client that trusts the certificates in the PEM
/// file `ca` (the load tool's, against a self-signed server).
pub fn client_config(ca: &Path) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let cert_error = |source| TlsSetupError::Cert {
        path: ca.to_path_buf(),
        source,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(cert_error)? {
        roots.add(cert.map_err(cert_error)?)?;
    }
    if roots.is_empty() {
        return Err(TlsSetupError::NoCert(ca.to_path_buf()));
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Whether a read failed because the peer broke the TLS protocol (a bad
/// handshake, garbage instead of records, a failed decryption).
pub fn is_protocol_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
}

/// Bytes waiting to be taken (by a reader, or by the stream underneath),
/// from a cursor. The buffer is freed once all are taken: idle sessions are
/// most sessions, and should hold no buffer.
#[derive(Debug, Default)]
pub struct Pending {
    bytes: Vec<u8>,
    at: usize,
}

impl Pending {
    /// Bytes not taken yet.
    pub fn len(&self) -> usize {
        self.bytes.len() - self.at
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer, to append to (what is appended waits behind the rest).
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Appends `bytes`; into an empty one they are moved, not copied.
    pub fn push(&mut self, bytes: Vec<u8>) {
        if self.is_empty() {
            *self = Pending { bytes, at: 0 };
        } else {
            self.bytes.extend_from_slice(&bytes);
        }
    }

    /// Hands out as much as fits in `buf`.
    pub fn read_into(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.len());
        buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
        self.take(n);
        n
    }

    /// Writes to `out` until all is taken, or `out` fails (`WouldBlock`
    /// when it is full).
    pub fn write_to(&mut self, out: &mut impl Write) -> io::Result<()> {
        while !self.is_empty() {
            match out.write(&self.bytes[self.at..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.take(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn take(&mut self, n: usize) {
        self.at += n;
        if self.is_empty() {
            *self = Pending::default();
        }
    }
}

/// One TLS session (server or client side) over its TCP stream, on rustls'
/// unbuffered API: the session's buffers are this struct's own, and each
/// is freed as soon as it is empty, so an idle session holds no buffer at
/// all (rustls' buffered connection keeps a 4 KiB read buffer for good).
#[derive(Debug)]
pub struct TlsStream {
    tcp: TcpStream,
    tls: TlsSide,
    /// Ciphertext read from the socket and not processed yet (a cut record).
    incoming: Vec<u8>,
    /// Decrypted plaintext not handed to the reader yet.
    plaintext: Pending,
    /// Ciphertext (handshake messages, records, alerts) the socket has not
    /// taken yet.
    outgoing: Pending,
    /// The peer broke the protocol: no close_notify, only the alert rustls
    /// queued.
    failed: bool,
    /// The socket ended, or the peer's close_notify came.
    ended: bool,
}

enum TlsSide {
    Server(UnbufferedServerConnection),
    Client(UnbufferedClientConnection),
}

/// rustls' unbuffered connections have no `Debug`; the side is what a log
/// needs.
impl std::fmt::Debug for TlsSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsSide::Server(_) => "Server",
            TlsSide::Client(_) => "Client",
        })
    }
}

/// Ciphertext a session holds for the socket before a write takes no more
/// plaintext (rustls' own default buffer limit).
const OUTGOING_LIMIT: usize = 64 * 1024;
/// Ciphertext a session holds unprocessed: a record is at most 16 KiB and
/// change, a handshake message (joined across records) at most 64 KiB;
/// more is refused as a protocol error.
const INCOMING_LIMIT: usize = 80 * 1024;

/// What [`TlsStream::pump`] encrypts once the session may send data.
enum Outbound<'a> {
    Nothing,
    Plaintext(&'a [u8]),
    CloseNotify,
}

/// The two sides' `process_tls_records`, which rustls defines per side.
trait Unbuffered {
    type Data;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

/// rustls defines `process_tls_records` once per side.
macro_rules! unbuffered_sides {
    ($($conn:ty => $data:ty),*) => {$(
        impl Unbuffered for $conn {
            type Data = $data;
            fn process<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, $data> {
                self.process_tls_records(incoming)
            }
        }
    )*};
}

unbuffered_sides!(
    UnbufferedServerConnection => ServerConnectionData,
    UnbufferedClientConnection => ClientConnectionData
);

/// The buffers [`pump`] works on, apart from the connection.
struct Buffers<'a> {
    incoming: &'a mut Vec<u8>,
    plaintext: &'a mut Vec<u8>,
    outgoing: &'a mut Vec<u8>,
    ended: &'a mut bool,
}

/// Runs `conn` over what came in until it waits for the peer: handshake
/// messages and alerts go to `outgoing`, application data is decrypted into
/// `plaintext`; once the session may send, `send` is encrypted into
/// `outgoing`. Returns the bytes of `send` taken (all of it, or none while
/// the handshake is not done).
fn pump<C: Unbuffered>(
    conn: &mut C,
    b: Buffers<'_>,
    send: Outbound<'_>,
) -> Result<usize, rustls::Error> {
    let mut taken = 0;
    let mut send = Some(send);
    loop {
        let UnbufferedStatus { mut discard, state } = conn.process(&mut b.incoming[..]);
        let again = match state {
            Err(e) => {
                b.incoming.clear();
                return Err(e);
            }
            Ok(ConnectionState::ReadTraffic(mut read)) => {
                while let Some(record) = read.next_record() {
                    let record = record?;
                    discard += record.discard;
                    b.plaintext.extend_from_slice(record.payload);
                }
                true
            }
            Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                append(b.outgoing, 512, |out| match encode.encode(out) {
                    Err(EncodeError::InsufficientSize(e)) => Err(Some(e.required_size)),
                    Err(EncodeError::AlreadyEncoded) => Err(None),
                    Ok(n) => Ok(n),
                });
                true
            }
            // What was encoded waits in `outgoing` for the socket.
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                transmit.done();
                true
            }
            Ok(ConnectionState::WriteTraffic(mut write)) => {
                match send.take() {
                    Some(Outbound::Plaintext(data)) if !data.is_empty() => {
                        // Each 16 KiB record adds a header and a tag.
                        let estimate = data.len() + (data.len() / 16384 + 1) * 64;
                        append(b.outgoing, estimate, |out| match write.encrypt(data, out) {
                            Err(EncryptError::InsufficientSize(e)) => Err(Some(e.required_size)),
                            Err(_) => Err(None),
                            Ok(n) => Ok(n),
                        });
                        taken = data.len();
                    }
                    Some(Outbound::CloseNotify) => {
                        append(b.outgoing, 64, |out| match write.queue_close_notify(out) {
                            Err(EncryptError::InsufficientSize(e)) => Err(Some(e.required_size)),
                            Err(_) => Err(None),
                            Ok(n) => Ok(n),
                        });
                    }
                    _ => {}
                }
                false
            }
            Ok(ConnectionState::PeerClosed) => {
                *b.ended = true;
                true
            }
            // Waiting for the peer; early data is not enabled.
            Ok(ConnectionState::BlockedHandshake | ConnectionState::Closed) => false,
            Ok(_) => false,
        };
        b.incoming.drain(..discard);
        if !again {
            break;
        }
    }
    if b.incoming.is_empty() {
        *b.incoming = Vec::new();
    }
    Ok(taken)
}

/// Appends what `fill` writes to `out`, with `estimate` bytes of room and
/// more if it asks for more (`Err(Some(size))`); `Err(None)`: nothing.
fn append(
    out: &mut Vec<u8>,
    estimate: usize,
    mut fill: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) {
    let start = out.len();
    let mut room = estimate;
    loop {
        out.resize(start + room, 0);
        match fill(&mut out[start..]) {
            Ok(n) => return out.truncate(start + n),
            Err(Some(needed)) if needed > room => room = needed,
            Err(_) => return out.truncate(start),
        }
    }
}

impl TlsStream {
    /// The server side of a session over an accepted socket.
    pub fn server(tcp: TcpStream, config: Arc<ServerConfig>) -> Result<TlsStream, rustls::Error> {
        Ok(TlsStream::with(
            tcp,
            TlsSide::Server(UnbufferedServerConnection::new(config)?),
        ))
    }

    /// The client side of a session; its ClientHello waits for the first
    /// flush.
    pub fn client(
        tcp: TcpStream,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<TlsStream, rustls::Error> {
        let conn = UnbufferedClientConnection::new(config, name)?;
        let mut stream = TlsStream::with(tcp, TlsSide::Client(conn));
        stream.pump(Outbound::Nothing)?;
        Ok(stream)
    }

    fn with(tcp: TcpStream, tls: TlsSide) -> TlsStream {
        TlsStream {
            tcp,
            tls,
            incoming: Vec::new(),
            plaintext: Pending::default(),
            outgoing: Pending::default(),
            failed: false,
            ended: false,
        }
    }

    /// Runs [`pump`] on this session; after a protocol error, once more
    /// for the alert rustls queued, which goes out with the close.
    fn pump(&mut self, send: Outbound<'_>) -> Result<usize, rustls::Error> {
        let pumped = self.pump_once(send);
        if pumped.is_err() {
            self.failed = true;
            let _ = self.pump_once(Outbound::Nothing);
        }
        pumped
    }

    fn pump_once(&mut self, send: Outbound<'_>) -> Result<usize, rustls::Error> {
        let b = Buffers {
            incoming: &mut self.incoming,
            plaintext: self.plaintext.buffer(),
            outgoing: self.outgoing.buffer(),
            ended: &mut self.ended,
        };
        match &mut self.tls {
            TlsSide::Server(conn) => pump(conn, b, send),
            TlsSide::Client(conn) => pump(conn, b, send),
        }
    }

    pub fn is_handshaking(&self) -> bool {
        match &self.tls {
            TlsSide::Server(conn) => conn.is_handshaking(),
            TlsSide::Client(conn) => conn.is_handshaking(),
        }
    }

    /// Ciphertext is waiting to be written (a handshake message, an alert,
    /// records the socket did not take).
    pub fn holds_output(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Says close_notify (unless the peer broke the protocol, when only the
    /// alert goes) and writes what the socket takes now.
    pub fn close(&mut self) {
        if !self.failed {
            let _ = self.pump(Outbound::CloseNotify);
        }
        let _ = self.flush();
    }

    /// Reads a chunk of ciphertext and processes it. `Ok(0)`: the socket
    /// ended.
    fn read_records(&mut self) -> io::Result<usize> {
        if self.incoming.len() >= INCOMING_LIMIT {
            self.failed = true;
            let e = rustls::Error::General("TLS input over its limit".into());
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        let got = read_appending(&TLS_READ_SCRATCH, &mut self.tcp, &mut self.incoming)?;
        if got == 0 {
            self.ended = true;
            return Ok(0);
        }
        self.pump(Outbound::Nothing)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(got)
    }
}

impl Read for TlsStream {
    /// Plaintext already decrypted, else ciphertext from the socket. `Ok(0)`
    /// is the end of the stream, with or without close_notify: a line
    /// protocol sees a cut line either way.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.plaintext.is_empty() {
                return Ok(self.plaintext.read_into(buf));
            }
            if self.ended {
                return Ok(0);
            }
            self.read_records()?;
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Encrypts what fits under [`OUTGOING_LIMIT`], the slices joined so
    /// that records are full. When nothing fits, the records already made
    /// go to the socket first; if it is full too, the write blocks. Before
    /// the handshake is done nothing is taken.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Ok(0);
        }
        if self.outgoing.len() >= OUTGOING_LIMIT {
            self.flush()?;
        }
        let room = OUTGOING_LIMIT - self.outgoing.len();
        let taken = JOINED.with_borrow_mut(|joined| {
            joined.clear();
            for b in bufs {
                let n = b.len().min(room - joined.len());
                joined.extend_from_slice(&b[..n]);
                if joined.len() == room {
                    break;
                }
            }
            self.pump(Outbound::Plaintext(joined))
        });
        match taken.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))? {
            0 => {
                // Handshaking: what it has to say goes out meanwhile.
                self.flush()?;
                Err(io::ErrorKind::WouldBlock.into())
            }
            n => Ok(n),
        }
    }

    /// Writes the pending records to the socket; `WouldBlock` while some
    /// remain.
    fn flush(&mut self) -> io::Result<()> {
        self.outgoing.write_to(&mut self.tcp)
    }
}

thread_local! {
    /// The slices of one vectored write joined, to be encrypted as full
    /// records: one buffer for the thread, not one per session.
    static JOINED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Where the TLS streams' reads land (see [`read_appending`]).
    static TLS_READ_SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// Bytes asked of the socket per read by the TLS and WebSocket streams.
pub const READ_CHUNK: usize = 16 * 1024;

/// Reads at most [`READ_CHUNK`] bytes from `src` into the thread's
/// `scratch` (zeroed once, not per read) and appends them to `dst`, which
/// so holds only what came, no spare room per session. Each layer (TLS,
/// WebSocket over it) has its own scratch, as one reads through the other.
pub fn read_appending(
    scratch: &'static LocalKey<RefCell<Vec<u8>>>,
    src: &mut impl Read,
    dst: &mut Vec<u8>,
) -> io::Result<usize> {
    scratch.with_borrow_mut(|chunk| {
        let got = src.read(chunk)?;
        dst.extend_from_slice(&chunk[..got]);
        Ok(got)
    })
}

impl Stream {
    /// The socket underneath, whatever runs over it.
    pub fn socket(&self) -> &TcpStream {
        match self {
            Stream::Tcp(s) => s,
            Stream::Tls(s) => &s.tcp,
            Stream::Ws(s) => s.inner().socket(),
        }
    }

    fn socket_mut(&mut self) -> &mut TcpStream {
        match self {
            Stream::Tcp(s) => s,
            Stream::Tls(s) => &mut s.tcp,
            Stream::Ws(s) => s.inner_mut().socket_mut(),
        }
    }

    /// Bytes of the stream's own wait to be written (a TLS handshake
    /// message, an alert, records the socket did not take); never on TCP.
    pub fn holds_output(&self) -> bool {
        match self {
            Stream::Tcp(_) => false,
            Stream::Tls(s) => s.holds_output(),
            Stream::Ws(s) => s.holds_output(),
        }
    }

    /// A WebSocket listener's connection that has not upgraded: an HTTP
    /// exchange (a page, `/metrics`), not a session.
    pub fn is_http_only(&self) -> bool {
        matches!(self, Stream::Ws(ws) if ws.is_http_only())
    }

    /// Whether a read shorter than asked for proves the socket drained. On
    /// TLS it does not: records may wait in the socket behind the plaintext
    /// handed out.
    pub fn short_read_drains(&self) -> bool {
        matches!(self, Stream::Tcp(_))
    }

    /// Ends the stream as its wire form asks (TLS close_notify), best effort.
    pub fn close(&mut self) {
        self.close_because(ws::CLOSE_NORMAL, "")
    }

    /// Ends the stream as [`Stream::close`] does; a WebSocket's close frame
    /// carries `code` and `reason`.
    pub fn close_because(&mut self, code: u16, reason: &str) {
        match self {
            // Dropping the socket closes it; TCP has no closing message.
            Stream::Tcp(_) => {}
            Stream::Tls(s) => s.close(),
            Stream::Ws(s) => s.close(code, reason),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Ws(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Ws(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Tls(s) => s.write_vectored(bufs),
            Stream::Ws(s) => s.write_vectored(bufs),
        }
    }

    /// TLS records still held go to the socket; nothing to do on TCP.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(_) => Ok(()),
            Stream::Tls(s) => s.flush(),
            Stream::Ws(s) => s.flush(),
        }
    }
}

/// The poll watches the socket underneath.
impl Source for Stream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.socket_mut().register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.socket_mut().reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.socket_mut().deregister(registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A server and a client session over a loopback socket pair, with a
    /// certificate made for the test.
    fn session_pair() -> (TlsStream, TlsStream) {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let key = PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap();
        let cert = CertificateDer::from(certified.cert.der().to_vec());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_config = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert).unwrap();
        let client_config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client_tcp = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_tcp, _) = listener.accept().unwrap();
        for s in [&client_tcp, &server_tcp] {
            s.set_nonblocking(true).unwrap();
        }
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let server =
            TlsStream::server(TcpStream::from_std(server_tcp), Arc::new(server_config)).unwrap();
        let client = TlsStream::client(
            TcpStream::from_std(client_tcp),
            Arc::new(client_config),
            name,
        )
        .unwrap();
        (server, client)
    }

    /// Reads what `s` has (into `got`) and sends what it holds.
    fn step(s: &mut TlsStream, got: &mut Vec<u8>) {
        let mut buf = [0; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        match s.flush() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => panic!("{e}"),
            _ => {}
        }
    }

    /// Both sides of a session, what each has read, and a poll on both
    /// sockets to wait for the next step.
    struct Pair {
        sides: [TlsStream; 2],
        got: [Vec<u8>; 2],
        poll: mio::Poll,
    }

    impl Pair {
        fn new() -> Pair {
            let (mut server, mut client) = session_pair();
            let poll = mio::Poll::new().unwrap();
            let both = Interest::READABLE | Interest::WRITABLE;
            server
                .tcp
                .register(poll.registry(), Token(0), both)
                .unwrap();
            client
                .tcp
                .register(poll.registry(), Token(1), both)
                .unwrap();
            Pair {
                sides: [server, client],
                got: [Vec::new(), Vec::new()],
                poll,
            }
        }

        /// Steps both sides until `done`, waiting for socket events between
        /// steps; fails after 10 s.
        fn drive(&mut self, done: impl Fn(&Pair) -> bool) {
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut events = mio::Events::with_capacity(4);
            loop {
                for (side, got) in self.sides.iter_mut().zip(&mut self.got) {
                    step(side, got);
                }
                if done(self) {
                    return;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(!left.is_zero(), "no progress");
                self.poll.poll(&mut events, Some(left)).unwrap();
            }
        }
    }

    fn holds_no_buffer(s: &TlsStream) -> bool {
        s.incoming.capacity() == 0
            && [&s.plaintext, &s.outgoing]
                .iter()
                .all(|b| b.bytes.capacity() == 0)
    }

    /// After the handshake and lines both ways (one longer than a record,
    /// written in two slices), neither side keeps a buffer: an idle session
    /// costs only rustls' own state.
    #[test]
    fn an_idle_session_holds_no_buffer_after_traffic() {
        let mut pair = Pair::new();
        pair.drive(|p| p.sides.iter().all(|s| !s.is_handshaking()));
        let mut to_client = b"HELLO linechat\n".to_vec();
        to_client.extend_from_slice(&[b'x'; 40_000]);
        to_client.push(b'\n');
        let (head, tail) = to_client.split_at(10);
        let n = pair.sides[0]
            .write_vectored(&[IoSlice::new(head), IoSlice::new(tail)])
            .unwrap();
        assert_eq!(n, to_client.len(), "under the outgoing limit: all taken");
        pair.sides[1].write_all(b"LOGIN a b\n").unwrap();
        let want = to_client.len();
        pair.drive(|p| p.got[1].len() >= want && p.got[0].len() >= 10);
        assert_eq!(pair.got[1], to_client);
        assert_eq!(pair.got[0], b"LOGIN a b\n");
        assert!(pair.sides.iter().all(holds_no_buffer));
    }
}
