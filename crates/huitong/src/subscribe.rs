//! `huitong subscribe`: a resource's change events as JSON lines, for scripts and for
//! integrators who would otherwise write a gRPC client to get them.
//!
//! Each event is acknowledged to the broker after its line is written, so a restarted
//! subscription resumes where the last one stopped. On stdout that is exactly once across a
//! SIGTERM or Ctrl-C (the last acknowledgement is sent before exit) and at least once across a
//! crash. With `--out FILE`, exactly once across a crash too: the file's last complete line says
//! where to resume, and a line cut off by the crash is removed before anything is appended.

use std::fs::OpenOptions;
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use huitong_client::{Client, Subscribe};
use huitong_proto::v1::SubscribeResponse;
use huitong_proto::value::format_timestamp;
use serde_json::{Map, json};

use crate::identity::IdentityArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The broker's address.
    #[arg(long, env = "HUITONG_BROKER", default_value = crate::query::DEFAULT_BROKER)]
    broker: String,
    #[command(flatten)]
    identity: IdentityArgs,
    /// The resource, as <department>/<name>.
    resource: String,
    /// The fields to release with each event, comma-separated; include the key fields to learn
    /// which record changed.
    #[arg(long, value_delimiter = ',', required = true)]
    fields: Vec<String>,
    /// Why the data is needed; the grant must name it.
    #[arg(long)]
    purpose: String,
    /// The subscription's name: its position is kept by the broker per name.
    #[arg(long, default_value = "default")]
    name: String,
    /// The official acting for your department (recorded only as an HMAC).
    #[arg(long, env = "HUITONG_OFFICIAL")]
    official: Option<String>,
    /// The case the deliveries are for.
    #[arg(long = "case")]
    case_ref: Option<String>,
    /// Start with the oldest event the broker retains, not where the subscription stopped.
    #[arg(long, conflicts_with = "after")]
    from_start: bool,
    /// Start after this event's sequence number.
    #[arg(long)]
    after: Option<u64>,
    /// Append the lines to FILE instead of stdout, and resume after its last line.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Stop after this many events (for scripts and tests); default: run until stopped.
    #[arg(long)]
    count: Option<u64>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut sink = match &args.out {
        None => Sink::Stdout(std::io::stdout()),
        Some(path) => Sink::open(path)?,
    };
    let mut subscribe = Subscribe::new(&args.resource)
        .name(&args.name)
        .fields(args.fields.iter().map(String::as_str))
        .purpose(&args.purpose);
    if let Some(o) = &args.official {
        subscribe = subscribe.official(o);
    }
    if let Some(c) = &args.case_ref {
        subscribe = subscribe.case_ref(c);
    }
    // Where to start: the file's own last line beats everything, since it is what was kept.
    let start = match (&sink, args.after, args.from_start) {
        (
            Sink::File {
                last: Some(seq), ..
            },
            _,
            _,
        ) => Some(*seq),
        (_, Some(after), _) => Some(after),
        (_, None, true) => Some(0),
        _ => None,
    };
    if let Some(after) = start {
        subscribe = subscribe.after(after);
    }
    let mut client = Client::connect(&args.broker, &args.identity.files()).await?;
    let mut subscription = client.subscribe(subscribe).await?;
    let mut stop = std::pin::pin!(crate::serve::shutdown_signal());
    let mut written = 0u64;
    loop {
        if args.count.is_some_and(|n| written >= n) {
            break;
        }
        let response = tokio::select! {
            () = &mut stop => break,
            r = subscription.next() => r?,
        };
        let line = event_json(&response).to_string();
        match sink.write_line(&line) {
            Ok(()) => written += 1,
            // The reader went away (`| head`): what it took is acknowledged, the rest is not.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(e).context("writing an event"),
        }
    }
    sink.sync()?;
    // The last line written is acknowledged before exit, so a restart does not repeat it.
    subscription.close().await?;
    Ok(ExitCode::SUCCESS)
}

/// One delivery as a JSON object: the event, and where it was recorded.
fn event_json(r: &SubscribeResponse) -> serde_json::Value {
    let values = |m: &std::collections::HashMap<String, huitong_proto::v1::Value>| {
        let mut sorted: Vec<_> = m.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        sorted
            .into_iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect::<Map<_, _>>()
    };
    let e = r.event.clone().unwrap_or_default();
    json!({
        "sequence": e.sequence,
        "resource": e.resource,
        "key": values(&e.key),
        "record": e.record.as_ref().map(|rec| values(&rec.fields)),
        "deleted": e.deleted,
        "received_at": e.received_at.as_ref().map(format_timestamp),
        "log_index": r.receipt.as_ref().map(|x| x.index),
        "request_id": r.request_id,
        "grant_id": r.grant_id,
        "masked_fields": r.masked_fields,
    })
}

enum Sink {
    Stdout(std::io::Stdout),
    File {
        file: std::fs::File,
        /// The sequence number on the file's last complete line.
        last: Option<u64>,
    },
}

impl Sink {
    /// Opens `path` for appending, first cutting off a last line that a crash left without its
    /// newline, and reads the sequence number of the last complete line.
    fn open(path: &Path) -> anyhow::Result<Sink> {
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .with_context(|| format!("--out {}: cannot open", path.display()))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)
            .with_context(|| format!("--out {}: cannot read", path.display()))?;
        let complete = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if complete < text.len() {
            file.set_len(complete as u64).with_context(|| {
                format!("--out {}: cannot cut off a partial line", path.display())
            })?;
            file.seek(SeekFrom::End(0))?;
        }
        let last = match text[..complete].lines().map_while(Result::ok).last() {
            None => None,
            Some(line) => {
                let v: serde_json::Value = serde_json::from_str(&line).with_context(|| {
                    format!(
                        "--out {}: its last line is not an event written by huitong subscribe",
                        path.display()
                    )
                })?;
                Some(v["sequence"].as_u64().with_context(|| {
                    format!("--out {}: its last line has no sequence", path.display())
                })?)
            }
        };
        Ok(Sink::File { file, last })
    }

    /// Writes one whole line in one write, so that a crash leaves it whole or cut, never mixed.
    fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        match self {
            Sink::Stdout(out) => {
                let mut out = out.lock();
                out.write_all(&bytes)?;
                out.flush()
            }
            Sink::File { file, .. } => file.write_all(&bytes),
        }
    }

    fn sync(&mut self) -> anyhow::Result<()> {
        if let Sink::File { file, .. } = self {
            file.sync_data().context("--out: fsync")?;
        }
        Ok(())
    }
}
