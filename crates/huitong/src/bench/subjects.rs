//! `huitong bench subjects`: how long a subject report takes as the log grows.
//!
//! A subject report is what an auditor (and, through the portal, a citizen) runs most: "who
//! reached this person". It must stay fast however long the log, so this fills a log with
//! realistic entries (key lookups reaching one person each, and every 50th a 100-record search
//! page reaching 100 people) and measures, at each size, what the broker does for one report:
//! look the person's HMAC up in the audit index and read every entry found from the log. The
//! figure at the smallest size is the baseline the others are divided by.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use huitong_audit::index::Index;
use huitong_audit::store::Log;
use huitong_proto::v1::ExchangeRecord;
use prost::Message;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Scratch directory (on the disk to measure); removed afterwards.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Log sizes, comma-separated, ascending.
    #[arg(long, value_delimiter = ',', default_value = "10000,1000000")]
    sizes: Vec<u64>,
    /// Reports measured at each size.
    #[arg(long, default_value_t = 300)]
    reports: u64,
}

/// Entries per person on average: people reached by key lookups are drawn from a population of
/// `size / ENTRIES_PER_PERSON`, so the typical report finds about this many key lookups, plus
/// the searches that reached the person.
const ENTRIES_PER_PERSON: u64 = 20;
/// Every this many entries is a search page of [`PAGE`] records.
const SEARCH_EVERY: u64 = 50;
const PAGE: u64 = 100;

/// A person's subject HMAC stand-in: distinct 32 bytes per person (the benchmark needs
/// distinct keys of the right length, not a real HMAC).
fn subject(person: u64) -> Vec<u8> {
    let mut s = vec![0u8; 32];
    s[..8].copy_from_slice(&person.to_be_bytes());
    s[8..16].copy_from_slice(&person.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    s
}

/// Spreads entry numbers over people without a visible pattern.
fn person_of(n: u64, people: u64) -> u64 {
    n.wrapping_mul(0x2545_f491_4f6c_dd1d).rotate_left(17) % people
}

fn entry(i: u64, people: u64) -> Vec<u8> {
    let search = i % SEARCH_EVERY == SEARCH_EVERY - 1;
    let (subject_key, subjects) = if search {
        (
            Vec::new(),
            (0..PAGE)
                .map(|k| subject(person_of(i * PAGE + k, people)))
                .collect(),
        )
    } else {
        let s = subject(person_of(i, people));
        (s.clone(), vec![s])
    };
    ExchangeRecord {
        time_micros: 1_764_000_000_000_000 + i as i64 * 1000,
        request_id: format!("19ab3c4d5e6-{i:08x}"),
        kind: "query".into(),
        consumer: ["civil-affairs", "taxation", "market-regulation"][(i % 3) as usize].into(),
        provider: "public-security".into(),
        resource: "public-security/household-register".into(),
        purpose: "婚姻登记 marriage registration".into(),
        fields: ["name", "gender", "birth_date", "marital_status"]
            .map(String::from)
            .to_vec(),
        outcome: "answered".into(),
        latency_micros: 1800,
        answer_digest: vec![0xab; 32],
        subject: subject_key,
        subject_period: "2026-11".into(),
        grant_id: "P-1".into(),
        record_count: if search { PAGE as u32 } else { 1 },
        selected_by: if search {
            vec!["marital_status".into()]
        } else {
            vec!["id_number".into()]
        },
        subjects,
        ..Default::default()
    }
    .encode_to_vec()
}

/// Appends entries until the log holds `size`, with many writers so that group commit makes
/// it quick.
async fn fill(log: &Log, size: u64, people: u64) {
    let from = log.size();
    let writers = 256u64;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut i = from + w;
                while i < size {
                    if log.append(entry(i, people)).await.is_err() {
                        break;
                    }
                    i += writers;
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

/// The broker's work for one report: the index lookup, then each entry read from the log.
fn report(index: &Index, log: &Log, person: u64) -> anyhow::Result<usize> {
    let mac: [u8; 32] = subject(person)
        .try_into()
        .map_err(|_| anyhow::anyhow!("a subject is 32 bytes"))?;
    let found = index.by_subject(&mac)?;
    for &i in &found {
        let entry = log.read(i, i + 1)?;
        let data = &entry
            .first()
            .context("an indexed entry is missing from the log")?
            .1;
        ExchangeRecord::decode(data.as_slice()).context("an entry does not decode")?;
    }
    Ok(found.len())
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("huitong-bench-subjects-{}", std::process::id()))
    });
    let result = measure(&dir, &args).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(dir: &Path, args: &Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut sizes = args.sizes.clone();
    sizes.sort_unstable();
    println!("## Subject reports on {}\n", dir.display());
    println!(
        "Each log size is its own log: key lookups of one person each and, every {SEARCH_EVERY}th entry, a {PAGE}-record search page; about {ENTRIES_PER_PERSON} lookups per person. A report is the index lookup plus reading every entry found.\n"
    );
    println!(
        "| log entries | fill + index, s | entries per report (mean) | report, ms (median) | p99, ms | ratio to the smallest (median) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut first = None;
    for size in sizes {
        let d = dir.join(format!("log-{size}"));
        let started = Instant::now();
        let log = super::open(&d).await?;
        let people = (size / ENTRIES_PER_PERSON).max(1);
        fill(&log, size, people).await;
        let (index, log) = {
            let l = log.clone();
            tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let index = Index::open(l.dir())?;
                index.catch_up(&l)?;
                Ok((index, l))
            })
            .await??
        };
        let built = started.elapsed().as_secs_f64();
        let n = args.reports.max(1);
        let (times, found) = {
            let l = log.clone();
            tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let mut times = Vec::with_capacity(n as usize);
                let mut found = 0usize;
                for k in 0..n {
                    let person = person_of(k * 7919 + 13, people);
                    let t = Instant::now();
                    found += report(&index, &l, person)?;
                    times.push(t.elapsed());
                }
                times.sort_unstable();
                Ok((times, found))
            })
            .await??
        };
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let median = ms(times[times.len() / 2]);
        let p99 = ms(times[(times.len() * 99 / 100).min(times.len() - 1)]);
        let ratio = median / *first.get_or_insert(median);
        println!(
            "| {size} | {built:.1} | {:.1} | {median:.2} | {p99:.2} | {ratio:.2} |",
            found as f64 / n as f64
        );
        log.close().await;
        let _ = std::fs::remove_dir_all(&d);
    }
    Ok(())
}
