//! `huitong bench connections`: what many open client connections cost a server. Opens
//! mutual-TLS connections to a broker or adapter, makes one gRPC health check on each so that
//! every connection is a live HTTP/2 session, holds them, and reads the server's resident memory
//! from `/proc/<pid>/status` before and while they are open.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use huitong_tls::{ClientTls, Expect, Role, TlsFiles};
use serde_json::json;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::identity::IdentityArgs;
use crate::query::duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The server, https://host:port.
    #[arg(long)]
    addr: String,
    /// The role the server's certificate must have: broker or adapter.
    #[arg(long, default_value = "broker", value_parser = ["broker", "adapter"])]
    server_role: String,
    #[command(flatten)]
    identity: IdentityArgs,
    /// Connections to open.
    #[arg(long, default_value_t = 10_000)]
    count: u32,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    parallel: u32,
    /// The server's process id, to read its memory (Linux /proc).
    #[arg(long)]
    pid: Option<u32>,
    /// How long to hold the connections open before reading the memory and closing them.
    #[arg(long, default_value = "2s", value_parser = duration)]
    hold: Duration,
}

/// Resident and peak resident memory of `pid`, in KiB.
fn memory_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .with_context(|| format!("{path} has no {name}"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

async fn open(addr: &str, tls: &ClientTls, role: Role) -> anyhow::Result<HealthClient<Channel>> {
    let channel = huitong_tls::endpoint(addr)?
        .connect_timeout(Duration::from_secs(10))
        .connect_with_connector(tls.connector(Expect::Role(role)))
        .await
        .map_err(|e| {
            let mut msg = e.to_string();
            let mut cur = std::error::Error::source(&e);
            while let Some(s) = cur {
                msg.push_str(&format!(": {s}"));
                cur = s.source();
            }
            anyhow::anyhow!(msg)
        })?;
    let mut client = HealthClient::new(channel);
    client
        .check(HealthCheckRequest::default())
        .await
        .context("health check")?;
    Ok(client)
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let role = if args.server_role == "adapter" {
        Role::Adapter
    } else {
        Role::Broker
    };
    let files: TlsFiles = args.identity.files();
    let tls = ClientTls::load(&files)?;
    let before = args.pid.map(memory_kib).transpose()?;

    let started = Instant::now();
    let mut open_conns: Vec<HealthClient<Channel>> = Vec::with_capacity(args.count as usize);
    let mut failure: Option<String> = None;
    // Batches of `parallel`: a burst of thousands of handshakes at once measures the accept
    // queue, not what an open connection costs.
    while open_conns.len() < args.count as usize && failure.is_none() {
        let batch = (args.count as usize - open_conns.len()).min(args.parallel as usize);
        let mut tasks = Vec::with_capacity(batch);
        for _ in 0..batch {
            let tls = tls.clone();
            let addr = args.addr.clone();
            tasks.push(tokio::spawn(async move { open(&addr, &tls, role).await }));
        }
        for t in tasks {
            match t.await.context("a connecting task panicked")? {
                Ok(c) => open_conns.push(c),
                Err(e) => {
                    failure.get_or_insert_with(|| format!("{e:#}"));
                }
            }
        }
    }
    let open_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(args.hold).await;
    let during = args.pid.map(memory_kib).transpose()?;
    let opened = open_conns.len();
    drop(open_conns);

    let mib = |k: u64| k as f64 / 1024.0;
    let per_conn_kib = match (before, during) {
        (Some((b, _)), Some((d, _))) if opened > 0 => {
            Some(d.saturating_sub(b) as f64 / opened as f64)
        }
        _ => None,
    };
    let summary = json!({
        "kind": "connections",
        "addr": args.addr,
        "requested": args.count,
        "opened": opened,
        "open_seconds": open_seconds,
        "rss_before_mib": before.map(|m| mib(m.0)),
        "rss_open_mib": during.map(|m| mib(m.0)),
        "peak_rss_mib": during.map(|m| mib(m.1)),
        "per_connection_kib": per_conn_kib,
        "failure": failure,
    });
    println!(
        "{opened} of {} connections open after {open_seconds:.1}s{}{}",
        args.count,
        match (before, during) {
            (Some(b), Some(d)) => format!(
                "; server RSS {:.1} MiB before, {:.1} MiB with them open",
                mib(b.0),
                mib(d.0)
            ),
            _ => String::new(),
        },
        failure.as_ref().map_or(String::new(), |f| format!(
            "; stopped at the first failure: {f}"
        )),
    );
    println!("{summary}");
    // Fewer connections than asked is a result (the largest count reached, and why), not a
    // failure of the measurement; none at all is.
    Ok(if opened == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
