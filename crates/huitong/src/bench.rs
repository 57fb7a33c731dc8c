//! `huitong bench`: measurements reported as ratios to a baseline measured in the same run.
//!
//! `huitong bench load` drives an adapter or a broker (or a proxy or static server in their
//! place) over gRPC and reports throughput and latency percentiles; `huitong bench connections`
//! measures what many open connections cost a server; `bench/run.sh` runs both against each
//! setup side by side (see docs/performance.md).
//!
//! `huitong bench log` measures the exchange log on this machine's disk: durable appends per
//! second with 1, 16 and 256 concurrent writers against the baseline of one write and one
//! `fdatasync` per record; inclusion-proof time at growing log sizes; and offline verification
//! of an export.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use huitong_audit::store::{Log, LogOptions};
use huitong_audit::{bundle, merkle};
use huitong_proto::v1::ExchangeRecord;
use prost::Message;

mod connections;
mod events;
mod load;
mod subjects;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// The exchange log: durable appends, proofs, offline verification.
    Log {
        /// Scratch directory (on the disk to measure); removed afterwards.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Seconds per append measurement.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
        /// Log sizes for the proof measurement, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "10000,1000000")]
        proof_sizes: Vec<u64>,
    },
    /// Load generator: Adapter.Fetch or Exchange.Query at a fixed rate or fixed concurrency;
    /// throughput, latency percentiles, every answer's status. Exits 1 if any answer was an error.
    Load(Box<load::Args>),
    /// Many open connections to a server, and its memory while they are open.
    Connections(connections::Args),
    /// Publish/subscribe fan-out through a broker: events per second to 1, 10 and 100
    /// subscribers and delivery latency. Exits 1 if any subscriber missed an event.
    Events(events::Args),
    /// Subject reports (index lookup and entry reads) at growing log sizes.
    Subjects(subjects::Args),
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Log {
            dir,
            seconds,
            proof_sizes,
        } => {
            let dir = dir.unwrap_or_else(|| {
                std::env::temp_dir().join(format!("huitong-bench-{}", std::process::id()))
            });
            let result = bench_log(&dir, Duration::from_secs(seconds), &proof_sizes).await;
            let _ = std::fs::remove_dir_all(&dir);
            result?;
        }
        Command::Load(args) => return load::run(*args).await,
        Command::Connections(args) => return connections::run(args).await,
        Command::Events(args) => return events::run(args).await,
        Command::Subjects(args) => subjects::run(args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// A realistic record: the size of a marriage-registration check.
fn sample_record(i: u64) -> Vec<u8> {
    ExchangeRecord {
        time_micros: 1_764_000_000_000_000 + i as i64,
        request_id: format!("19ab3c4d5e6-{i:06x}"),
        kind: "query".into(),
        consumer: "civil-affairs".into(),
        provider: "public-security".into(),
        resource: "public-security/household-register".into(),
        purpose: "婚姻登记 marriage registration".into(),
        fields: ["name", "gender", "birth_date", "marital_status"]
            .map(String::from)
            .to_vec(),
        outcome: "answered".into(),
        status_code: 0,
        cache_hit: false,
        stale: false,
        latency_micros: 1800,
        answer_digest: vec![0xab; 32],
        subject: vec![(i % 251) as u8; 32],
        subject_period: "2026-11".into(),
        grant_id: "P-1".into(),
        record_count: 1,
        refusal: String::new(),
        subjects: vec![vec![(i % 251) as u8; 32]],
        official: vec![0xcd; 32],
        case_ref: format!("HY-2026-{i:06}"),
        fields_asked: ["name", "gender", "birth_date", "marital_status"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    }
    .encode_to_vec()
}

fn options() -> LogOptions {
    LogOptions {
        origin: "bench.huitong.example/exchange-log".into(),
        key_name: "bench.huitong.example/exchange-log".into(),
        ..LogOptions::default()
    }
}

async fn open(dir: &Path) -> anyhow::Result<Log> {
    let dir = dir.to_owned();
    Ok(tokio::task::spawn_blocking(move || Log::open(&dir, options())).await??)
}

/// One write and one fdatasync per record, as a log without group commit would do.
fn baseline(dir: &Path, time: Duration) -> anyhow::Result<f64> {
    std::fs::create_dir_all(dir)?;
    let mut f = std::fs::File::create(dir.join("baseline.log"))?;
    let record = sample_record(0);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < time {
        f.write_all(&bundle::frame_header(&record))?;
        f.write_all(&record)?;
        f.sync_data()?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

async fn appends(log: &Log, writers: usize, time: Duration) -> f64 {
    let start = Instant::now();
    let deadline = start + time;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    if log
                        .append(sample_record(w as u64 * 1_000_000 + n))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap_or(0);
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// Appends until the log holds `size` entries, with many writers so that it is quick.
async fn fill(log: &Log, size: u64) {
    let per = size.saturating_sub(log.size()).div_ceil(256);
    let tasks: Vec<_> = (0..256u64)
        .map(|w| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..per {
                    let _ = log.append(sample_record(w * per + i)).await;
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

/// Mean time of an inclusion proof for spread-out indexes, proofs verified as they come.
fn proof_micros(log: &Log) -> anyhow::Result<f64> {
    let size = log.size();
    let root = log.root_at(size)?;
    let n = 2000u64;
    let start = Instant::now();
    for k in 0..n {
        let index = (k * 7_919_993) % size;
        let proof = log.inclusion_proof(index, size)?;
        let leaf = log.leaf_hash(index)?;
        merkle::verify_inclusion(index, size, &leaf, &proof, &root)
            .map_err(|e| anyhow::anyhow!("a proof did not verify: {e}"))?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / n as f64)
}

async fn bench_log(dir: &Path, time: Duration, proof_sizes: &[u64]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    println!("## Exchange log on {}\n", dir.display());
    let base = baseline(&dir.join("baseline"), time)?;
    println!("| durable appends | per second | ratio to baseline | records per fdatasync |");
    println!("|---|---:|---:|---:|");
    println!("| baseline: write + fdatasync per record | {base:.0} | 1.00 | 1.0 |");
    for writers in [1usize, 16, 256] {
        let d = dir.join(format!("appends-{writers}"));
        let log = open(&d).await?;
        let before = log.stats();
        let rate = appends(&log, writers, time).await;
        let after = log.stats();
        let per_sync =
            (after.appends - before.appends) as f64 / (after.syncs - before.syncs).max(1) as f64;
        println!(
            "| huitong log, {writers} concurrent writers | {rate:.0} | {:.2} | {per_sync:.1} |",
            rate / base
        );
        log.close().await;
    }

    println!("\n| log size | inclusion proof (fetch + verify), µs | ratio to the smallest |");
    println!("|---:|---:|---:|");
    let d = dir.join("proofs");
    let log = open(&d).await?;
    let mut first = None;
    let mut sizes = proof_sizes.to_vec();
    sizes.sort_unstable();
    for size in sizes {
        fill(&log, size).await;
        let l = log.clone();
        let us = tokio::task::spawn_blocking(move || proof_micros(&l)).await??;
        let r = us / *first.get_or_insert(us);
        println!("| {} | {us:.1} | {r:.2} |", log.size());
    }

    // Offline verification of an export of everything appended for the proofs.
    let size = log.size();
    let l = log.clone();
    let out = dir.join("export");
    let started = Instant::now();
    let cp = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let cp = l.checkpoint()?;
        let entries: Vec<Vec<u8>> = l.read(0, cp.size)?.into_iter().map(|(_, d)| d).collect();
        let hashes = l.leaf_hashes(0, cp.size)?;
        bundle::write(&out, &cp.note, &entries, &hashes, None)?;
        Ok(cp)
    })
    .await??;
    let export_s = started.elapsed().as_secs_f64();
    let key = log.verifier_key();
    let out = dir.join("export");
    let started = Instant::now();
    let verified = tokio::task::spawn_blocking(move || bundle::verify(&out, &key)).await??;
    let verify_s = started.elapsed().as_secs_f64();
    println!(
        "\n| offline verification | entries | seconds | entries per second |\n|---|---:|---:|---:|\n| export | {size} | {export_s:.2} | {:.0} |\n| verify (signature, every leaf, whole tree, every readable line) | {} | {verify_s:.2} | {:.0} |",
        size as f64 / export_s,
        verified.entries,
        verified.entries as f64 / verify_s
    );
    let _ = cp;
    log.close().await;
    Ok(())
}
