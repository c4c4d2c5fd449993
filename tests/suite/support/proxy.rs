//! A TCP proxy on loopback that a test can cut and restore, to make a server unreachable
//! without stopping it (other tests share it).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards connections to `upstream` while up; when cut, drops every connection and refuses
/// (accepts and closes) new ones.
pub struct Proxy {
    pub address: SocketAddr,
    up: Arc<watch::Sender<bool>>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let up = Arc::new(watch::Sender::new(true));
        let state = Arc::clone(&up);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !*state.borrow() {
                    drop(client);
                    continue;
                }
                let mut cut = state.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Proxy { address, up }
    }

    /// Makes the upstream unreachable through the proxy.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Makes it reachable again.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}
