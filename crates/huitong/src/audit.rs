//! `huitong audit`: read, filter and verify the exchange log.
//!
//! `verify` works offline on an exported bundle or a data directory; every other subcommand
//! asks a broker. Times are shown in the display zone (`--zone`, `HUITONG_DISPLAY_ZONE`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use huitong_audit::{bundle, merkle, note, record, store};
use huitong_client::{Audit, ListEntriesRequest, LogEntry, Receipt, ReceiptError};

use crate::identity::IdentityArgs;
use crate::out::{out, outln};
use crate::zone::{TimeArg, Zone};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The time zone times are shown in, and plain dates and times without an offset are read
    /// in: an IANA name such as Asia/Shanghai (the tz database is built in).
    #[arg(
        long,
        global = true,
        env = "HUITONG_DISPLAY_ZONE",
        value_parser = Zone::parse,
        default_value = "UTC"
    )]
    zone: Zone,
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
    /// List entries, filtered (auditor certificate). A listing cut by --limit ends with how to
    /// continue: a closing line (text), a last `{"truncated":true,...}` line (JSON), a note on
    /// stderr (CSV).
    Entries {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        filter: Filter,
        /// One JSON object per line.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// CSV with a header row (columns in docs/auditor-guide.md).
        #[arg(long)]
        csv: bool,
    },
    /// Check a receipt offline against the signed log: fetch the checkpoint and the inclusion
    /// proof, verify the checkpoint with the log key and the proof against it (any certificate
    /// of the exchange; a consumer checks its own answers).
    Receipt {
        #[command(flatten)]
        conn: Conn,
        /// The log's verifier key (`<name>+<id>+<key>`), obtained out of band.
        #[arg(long)]
        log_key: String,
        /// What `huitong query` printed, saved to a file (`-` for stdin): every receipt in it
        /// is checked.
        #[arg(long, conflicts_with_all = ["index", "leaf_hash"], required_unless_present = "index")]
        from: Option<PathBuf>,
        /// The receipt's log index.
        #[arg(long, requires = "leaf_hash")]
        index: Option<u64>,
        /// The receipt's leaf hash: 64 hex digits.
        #[arg(long, requires = "index")]
        leaf_hash: Option<String>,
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
    /// From this time on: a date (midnight in the display zone) or an RFC 3339 time with any
    /// offset, e.g. 2026-12-02T00:00:00+08:00.
    #[arg(long, value_parser = TimeArg::parse)]
    since: Option<TimeArg>,
    /// Before this time, in the same forms as --since.
    #[arg(long, value_parser = TimeArg::parse)]
    until: Option<TimeArg>,
    /// At most this many entries; a cut listing says where to continue (--start).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
}

/// A listing that stopped at `--limit` while more entries match.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cut {
    limit: u32,
    /// The `--start` that continues the listing.
    next_start: u64,
}

impl Cut {
    fn sentence(&self) -> String {
        format!(
            "stopped at --limit {}: more entries match; continue with --start {} and the same filters",
            self.limit, self.next_start
        )
    }
}

