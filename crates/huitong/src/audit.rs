//! `huitong audit`: read, filter and verify the exchange log.
//!
//! `verify` works offline on an exported bundle or a data directory; every other subcommand
//! asks a broker.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use huitong_audit::{bundle, merkle, note, record, store};
use huitong_client::{Audit, ListEntriesRequest, LogEntry};
use prost::Message;

use crate::identity::IdentityArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

/// Where the broker is and who we are.
#[derive(Debug, clap::Args)]
pub(crate) struct Conn {
    /// The broker's address.
    #[arg(long, env = "HUITONG_BROKER", default_value = crate::query::DEFAULT_BROKER)]
    broker: String,
    #[command(flatten)]
    identity: IdentityArgs,
}

impl Conn {
    pub(crate) async fn audit(&self) -> anyhow::Result<Audit> {
        Ok(Audit::connect(&self.broker, &self.identity.files()).await?)
    }
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print the latest signed checkpoint; with --log-key, verify its signature.
    Checkpoint {
        #[command(flatten)]
        conn: Conn,
        /// The log's verifier key (`<name>+<id>+<key>`), obtained out of band.
        #[arg(long)]
        log_key: Option<String>,
    },
    /// List entries, filtered (auditor certificate).
    Entries {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        filter: Filter,
        /// One JSON object per line.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// CSV with a header row.
        #[arg(long)]
        csv: bool,
    },
    /// Who accessed this person's records, when, for what purpose, which fields (auditor).
    Subject {
        #[command(flatten)]
        conn: Conn,
        /// The person's identifier, e.g. a citizen ID number. Without --key-field it is looked
        /// for in every resource keyed by one field: key lookups, searches and deliveries.
        id: String,
        /// Only this resource.
        #[arg(long)]
        resource: Option<String>,
        /// The key field of --resource the identifier is a value of (for a resource whose key
        /// field is not its only one, give the resource and this).
        #[arg(long, requires = "resource")]
        key_field: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Export a self-contained bundle (entries, hashes, signed checkpoint) for offline checks.
    Export {
        #[command(flatten)]
        conn: Conn,
        /// The directory to write.
        #[arg(long)]
        out: PathBuf,
        /// An earlier checkpoint note you trust; the bundle then proves the log only grew since.
        #[arg(long)]
        previous: Option<PathBuf>,
    },
    /// Verify offline, without the broker: an exported bundle, or a broker's data directory
    /// (or its `log/`) as the broker checks it on start-up. Read-only: it writes nothing, so
    /// it is safe on a live or a damaged data directory.
    Verify {
        /// The bundle directory, or the broker's data directory.
        dir: PathBuf,
        /// The log's verifier key (`<name>+<id>+<key>`), obtained out of band. Required for a
        /// bundle; for a data directory, the key in its `log.key` is used when it is not given,
        /// which cannot show that the key itself was not replaced.
        #[arg(long)]
        log_key: Option<String>,
    },
    #[command(flatten)]
    Summaries(crate::audit_stats::Command),
    /// Poll checkpoints and check that each extends the last one seen; alarm if not.
    Watch {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        log_key: String,
        /// Time between polls, e.g. 10s.
        #[arg(long, default_value = "10s", value_parser = crate::query::duration)]
        interval: Duration,
        /// Stop after this many checkpoints (0: run until stopped).
        #[arg(long, default_value_t = 0)]
        count: u64,
        /// Remember the last checkpoint seen in this file, across runs.
        #[arg(long)]
        state: Option<PathBuf>,
    },
}

#[derive(Debug, Default, clap::Args)]
pub(crate) struct Filter {
    /// First index.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// End index (exclusive); default the end of the log.
    #[arg(long, default_value_t = 0)]
    end: u64,
    #[arg(long)]
    consumer: Option<String>,
    #[arg(long)]
    provider: Option<String>,
    #[arg(long)]
    resource: Option<String>,
    /// answered, not_found, refused, failed (exchanges) or done (governance acts).
    #[arg(long)]
    outcome: Option<String>,
    /// Only entries of this kind: query, delivery, or a governance act such as
    /// request_approved, request_denied, grant_revoked, policy_reloaded, certificate_revoked.
    #[arg(long)]
    kind: Option<String>,
    /// Only entries of this acting official (the id the consumer department assigned; needs
    /// --consumer). Matched through its HMAC: the id itself is never stored.
    #[arg(long, requires = "consumer")]
    official: Option<String>,
    /// Only entries of this case reference.
    #[arg(long = "case")]
    case_ref: Option<String>,
    /// From this time on: YYYY-MM-DD or RFC 3339.
    #[arg(long, value_parser = time_micros)]
    since: Option<i64>,
    /// Before this time: YYYY-MM-DD or RFC 3339.
    #[arg(long, value_parser = time_micros)]
    until: Option<i64>,
    /// At most this many entries.
    #[arg(long, default_value_t = 1000)]
    limit: u32,
}

impl Filter {
    /// Up to `limit` entries from index `start` on, in a time range, of one consumer or all.
    pub(crate) fn period(
        start: u64,
        since: Option<i64>,
        until: Option<i64>,
        consumer: Option<String>,
        limit: u32,
    ) -> Filter {
        Filter {
            start,
            since,
            until,
            consumer,
            limit,
            ..Filter::default()
        }
    }
}

/// A time as given on the command line, in Unix microseconds.
pub(crate) fn time_micros(s: &str) -> Result<i64, String> {
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_owned()
    };
    humantime::parse_rfc3339_weak(&full)
        .map(record::micros)
        .map_err(|_| format!("{s:?} is not a date (YYYY-MM-DD) or an RFC 3339 time"))
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Checkpoint { conn, log_key } => {
            let cp = conn.audit().await?.checkpoint().await?;
            print!("{}", cp.note);
            if let Some(key) = log_key {
                let body = verifier(&key)?
                    .verify(&cp.note)
                    .context("the checkpoint does NOT verify with the given log key")?;
                eprintln!(
                    "verified: {} entries, signed by {}",
                    body.size,
                    key_name(&key)
                );
            } else {
                eprintln!(
                    "log key (check it against one you obtained out of band): {}",
                    cp.verifier_key
                );
            }
        }
        Command::Entries {
            conn,
            filter,
            json,
            csv,
        } => {
            let entries = all_entries(&mut conn.audit().await?, &filter).await?;
            if csv {
                println!("{}", record::CSV_HEADER);
            }
            for e in &entries {
                let r = e.record.clone().unwrap_or_default();
                if json {
                    println!("{}", record::to_json(e.index, &e.leaf_hash, &r));
                } else if csv {
                    println!("{}", record::to_csv_row(e.index, &r));
                } else {
                    println!(
                        "{:>7}  {}  {:<10} {:<20} → {:<45} {:<9} {}",
                        e.index,
                        &record::format_micros(r.time_micros)[..19],
                        r.outcome,
                        r.consumer,
                        r.resource,
                        r.fields.join(","),
                        r.purpose
                    );
                }
            }
        }
        Command::Subject {
            conn,
            id,
            resource,
            key_field,
            json,
        } => {
            let mut audit = conn.audit().await?;
            let report = match (&resource, &key_field) {
                (Some(res), Some(field)) => audit.subject_report(res, &[(field, &id)]).await?,
                _ => audit.person_report(&id, resource.as_deref()).await?,
            };
            if json {
                for e in &report.entries {
                    let r = e.record.clone().unwrap_or_default();
                    println!("{}", record::to_json(e.index, &e.leaf_hash, &r));
                }
            } else {
                println!(
                    "{} recorded accesses to this person's records in {}:",
                    report.entries.len(),
                    report.resources.join(", ")
                );
                for e in &report.entries {
                    let r = e.record.clone().unwrap_or_default();
                    let how = if r.kind == record::kind::DELIVERY {
                        "delivery"
                    } else if r.selected_by.is_empty() || r.subject.is_empty() {
                        "search"
                    } else {
                        "lookup"
                    };
                    println!(
                        "  {}  {:<20} {:<8} {:<9} {}  purpose: {}  official: {}  case: {}  fields: {}  (entry {})",
                        &record::format_micros(r.time_micros)[..19],
                        r.consumer,
                        how,
                        r.outcome,
                        r.resource,
                        r.purpose,
                        if r.official.is_empty() {
                            "-".to_owned()
                        } else {
                            merkle::hex(&r.official[..6])
                        },
                        if r.case_ref.is_empty() {
                            "-"
                        } else {
                            &r.case_ref
                        },
                        if r.fields.is_empty() {
                            "-".to_owned()
                        } else {
                            r.fields.join(", ")
                        },
                        e.index
                    );
                }
            }
            if !report.unlinkable_periods.is_empty() {
                println!(
                    "Accesses in {} can no longer be linked to a person: their subject keys were destroyed under the retention policy.",
                    report.unlinkable_periods.join(", ")
                );
            }
        }
        Command::Export {
            conn,
            out,
            previous,
        } => export(&mut conn.audit().await?, &out, previous.as_deref()).await?,
        Command::Verify { dir, log_key } => return verify(&dir, log_key.as_deref()),
        Command::Summaries(c) => return crate::audit_stats::run(c).await,
        Command::Watch {
            conn,
            log_key,
            interval,
            count,
            state,
        } => return watch(&mut conn.audit().await?, &log_key, interval, count, state).await,
    }
    Ok(ExitCode::SUCCESS)
}

