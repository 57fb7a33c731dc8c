//! Test support: builds the real `huitong` binary, starts brokers and adapters as processes on
//! OS-assigned loopback ports with temporary data directories, and stops them when dropped.

// A failed set-up step is a failed test: panicking with the reason is the right report here.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_debug_implementations
)]

pub mod parcels;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use huitong_core::DeptId;
pub use huitong_tls::{Role, TlsFiles};

/// The `huitong` binary, built once per test run from the current sources.
pub fn huitong_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--quiet", "-p", "huitong", "--bin", "huitong"])
            .current_dir(workspace_root());
        // `cargo test` gives this process the variables it sets for compiling a crate. Passed
        // on, they become part of some dependencies' fingerprints (ring reads
        // CARGO_MANIFEST_DIR), so every inner build would rebuild half the dependency tree and
        // the next outer build rebuild it back.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name == "OUT_DIR"
                || name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_MANIFEST_")
                || matches!(
                    name.as_ref(),
                    "CARGO_CRATE_NAME"
                        | "CARGO_BIN_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "CARGO_RUSTC_CURRENT_DIR"
                )
            {
                build.env_remove(name.as_ref());
            }
        }
        let status = build.status().expect("running cargo build");
        assert!(status.success(), "cargo build -p huitong failed");
        // target/debug/deps/<test> -> target/debug/huitong
        let exe = std::env::current_exe().unwrap();
        let bin = exe.parent().unwrap().parent().unwrap().join("huitong");
        assert!(bin.exists(), "{} was not built", bin.display());
        bin
    })
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "huitong-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running huitong process. Killed when dropped; its stderr is kept for failure reports.
pub struct Proc {
    child: Child,
    pub addr: SocketAddr,
    stderr: std::sync::Arc<Output>,
    /// The thread copying stderr, joined to read all of it after the process ended.
    reader: Option<std::thread::JoinHandle<()>>,
}

/// A process's stderr as it arrives, for tests to wait on a line instead of sleeping.
#[derive(Default)]
pub struct Output {
    text: std::sync::Mutex<String>,
    grew: std::sync::Condvar,
}

impl Proc {
    /// Starts `huitong <args>` and waits for its `listening on ADDR` line.
    pub fn start(args: &[&str]) -> Proc {
        let mut cmd = Command::new(huitong_bin());
        cmd.args(args).env("HUITONG_LOG", "info");
        Proc::start_command(cmd, &format!("huitong {args:?}"))
    }

