//! Non-blocking byte streams over a mio `TcpStream`: plain, or TLS with
//! rustls. The server's connections and the load tool's clients both use
//! [`Stream`]; the server's `transport` adds what its loop needs on top.
//!
//! [`TlsStream`] drives rustls the way rustls' own mio server does. A read
//! pulls ciphertext (`read_tls`), decrypts it (`process_new_packets`) and
//! hands out the plaintext; a write encrypts into rustls' buffer and `flush`
//! pushes the records out (`write_tls`). Handshake messages are sent by the
//! same `flush`, so an event loop only has to flush a stream whose read left
//! ciphertext waiting ([`Stream::holds_output`]).
//!
//! What rustls holds for a session is bounded by its buffer limit (64 KiB of
//! plaintext before the handshake ends, of ciphertext after it): past that a
//! write takes nothing and reports `WouldBlock`, so the outbox's limits stay
//! the session's bound, as on plain TCP.

use std::io::{self, IoSlice, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, Connection, RootCertStore, ServerConfig};

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

/// One TLS session (server or client side) over its TCP stream.
#[derive(Debug)]
pub struct TlsStream {
    tcp: TcpStream,
    tls: Connection,
    /// The peer broke the protocol: no close_notify, only the alert rustls
    /// queued.
    failed: bool,
}

impl TlsStream {
    pub fn new(tcp: TcpStream, tls: impl Into<Connection>) -> TlsStream {
        TlsStream {
            tcp,
            tls: tls.into(),
            failed: false,
        }
    }

    pub fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// Ciphertext is waiting to be written (a handshake message, an alert,
    /// records the socket did not take).
    pub fn holds_output(&self) -> bool {
        self.tls.wants_write()
    }

    /// Says close_notify (unless the peer broke the protocol, when only the
    /// alert goes) and writes what the socket takes now.
    pub fn close(&mut self) {
        if !self.failed {
            self.tls.send_close_notify();
        }
        let _ = self.flush();
    }
}

impl Read for TlsStream {
    /// Plaintext already decrypted, else ciphertext from the socket. `Ok(0)`
    /// is the end of the stream, with or without close_notify: a line
    /// protocol sees a cut line either way.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut socket_closed = false;
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if socket_closed {
                        return Ok(0);
                    }
                }
                Err(e) => return Err(e),
            }
            match self.tls.read_tls(&mut self.tcp) {
                Ok(0) => socket_closed = true,
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            if let Err(e) = self.tls.process_new_packets() {
                self.failed = true;
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Encrypts what fits under rustls' buffer limit. When nothing fits, the
    /// records already made go to the socket first; if it is full too, the
    /// write blocks.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let n = self.tls.writer().write_vectored(bufs)?;
        if n > 0 || bufs.iter().all(|b| b.is_empty()) {
            return Ok(n);
        }
        self.flush()?;
        match self.tls.writer().write_vectored(bufs)? {
            0 => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }

    /// Writes the pending records to the socket; `WouldBlock` while some
    /// remain.
    fn flush(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
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