fn verifier(key: &str) -> anyhow::Result<note::Verifier> {
    note::Verifier::from_vkey(key).map_err(|e| anyhow::anyhow!("--log-key: {e}"))
}

/// `huitong audit verify`: a bundle, or a data directory's log, checked without writing.
fn verify(dir: &Path, log_key: Option<&str>) -> anyhow::Result<ExitCode> {
    if dir.join(bundle::CHECKPOINT).exists() {
        let Some(log_key) = log_key else {
            bail!(
                "{} is an export bundle: give the log's verifier key, obtained out of band, with --log-key",
                dir.display()
            );
        };
        return Ok(match bundle::verify(dir, log_key) {
            Ok(v) => {
                println!(
                    "OK: {} entries verified against the checkpoint signed by {} (root {})",
                    v.entries,
                    key_name(log_key),
                    merkle::hex(&v.checkpoint.root)
                );
                if let Some(old) = v.extends {
                    println!("OK: the log extends the earlier checkpoint of {old} entries");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("FAILED: {e}");
                ExitCode::FAILURE
            }
        });
    }
    // A data directory holds the log in `log/`; the log directory itself is accepted too.
    let log_dir = if dir.join(store::ENTRIES_FILE).exists() {
        dir.to_owned()
    } else if dir.join("log").join(store::ENTRIES_FILE).exists() {
        dir.join("log")
    } else {
        bail!(
            "{} is neither an export bundle ({} missing) nor a broker data directory (no log/{} in it)",
            dir.display(),
            bundle::CHECKPOINT,
            store::ENTRIES_FILE
        );
    };
    let key = match log_key {
        Some(k) => k.to_owned(),
        None => {
            let path = log_dir.join(store::KEY_FILE);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "reading {}; or give the log's verifier key with --log-key",
                    path.display()
                )
            })?;
            let key = note::Signer::from_skey_string(text.trim())
                .map_err(|e| {
                    anyhow::anyhow!("{} is not a usable signing key: {e}", path.display())
                })?
                .verifier_key();
            println!(
                "using the key in {} ({key}); give --log-key with the key you obtained out of band to rule out a replaced key",
                path.display()
            );
            key
        }
    };
    Ok(match store::verify_dir(&log_dir, &key) {
        Ok(r) => {
            match r.checkpoint {
                Some((size, root)) => println!(
                    "OK: {} entries in {}; the first {size} match the checkpoint signed by {} (root {})",
                    r.entries,
                    log_dir.display(),
                    key_name(&key),
                    merkle::hex(&root)
                ),
                None => println!(
                    "OK: {} entries in {}, all whole and matching index.bin; no checkpoint was signed yet",
                    r.entries,
                    log_dir.display()
                ),
            }
            if r.torn_tail_bytes > 0 {
                println!(
                    "note: {} bytes after the last whole entry are a torn write (no index record or checkpoint covers them); the broker cuts them on start-up",
                    r.torn_tail_bytes
                );
            }
            if r.unindexed > 0 {
                println!(
                    "note: {} entries have no index.bin record yet (a crash before it was written); the broker recomputes them on start-up",
                    r.unindexed
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("FAILED: {e}");
            ExitCode::FAILURE
        }
    })
}

fn key_name(key: &str) -> &str {
    key.split('+').next().unwrap_or(key)
}

fn hash(b: &[u8]) -> anyhow::Result<merkle::Hash> {
    b.try_into()
        .context("the broker sent a hash that is not 32 bytes")
}

/// Pages through ListEntries until the filter's limit or the end.
pub(crate) async fn all_entries(audit: &mut Audit, f: &Filter) -> anyhow::Result<Vec<LogEntry>> {
    let mut out = Vec::new();
    let mut start = f.start;
    loop {
        let resp = audit
            .entries(ListEntriesRequest {
                start,
                end: f.end,
                consumer: f.consumer.clone().unwrap_or_default(),
                provider: f.provider.clone().unwrap_or_default(),
                resource: f.resource.clone().unwrap_or_default(),
                outcome: f.outcome.clone().unwrap_or_default(),
                kind: f.kind.clone().unwrap_or_default(),
                official: f.official.clone().unwrap_or_default(),
                case_ref: f.case_ref.clone().unwrap_or_default(),
                since_micros: f.since.unwrap_or(0),
                until_micros: f.until.unwrap_or(0),
                limit: f.limit.saturating_sub(out.len() as u32),
            })
            .await?;
        out.extend(resp.entries);
        if resp.next_start == 0 || out.len() as u32 >= f.limit {
            break;
        }
        start = resp.next_start;
    }
    Ok(out)
}

async fn export(
    audit: &mut Audit,
    out: &std::path::Path,
    previous: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let cp = audit.checkpoint().await?;
    let size = cp.tree_size;
    let mut entries: Vec<Vec<u8>> = Vec::with_capacity(size as usize);
    let mut hashes: Vec<merkle::Hash> = Vec::with_capacity(size as usize);
    let mut start = 0;
    while start < size {
        let resp = audit
            .entries(ListEntriesRequest {
                start,
                end: size,
                limit: 10_000,
                ..Default::default()
            })
            .await?;
        if resp.entries.is_empty() {
            bail!(
                "the broker returned no entries from index {start} on, below the checkpoint size {size}"
            );
        }
        for e in resp.entries {
            if e.index != start {
                bail!("the broker skipped index {start}");
            }
            hashes.push(hash(&e.leaf_hash)?);
            entries.push(e.data);
            start += 1;
        }
    }
    let consistency = match previous {
        None => None,
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let body_end = text
                .find("\n\n")
                .with_context(|| format!("{} is not a signed note", p.display()))?;
            let old = note::CheckpointBody::parse(&text[..body_end + 1])
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            let proof = audit.consistency_proof(old.size, size).await?;
            Some(bundle::Consistency {
                old_size: old.size,
                old_root: old.root,
                proof: proof
                    .hashes
                    .iter()
                    .map(|h| hash(h))
                    .collect::<anyhow::Result<_>>()?,
            })
        }
    };
    bundle::write(
        out,
        &cp.note,
        &entries,
        &hashes,
        consistency.as_ref(),
        |i, data| {
            let r = huitong_proto::v1::ExchangeRecord::decode(data).unwrap_or_default();
            record::to_json(i, &hashes[i as usize], &r).to_string()
        },
    )?;
    println!(
        "exported {size} entries and the checkpoint to {}; verify with: huitong audit verify {} --log-key '{}'",
        out.display(),
        out.display(),
        cp.verifier_key
    );
    Ok(())
}

