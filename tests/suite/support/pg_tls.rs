//! A TLS front for the plain PostgreSQL, with a certificate the test made: it answers a client's
//! `SSLRequest` with `S`, terminates TLS, and passes the decrypted protocol on to the server.
//! So a TLS test depends on no certificate the machine's packages generated (Debian's snakeoil
//! is issued to the host's name, which is `localhost` only on some machines).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// PostgreSQL's `SSLRequest`: length 8, then the code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 210, 22, 47];

/// The front's address, and how many TLS handshakes it completed.
pub struct PgTls {
    pub address: SocketAddr,
    pub handshakes: Arc<AtomicUsize>,
}

impl PgTls {
    /// Serves `cert` and `key` (PEM files) on a free loopback port in front of `upstream`.
    /// A client that does not ask for TLS is dropped.
    pub async fn start(upstream: SocketAddr, cert: &Path, key: &Path) -> PgTls {
        processor::tls::install_provider();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .expect("the certificate file")
            .collect::<Result<_, _>>()
            .expect("the certificates");
        let key = PrivateKeyDer::from_pem_file(key).expect("the key");
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("a server configuration");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&handshakes);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (acceptor, counted) = (acceptor.clone(), Arc::clone(&counted));
                tokio::spawn(async move {
                    let mut request = [0u8; 8];
                    if client.read_exact(&mut request).await.is_err() || request != SSL_REQUEST {
                        return;
                    }
                    if client.write_all(b"S").await.is_err() {
                        return;
                    }
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return; // the client refused the certificate
                    };
                    counted.fetch_add(1, Ordering::SeqCst);
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
                });
            }
        });
        PgTls {
            address,
            handshakes,
        }
    }
}