    /// Starts any server (e.g. an adapter written in another language) that prints a
    /// `listening on ADDR` line, and waits for that line; `what` names it in failures.
    pub fn start_command(mut cmd: Command, what: &str) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        let stderr = std::sync::Arc::new(Output::default());
        let reader = {
            let mut pipe = child.stderr.take().unwrap();
            let sink = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.text
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                    sink.grew.notify_all();
                }
            })
        };
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.trim().parse::<SocketAddr>().unwrap());
                } else if let Ok(json) = serde_json::from_str::<serde_json::Value>(&line)
                    && json["message"] == "listening"
                {
                    // `--log-json`: the same line as a JSON object.
                    let _ = tx.send(json["addr"].as_str().unwrap().parse().unwrap());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => Proc {
                child,
                addr,
                stderr,
                reader: Some(reader),
            },
            Err(_) => {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "{what} did not start listening: {:?}\n{}",
                    out.status,
                    stderr.text.lock().unwrap()
                );
            }
        }
    }

    pub fn endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A stand-in for a process that has been stopped, so that an owner can take the real one
    /// out (e.g. to `terminate` it) and put another in later.
    pub fn placeholder() -> Proc {
        let child = Command::new("true").spawn().expect("spawning true");
        Proc {
            child,
            addr: ([127, 0, 0, 1], 0).into(),
            stderr: std::sync::Arc::new(Output::default()),
            reader: None,
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.text.lock().unwrap().clone()
    }

    /// Waits until the process's stderr satisfies `done` (a log line is written after the
    /// answer it explains may already have left), for at most `within`; returns the stderr.
    /// Panics with the stderr if it never does.
    pub fn wait_for_stderr(&self, within: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + within;
        let mut text = self.stderr.text.lock().unwrap();
        while !done(&text) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(
                !left.is_zero(),
                "the process's log never showed what was waited for:\n{text}"
            );
            text = self.stderr.grew.wait_timeout(text, left).unwrap().0;
        }
        text.clone()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap()
    }

    /// Sends SIGTERM, waits for the exit and returns it with everything the process wrote to
    /// stderr, its last lines included.
    pub fn terminate_with_stderr(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        (status, self.stderr())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The demo's three departments written to a temporary directory, their adapters running as
/// processes and a broker in front of them.
pub struct Exchange {
    pub dir: TempDir,
    pub adapters: Vec<(String, Proc)>,
    pub broker: Proc,
}

pub const DEPTS: [&str; 3] = ["public-security", "civil-affairs", "market-regulation"];

/// The purpose the demo's policy file grants civil affairs the household register for.
pub const MARRIAGE: &str = "婚姻登记 marriage registration";

impl Exchange {
    /// `extra_broker` is appended to the `[broker]` table of the broker's config.
    pub fn start(extra_broker: &str) -> Exchange {
        Self::start_with_policy(extra_broker, "")
    }

    /// Like [`Exchange::start`], with `extra_policy` appended to the demo's policy file.
    pub fn start_with_policy(extra_broker: &str, extra_policy: &str) -> Exchange {
        let dir = TempDir::new("exchange");
        init_demo(dir.path(), 600);
        if !extra_policy.is_empty() {
            let policy = dir.path().join("policy.toml");
            let mut text = std::fs::read_to_string(&policy).unwrap();
            text.push_str(extra_policy);
            std::fs::write(&policy, text).unwrap();
        }
        let adapters: Vec<(String, Proc)> = DEPTS
            .iter()
            .map(|d| {
                let cfg = dir.path().join(format!("{d}.toml"));
                let p = Proc::start(&[
                    "adapter",
                    "--config",
                    cfg.to_str().unwrap(),
                    "--listen",
                    "127.0.0.1:0",
                ]);
                (d.to_string(), p)
            })
            .collect();
        let endpoints: Vec<(String, String)> = adapters
            .iter()
            .map(|(d, p)| (d.clone(), p.endpoint()))
            .collect();
        let broker_cfg =
            write_broker_config(dir.path(), "broker-test.toml", &endpoints, extra_broker);
        let broker = Proc::start(&[
            "broker",
            "--config",
            broker_cfg.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ]);
        Exchange {
            dir,
            adapters,
            broker,
        }
    }

    /// Restarts the broker with the same config and data directory.
    pub fn restart_broker(&mut self) {
        self.restart_broker_with(&[]);
    }

    /// Restarts the broker with `global` flags (e.g. `--log-json`) before the subcommand.
    pub fn restart_broker_with(&mut self, global: &[&str]) {
        self.broker.kill();
        let cfg = self.dir.path().join("broker-test.toml");
        let mut args: Vec<&str> = global.to_vec();
        args.extend([
            "broker",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ]);
        self.broker = Proc::start(&args);
    }

    /// The ID number of the `i`-th resident in the demo's household register.
    pub fn person(&self, i: usize) -> String {
        self.records("household-register.jsonl")[i]["id_number"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub fn broker_pid(&self) -> u32 {
        self.broker.pid()
    }

    /// The demo's certificate for `dept` in `role`.
    pub fn identity(&self, dept: &str, role: Role) -> TlsFiles {
        TlsFiles::from_pki_dir(&self.pki(), &DeptId::new(dept).unwrap(), role)
    }

    pub fn pki(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    /// A consumer connection as `dept`.
    pub async fn consumer(&self, dept: &str) -> huitong_client::Client {
        huitong_client::Client::connect(
            &self.broker.endpoint(),
            &self.identity(dept, Role::Consumer),
        )
        .await
        .unwrap()
    }

    /// An administrator connection as `dept`.
    pub async fn admin(&self, dept: &str) -> huitong_client::Admin {
        huitong_client::Admin::connect(&self.broker.endpoint(), &self.identity(dept, Role::Admin))
            .await
            .unwrap()
    }

    /// Stops `dept`'s adapter and starts it again on the same address with `settings` (top-level
    /// config lines, e.g. `metrics_listen = "…"`) put before its config. The old process is
    /// killed first, so that the new one can take the port.
    pub fn restart_adapter_with(&mut self, dept: &str, settings: &str) {
        let listen = format!("127.0.0.1:{}", self.adapter(dept).addr.port());
        let cfg = self.dir.path().join(format!("{dept}.toml"));
        let original = std::fs::read_to_string(&cfg).unwrap();
        std::fs::write(&cfg, format!("{settings}\n{original}")).unwrap();
        drop(std::mem::replace(self.adapter(dept), Proc::placeholder()));
        *self.adapter(dept) = Proc::start(&[
            "adapter",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            &listen,
        ]);
    }

    pub fn adapter(&mut self, dept: &str) -> &mut Proc {
        &mut self.adapters.iter_mut().find(|(d, _)| d == dept).unwrap().1
    }

    /// The records of one of the demo's JSON Lines files.
    pub fn records(&self, file: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
        read_jsonl(&self.dir.path().join(file))
    }
}

/// Writes the demo's data and configs with `huitong demo --init`.
pub fn init_demo(dir: &Path, persons: usize) {
    let out = Command::new(huitong_bin())
        .args([
            "demo",
            "--init",
            dir.to_str().unwrap(),
            "--persons",
            &persons.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "huitong demo --init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A broker config in `dir` using the certificates in `dir/pki` (the demo's layout) and the
/// policy file `dir/policy.toml` if there is one.
pub fn write_broker_config(
    dir: &Path,
    name: &str,
    adapters: &[(String, String)],
    extra_broker: &str,
) -> PathBuf {
    let policy = if dir.join("policy.toml").exists() {
        "policy = \"policy.toml\"\n"
    } else {
        ""
    };
    let mut text = format!(
        "[broker]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{name}-data\"\n{policy}{extra_broker}\n\n\
         [tls]\nca = \"pki/ca.pem\"\ncert = \"pki/exchange-office-broker.pem\"\n\
         key = \"pki/exchange-office-broker.key\"\ncrl = \"pki/crl.pem\"\n"
    );
    for (dept, endpoint) in adapters {
        text.push_str(&format!(
            "\n[[adapters]]\ndept = \"{dept}\"\nendpoint = \"{endpoint}\"\n"
        ));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

pub fn read_jsonl(path: &Path) -> Vec<serde_json::Map<String, serde_json::Value>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Whether a test that needs an outside tool must run (CI sets `HUITONG_REQUIRE_<NAME>=1`) or
/// may be skipped with a note saying what to install.
pub fn required(name: &str) -> bool {
    std::env::var(format!("HUITONG_REQUIRE_{name}")).is_ok_and(|v| v == "1")
}

/// A port that was free a moment ago, for servers that cannot be told to pick their own.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over plain HTTP/1.1; the body.
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    body.to_owned()
}

/// The value of the metrics sample whose line contains all of `parts`.
pub fn sample(metrics: &str, parts: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| parts.iter().all(|p| l.contains(p)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Civil affairs' usual lookup: name and marital status under the demo policy's marriage grant.
pub fn marriage_check(id: &str) -> huitong_client::Query {
    huitong_client::Query::by_key("public-security/household-register", "id_number", id)
        .fields(["name", "marital_status"])
        .purpose(MARRIAGE)
}

/// Waits until some PostgreSQL session LISTENs on `channel` (a session's last statement is
/// shown in `pg_stat_activity`), so that a NOTIFY sent next is surely heard. Panics after 30 s.
pub async fn wait_until_listening(pool: &sqlx::PgPool, channel: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
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
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