async fn watch(
    audit: &mut Audit,
    log_key: &str,
    interval: Duration,
    count: u64,
    state: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let verifier = verifier(log_key)?;
    let mut last: Option<note::CheckpointBody> = match &state {
        Some(p) if p.exists() => {
            let text = std::fs::read_to_string(p)?;
            Some(verifier.verify(&text).map_err(|e| {
                anyhow::anyhow!("{}: the saved checkpoint does not verify: {e}", p.display())
            })?)
        }
        _ => None,
    };
    let mut seen = 0u64;
    loop {
        let cp = audit.checkpoint().await?;
        let body = match verifier.verify(&cp.note) {
            Ok(b) => b,
            Err(e) => {
                println!("ALARM: the broker's checkpoint does not verify with the log key: {e}");
                return Ok(ExitCode::FAILURE);
            }
        };
        if let Some(old) = &last {
            if body.size < old.size {
                println!(
                    "ALARM: the log shrank from {} to {} entries",
                    old.size, body.size
                );
                return Ok(ExitCode::FAILURE);
            }
            let proof = audit.consistency_proof(old.size, body.size).await?;
            let hashes = proof
                .hashes
                .iter()
                .map(|h| hash(h))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if let Err(e) =
                merkle::verify_consistency(old.size, body.size, &old.root, &body.root, &hashes)
            {
                println!(
                    "ALARM: the checkpoint of {} entries does not extend the one of {}: {e}",
                    body.size, old.size
                );
                return Ok(ExitCode::FAILURE);
            }
            println!("ok: {} entries, consistent with {}", body.size, old.size);
        } else {
            println!("ok: {} entries (first checkpoint seen)", body.size);
        }
        if let Some(p) = &state {
            std::fs::write(p, &cp.note).with_context(|| format!("writing {}", p.display()))?;
        }
        last = Some(body);
        seen += 1;
        if count != 0 && seen >= count {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(interval).await;
    }
}
