//! TLS to Redis and PostgreSQL, with a CA and certificates made by the test (openssl CLI): a local
//! redis-server on a TLS port, and a TLS front before the local PostgreSQL. A client that trusts
//! the CA gets through; one that does not is refused (and the service is not ready). Nothing
//! depends on the certificates the machine's packages generated.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support;
use crate::support::harness::Test;
use crate::support::pg_tls::PgTls;
use crate::support::{payloads, TestEnv};

/// This module's tests, as the suite runs them (see `main.rs`).
pub fn tests() -> Vec<Test> {
    [
        trial!(rediss_with_a_private_ca, tokio = 2),
        trial!(postgres_sslmode_require_verifies_the_server, tokio = 2),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl must be installed for this test");
    assert!(status.success(), "openssl {args:?}");
}

/// A CA and a server certificate for `names` (an X.509 subjectAltName list), in `dir`.
fn make_certificates(dir: &Path, names: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=processor test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("san.ext"), format!("subjectAltName={names}\n"))
        .expect("write extension file");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    );
}

async fn rediss_with_a_private_ca() {
    processor::tls::install_provider();
    let dir = std::env::temp_dir().join(format!("processor-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    make_certificates(&dir, "IP:127.0.0.1,DNS:localhost");
    let port = support::free_port();
    let mut server = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--tls-port",
            &port.to_string(),
        ])
        .args([
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
        ])
        .args(["--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no"])
        .args(["--save", "", "--appendonly", "no"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server with TLS support");
    let url = format!("rediss://127.0.0.1:{port}");
    let ca = std::fs::read(dir.join("ca.crt")).expect("ca");
    let client = redis::Client::build_with_tls(
        url.as_str(),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(ca),
        },
    )
    .expect("TLS client");
    let mut conn = {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match client.get_multiplexed_async_connection().await {
                Ok(conn) => break conn,
                Err(error) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "TLS redis never came up: {error}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    };

    let mut env = TestEnv::new("tls").await;
    // without the private CA the certificate is unknown: Redis is reported failing
    let mut untrusting = env.config(&["--monitor-interval-ms", "200"]);
    untrusting.redis.link.url = url.clone();
    let refused = env.start(untrusting);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (code, body) = refused.get("/readyz").await;
        if code == 503
            && body.contains("\"name\":\"redis\",\"ok\":false")
            && body.contains("failing")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected a failing redis check: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    refused.stop().await;

    // with it, everything flows over TLS
    let mut trusting = env.config(&[]);
    trusting.redis.link.url = url.clone();
    trusting.redis.link.ca_file = Some(dir.join("ca.crt"));
    let running = env.start(trusting);
    let mut pipe = redis::pipe();
    for item in payloads("tls", 10, 100) {
        pipe.cmd("XADD")
            .arg(&env.stream)
            .arg("*")
            .arg("payload")
            .arg(item)
            .ignore();
    }
    pipe.query_async::<()>(&mut conn)
        .await
        .expect("publish over TLS");
    env.wait_landed_rows(100, Duration::from_secs(30)).await;
    assert_eq!(running.metrics.positions_written.get(), 100);
    running.stop().await;

    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// PostgreSQL over TLS with `sslmode=require`, verified by rustls: a TLS front with the test's
/// own CA and a certificate issued to `localhost` (support::pg_tls, before the local server) is
/// accepted only with that CA file and only under the name it was issued for (what libpq calls
/// verify-full); a client that does not ask for TLS gets nowhere.
async fn postgres_sslmode_require_verifies_the_server() {
    let env = TestEnv::new("pgtls").await;
    let dir = std::env::temp_dir().join(format!("processor-pgtls-{}", std::process::id()));
    let other = dir.join("other");
    std::fs::create_dir_all(&other).expect("temp dirs");
    make_certificates(&dir, "DNS:localhost");
    make_certificates(&other, "DNS:localhost");
    let upstream: std::net::SocketAddr = "127.0.0.1:5432".parse().expect("address");
    let upstream = env
        .servers
        .database_url
        .split_once('@')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|host| host.parse().ok())
        .unwrap_or(upstream);
    let front = PgTls::start(upstream, &dir.join("server.crt"), &dir.join("server.key")).await;
    let port = front.address.port();
    let url = |host: &str, mode: &str| {
        format!(
            "postgres://postgres@{host}:{port}/postgres?sslmode={mode}&options=-csearch_path%3D{}",
            env.schema
        )
    };
    let ca = dir.join("ca.crt");
    let client = processor::postgres::connect(&url("localhost", "verify-full"), Some(&ca))
        .await
        .expect("TLS connection with the server's CA");
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("a query over TLS")
        .get(0);
    assert_eq!(one, 1);
    assert_eq!(
        front.handshakes.load(Ordering::SeqCst),
        1,
        "it went over TLS"
    );
    assert!(
        processor::postgres::connect(
            &url("localhost", "verify-full"),
            Some(&other.join("ca.crt"))
        )
        .await
        .is_err(),
        "a certificate from another CA must be refused"
    );
    assert!(
        processor::postgres::connect(&url("127.0.0.1", "verify-full"), Some(&ca))
            .await
            .is_err(),
        "a certificate for another name must be refused"
    );
    assert!(
        processor::postgres::connect(&url("localhost", "disable"), None)
            .await
            .is_err(),
        "without TLS the front lets nothing through"
    );
    assert_eq!(front.handshakes.load(Ordering::SeqCst), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
