//! TLS with rustls (ring provider) for Redis (`rediss://`) and PostgreSQL (`sslmode=require`).
//!
//! Certificates are verified against the system's roots, or, when a CA file is given
//! (`REDIS_CA_FILE`, `DATABASE_CA_FILE`), against that file's certificates only (like libpq's
//! `sslrootcert`): a private CA then cannot be bypassed by a public one. rustls always checks the chain and the
//! host name, so PostgreSQL's `sslmode=require` here means what libpq calls `verify-full`
//! (`verify-ca` and `verify-full` are accepted and mean the same). `sslmode=prefer` (the default)
//! and `disable` connect without TLS.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

/// A TLS set-up that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file cannot be read or holds no certificate.
    #[error("CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// Installs ring as the process's rustls provider (once; later calls are no-ops).
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The PEM certificates in `path` (at least one).
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let failed = |reason: String| TlsError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| failed(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(e.to_string()))?;
    if certs.is_empty() {
        return Err(failed("no PEM certificate in it".to_owned()));
    }
    Ok(certs)
}

/// The certificates of `ca_file`, or else the system's trusted roots.
pub fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let Some(path) = ca_file else {
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        return Ok(roots);
    };
    {
        for cert in read_ca_file(path)? {
            roots.add(cert).map_err(|e| TlsError::CaFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        }
    }
    Ok(roots)
}

/// A client configuration that verifies servers against the system's roots, or `ca_file`'s.
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    install_provider();
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(Arc::new(root_store(ca_file)?))
        .with_no_client_auth())
}

/// The connector tokio-postgres uses for `sslmode=require`.
pub fn postgres_connector(
    ca_file: Option<&Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, TlsError> {
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(
        client_config(ca_file)?,
    ))
}

/// libpq's `verify-ca` / `verify-full` are spelled `require` for tokio-postgres (rustls verifies
/// anyway).
pub fn normalize_sslmode(database_url: &str) -> String {
    database_url
        .replace("sslmode=verify-full", "sslmode=require")
        .replace("sslmode=verify-ca", "sslmode=require")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_modes_become_require() {
        assert_eq!(
            normalize_sslmode("postgres://h/db?sslmode=verify-full"),
            "postgres://h/db?sslmode=require"
        );
        assert_eq!(
            normalize_sslmode("host=h sslmode=verify-ca"),
            "host=h sslmode=require"
        );
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let path = std::env::temp_dir().join(format!("empty-ca-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").expect("write");
        assert!(read_ca_file(&path).is_err());
        assert!(postgres_connector(Some(&path)).is_err());
        let _ = std::fs::remove_file(&path);
        assert!(
            postgres_connector(None).is_ok(),
            "system roots alone are fine"
        );
    }
}
