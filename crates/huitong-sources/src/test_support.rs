//! Helpers for this crate's tests: scratch directories, configurations, the test databases
//! and a TCP proxy that can be cut to play a database going down.
// Without the SQL and HTTP sources (the fuzz build) their helpers have no user.
#![cfg_attr(not(all(feature = "sql", feature = "http")), allow(dead_code))]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use huitong_adapter::AdapterConfig;
use huitong_core::{FieldName, ResourceName};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A directory under the system temp dir, removed when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "huitong-sources-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    pub(crate) fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A name unique to this test run, for tables in the shared test databases.
pub(crate) fn unique(tag: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "ht_{tag}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// An adapter configuration: `dept = "public-security"`, dummy TLS paths, then `resources`
/// (TOML `[[resources]]` tables), read as if from `dir/adapter.toml`.
pub(crate) fn config(dir: &TempDir, resources: &str) -> AdapterConfig {
    let text = format!(
        "dept = \"public-security\"\n\
         tls = {{ ca = \"ca.pem\", cert = \"a.pem\", key = \"a.key\" }}\n\n{resources}"
    );
    let path = dir.write("adapter.toml", &text);
    match AdapterConfig::load(&path) {
        Ok(c) => c,
        Err(e) => panic!("{e}\n{text}"),
    }
}

pub(crate) fn rn(name: &str) -> ResourceName {
    ResourceName::new(name).unwrap()
}

pub(crate) fn names(list: &[&str]) -> Vec<FieldName> {
    list.iter().map(|n| FieldName::new(n).unwrap()).collect()
}

/// A loopback TCP proxy to `target` that can be stopped (every connection cut, the port
/// closed) and started again on the same port.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    target: SocketAddr,
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    pub(crate) async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut p = Proxy {
            addr,
            target,
            accept: None,
            conns: Arc::default(),
        };
        p.serve(listener);
        p
    }

    fn serve(&mut self, listener: TcpListener) {
        let target = self.target;
        let conns = Arc::clone(&self.conns);
        self.accept = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns.lock().unwrap().push(task);
            }
        }));
    }

    /// Closes the port and cuts every connection, as a database going down would.
    pub(crate) async fn stop(&mut self) {
        if let Some(a) = self.accept.take() {
            a.abort();
            let _ = a.await;
        }
        let conns: Vec<_> = self.conns.lock().unwrap().drain(..).collect();
        for c in conns {
            c.abort();
            let _ = c.await;
        }
    }

    /// Opens the same port again.
    pub(crate) async fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}

/// `host:port` of a database URL like `postgres://user@127.0.0.1:5432/db`, as written.
fn url_hostport(url: &str) -> &str {
    let rest = url.split_once("://").unwrap().1;
    let authority = rest.split(['/', '?']).next().unwrap();
    authority.rsplit('@').next().unwrap()
}

/// The address of a database URL's server.
pub(crate) fn url_addr(url: &str) -> SocketAddr {
    use std::net::ToSocketAddrs;
    url_hostport(url).to_socket_addrs().unwrap().next().unwrap()
}

/// The URL with its `host:port` replaced.
pub(crate) fn url_via(url: &str, addr: SocketAddr) -> String {
    url.replacen(url_hostport(url), &addr.to_string(), 1)
}

/// Waits until some PostgreSQL session LISTENs on `channel` (a session's last statement is
/// shown in `pg_stat_activity`), so that a NOTIFY sent next is surely heard. Panics after 30 s.
pub(crate) async fn wait_until_listening(pool: &sqlx::PgPool, channel: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%' AND query LIKE '%' || $1 || '%'",
        )
        .bind(channel)
        .fetch_one(pool)
        .await
        .unwrap();
        if n > 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nobody LISTENs on {channel} after 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