impl Filter {
    /// Up to `limit` entries from index `start` on, in a time range (Unix microseconds), of one
    /// consumer or all.
    pub(crate) fn period(
        start: u64,
        since: Option<i64>,
        until: Option<i64>,
        consumer: Option<String>,
        limit: u32,
    ) -> Filter {
        Filter {
            start,
            since: since.map(TimeArg::Instant),
            until: until.map(TimeArg::Instant),
            consumer,
            limit,
            ..Filter::default()
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let zone = args.zone;
    match args.command {
        Command::Checkpoint { conn, log_key } => {
            let cp = conn.audit().await?.checkpoint().await?;
            out!("{}", cp.note)?;
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
            let (entries, cut) = all_entries(&mut conn.audit().await?, &filter, &zone).await?;
            let format = if json {
                Format::Json
            } else if csv {
                Format::Csv
            } else {
                Format::Text
            };
            print_entries(&entries, format, &zone, cut)?;
        }
        Command::Receipt {
            conn,
            log_key,
            from,
            index,
            leaf_hash,
        } => return receipt(conn, &log_key, from.as_deref(), index, leaf_hash.as_deref()).await,
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
                    outln!("{}", entry_json(e, &zone))?;
                }
            } else {
                outln!(
                    "{} recorded accesses to this person's records in {}:",
                    report.entries.len(),
                    report.resources.join(", ")
                )?;
                for e in &report.entries {
                    let r = e.record.clone().unwrap_or_default();
                    let how = if r.kind == record::kind::DELIVERY {
                        "delivery"
                    } else if r.selected_by.is_empty() || r.subject.is_empty() {
                        "search"
                    } else {
                        "lookup"
                    };
                    let mut line = format!(
                        "  {}  {:<20} {:<8} {:<9} {}  purpose: {}  official: {}  case: {}  fields: {}",
                        zone.seconds(r.time_micros),
                        r.consumer,
                        how,
                        r.outcome,
                        r.resource,
                        r.purpose,
                        official_short(&r.official),
                        or_dash(&r.case_ref),
                        list_or_dash(&r.fields, ", "),
                    );
                    if !r.masked_fields.is_empty() {
                        line.push_str(&format!("  masked: {}", r.masked_fields.join(", ")));
                    }
                    if !r.refusal.is_empty() {
                        line.push_str(&format!("  reason: {}", r.refusal));
                    }
                    outln!("{line}  (entry {})", e.index)?;
                }
            }
            if !report.unlinkable_periods.is_empty() {
                outln!(
                    "Accesses in {} can no longer be linked to a person: their subject keys were destroyed under the retention policy.",
                    report.unlinkable_periods.join(", ")
                )?;
            }
        }
        Command::Export {
            conn,
            out,
            previous,
        } => export(&mut conn.audit().await?, &out, previous.as_deref()).await?,
        Command::Verify { dir, log_key } => return verify(&dir, log_key.as_deref()),
        Command::Summaries(c) => return crate::audit_stats::run(c, &zone).await,
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
                outln!(
                    "OK: {} entries verified against the checkpoint signed by {} (root {})",
                    v.entries,
                    key_name(log_key),
                    merkle::hex(&v.checkpoint.root)
                )?;
                if let Some(old) = v.extends {
                    outln!("OK: the log extends the earlier checkpoint of {old} entries")?;
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                outln!("FAILED: {e}")?;
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
            outln!(
                "using the key in {} ({key}); give --log-key with the key you obtained out of band to rule out a replaced key",
                path.display()
            )?;
            key
        }
    };
    Ok(match store::verify_dir(&log_dir, &key) {
        Ok(r) => {
            match r.checkpoint {
                Some((size, root)) => outln!(
                    "OK: {} entries in {}; the first {size} match the checkpoint signed by {} (root {})",
                    r.entries,
                    log_dir.display(),
                    key_name(&key),
                    merkle::hex(&root)
                )?,
                None => outln!(
                    "OK: {} entries in {}, all whole and matching index.bin; no checkpoint was signed yet",
                    r.entries,
                    log_dir.display()
                )?,
            }
            if r.torn_tail_bytes > 0 {
                outln!(
                    "note: {} bytes after the last whole entry are a torn write (no index record or checkpoint covers them); the broker cuts them on start-up",
                    r.torn_tail_bytes
                )?;
            }
            if r.unindexed > 0 {
                outln!(
                    "note: {} entries have no index.bin record yet (a crash before it was written); the broker recomputes them on start-up",
                    r.unindexed
                )?;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            outln!("FAILED: {e}")?;
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

/// Pages through ListEntries until the filter's limit or the end; says whether the limit cut
/// the listing short. The broker looks one entry past each page's limit, so a `next_start` when
/// the limit is reached means that more entries match, not merely that more were scanned.
pub(crate) async fn all_entries(
    audit: &mut Audit,
    f: &Filter,
    zone: &Zone,
) -> anyhow::Result<(Vec<LogEntry>, Option<Cut>)> {
    let since = f
        .since
        .map(|t| t.micros(zone))
        .transpose()
        .context("--since")?;
    let until = f
        .until
        .map(|t| t.micros(zone))
        .transpose()
        .context("--until")?;
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
                since_micros: since.unwrap_or(0),
                until_micros: until.unwrap_or(0),
                limit: f.limit.saturating_sub(out.len() as u32),
            })
            .await?;
        out.extend(resp.entries);
        if resp.next_start == 0 {
            return Ok((out, None));
        }
        if out.len() as u32 >= f.limit {
            let cut = Cut {
                limit: f.limit,
                next_start: resp.next_start,
            };
            return Ok((out, Some(cut)));
        }
        start = resp.next_start;
    }
}

#[derive(Debug, Clone, Copy)]
enum Format {
    Text,
    Json,
    Csv,
}

/// Prints a listing of entries and, if `--limit` cut it, how to continue: a closing line in
/// text; a last JSON line without an `index` (so it cannot pass for an entry); on stderr for
/// CSV, since a comment line is not CSV and spreadsheets and CSV libraries would read it as a
/// row.
fn print_entries(
    entries: &[LogEntry],
    format: Format,
    zone: &Zone,
    cut: Option<Cut>,
) -> anyhow::Result<()> {
    if let Format::Csv = format {
        outln!("{}", record::CSV_HEADER)?;
    }
    for e in entries {
        match format {
            Format::Json => outln!("{}", entry_json(e, zone))?,
            Format::Csv => {
                let r = e.record.clone().unwrap_or_default();
                outln!(
                    "{}",
                    record::to_csv_row_at(e.index, &r, &zone.micros(r.time_micros))
                )?;
            }
            Format::Text => outln!("{}", entry_text(e, zone))?,
        }
    }
    if let Some(cut) = cut {
        match format {
            Format::Text => outln!("-- {}", cut.sentence())?,
            Format::Json => outln!(
                "{}",
                serde_json::json!({
                    "truncated": true,
                    "limit": cut.limit,
                    "next_start": cut.next_start,
                    "note": cut.sentence(),
                })
            )?,
            Format::Csv => eprintln!("note: {}", cut.sentence()),
        }
    }
    Ok(())
}

/// One entry as JSON ([`record::to_json`]), its time in the display zone.
fn entry_json(e: &LogEntry, zone: &Zone) -> serde_json::Value {
    let r = e.record.clone().unwrap_or_default();
    let mut v = record::to_json(e.index, &e.leaf_hash, &r);
    v["time"] = zone.micros(r.time_micros).into();
    v
}

/// One entry as a line of text: index, time, kind, outcome, who and what, then labelled parts.
fn entry_text(e: &LogEntry, zone: &Zone) -> String {
    let r = e.record.clone().unwrap_or_default();
    let who = [&r.consumer, &r.actor]
        .into_iter()
        .find(|s| !s.is_empty())
        .map_or("-", |s| s.as_str());
    let mut line = format!(
        "{:>7}  {}  {:<19} {:<10} {who} → {}",
        e.index,
        zone.seconds(r.time_micros),
        or_dash(&r.kind),
        or_dash(&r.outcome),
        or_dash(&r.resource),
    );
    let mut part = |label: &str, value: &str| {
        if !value.is_empty() {
            line.push_str(&format!("  {label}: {value}"));
        }
    };
    if record::kind::is_exchange(&r.kind) || r.kind.is_empty() {
        part("fields", &list_or_dash(&r.fields, ","));
        part("asked", &list_or_dash(&r.fields_asked, ","));
        part("masked", &list_or_dash(&r.masked_fields, ","));
        part("purpose", or_dash(&r.purpose));
        part("official", &official_short(&r.official));
        part("case", or_dash(&r.case_ref));
        part("subjects", &r.subjects.len().to_string());
        part("grant", &r.grant_id);
        part("reason", &r.refusal);
    } else {
        if r.actor != who {
            part("actor", &r.actor);
        }
        part("request", &r.access_request);
        part("grant", &r.grant_id);
        part("fields", &r.fields.join(","));
        part("purpose", &r.purpose);
        part("reason", &r.reason);
        part("refusal", &r.refusal);
        part("detail", &r.detail);
        part("digest", &short_hex(&r.digest));
    }
    line
}

/// The first 6 bytes of an official's HMAC: enough to tell officials apart in a listing; the
/// whole one is in JSON and CSV.
fn official_short(hmac: &[u8]) -> String {
    if hmac.is_empty() {
        "-".to_owned()
    } else {
        short_hex(hmac)
    }
}

fn short_hex(b: &[u8]) -> String {
    merkle::hex(b.get(..6).unwrap_or(b))
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

fn list_or_dash(v: &[String], sep: &str) -> String {
    if v.is_empty() {
        "-".to_owned()
    } else {
        v.join(sep)
    }
}

/// `huitong audit receipt`: every receipt given is confirmed against a checkpoint verified
/// with the log key, by the SDK's [`Audit::confirm`] (the one inclusion check, in
/// `huitong_audit::merkle`).
async fn receipt(
    conn: Conn,
    log_key: &str,
    from: Option<&Path>,
    index: Option<u64>,
    leaf_hash: Option<&str>,
) -> anyhow::Result<ExitCode> {
    // A bad key is the caller's mistake, not a failed receipt.
    verifier(log_key)?;
    let receipts = match (from, index, leaf_hash) {
        (Some(path), _, _) => receipts_from(path)?,
        (None, Some(index), Some(hex)) => vec![Receipt {
            index,
            leaf_hash: unhex(hex).context("--leaf-hash")?,
        }],
        _ => bail!("give --from FILE, or --index and --leaf-hash"),
    };
    let mut audit = conn.audit().await?;
    let mut failed = 0;
    for r in &receipts {
        match audit.confirm(r, log_key).await {
            Ok(size) => outln!(
                "OK: entry {} (leaf {}) is in the log of {size} entries signed by {}",
                r.index,
                merkle::hex(&r.leaf_hash),
                key_name(log_key)
            )?,
            Err(ReceiptError::Key(e)) => bail!("--log-key: {e}"),
            Err(e) => {
                failed += 1;
                outln!("FAILED: entry {}: {e}", r.index)?;
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The receipts in what `huitong query` printed (its `receipts` list).
fn receipts_from(path: &Path) -> anyhow::Result<Vec<Receipt>> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let what = || format!("{}", path.display());
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON; give what `huitong query` printed", what()))?;
    let list = json["receipts"].as_array().with_context(|| {
        format!(
            "{} has no \"receipts\" list; give what `huitong query` printed, or --index and --leaf-hash",
            what()
        )
    })?;
    if list.is_empty() {
        bail!("{} holds no receipts", what());
    }
    list.iter()
        .enumerate()
        .map(|(i, r)| {
            let index = r["index"]
                .as_u64()
                .with_context(|| format!("{}: receipts[{i}] has no \"index\" number", what()))?;
            let hex = r["leaf_hash"]
                .as_str()
                .with_context(|| format!("{}: receipts[{i}] has no \"leaf_hash\" text", what()))?;
            let leaf_hash = unhex(hex).with_context(|| format!("{}: receipts[{i}]", what()))?;
            Ok(Receipt { index, leaf_hash })
        })
        .collect()
}

/// A leaf hash in hex: exactly 32 bytes.
fn unhex(s: &str) -> anyhow::Result<Vec<u8>> {
    let s = s.trim();
    if s.len() != 64 {
        bail!(
            "{s:?} is not a leaf hash: give its 64 hex digits ({} given)",
            s.len()
        );
    }
    (0..32)
        .map(|i| {
            s.get(2 * i..2 * i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .with_context(|| format!("{s:?} is not a leaf hash: only hex digits 0-9 and a-f"))
        })
        .collect()
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
    bundle::write(out, &cp.note, &entries, &hashes, consistency.as_ref())?;
    outln!(
        "exported {size} entries and the checkpoint to {}; verify with: huitong audit verify {} --log-key '{}'",
        out.display(),
        out.display(),
        cp.verifier_key
    )?;
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
                outln!("ALARM: the broker's checkpoint does not verify with the log key: {e}")?;
                return Ok(ExitCode::FAILURE);
            }
        };
        if let Some(old) = &last {
            if body.size < old.size {
                outln!(
                    "ALARM: the log shrank from {} to {} entries",
                    old.size,
                    body.size
                )?;
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
                outln!(
                    "ALARM: the checkpoint of {} entries does not extend the one of {}: {e}",
                    body.size,
                    old.size
                )?;
                return Ok(ExitCode::FAILURE);
            }
            outln!("ok: {} entries, consistent with {}", body.size, old.size)?;
        } else {
            outln!("ok: {} entries (first checkpoint seen)", body.size)?;
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
