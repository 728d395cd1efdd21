//! A server with a TLS listener on a certificate made at run time, and the
//! rustls client stream the TLS and wss tests talk over.

use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::{Server, Wire};

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

impl Wire for TlsStream {
    fn socket(&self) -> &TcpStream {
        &self.sock
    }
}

/// A server with a TLS listener on a certificate made for this test, and
/// the client configuration that trusts it.
pub struct TlsServer {
    pub server: Server,
    pub client_config: Arc<ClientConfig>,
    cert_dir: tempfile::TempDir,
}

impl TlsServer {
    pub fn start(extra: &[&str]) -> TlsServer {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .expect("certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, certified.cert.pem()).unwrap();
        std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
        let path = |p: &PathBuf| p.display().to_string();
        let (cert_arg, key_arg) = (path(&cert_path), path(&key_path));
        let mut args = vec![
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            &cert_arg,
            "--tls-key",
            &key_arg,
        ];
        args.extend_from_slice(extra);
        let server = Server::with_args(&args);

        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(certified.cert.der().to_vec()))
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client_config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsServer {
            server,
            client_config: Arc::new(client_config),
            cert_dir: dir,
        }
    }

    /// The server's certificate (PEM), for clients that read a CA file.
    pub fn cert_path(&self) -> PathBuf {
        self.cert_dir.path().join("cert.pem")
    }
}
