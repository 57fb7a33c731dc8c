//! `huitong bench load`: a gRPC load generator for an adapter (`Adapter.Fetch`), a broker
//! (`Exchange.Query`), or anything that answers as one of them (a proxy in front of an adapter,
//! a static server replaying a recorded answer).
//!
//! Two ways to drive the server:
//!
//! - **closed loop** (no `--rate`): `connections × concurrency` workers each send a request as
//!   soon as their previous one is answered. This finds the most the setup can serve; latency is
//!   measured from the moment each request is sent.
//! - **open loop** (`--rate R`): requests are due on a fixed schedule, R per second over all
//!   workers, whether or not earlier ones were answered. Latency is measured from the time a
//!   request was *due*, not from when a busy worker got round to sending it: measuring from the
//!   send would hide every stall behind the requests it held up (coordinated omission).
//!
//! Every answer's gRPC status is counted. A run that got any answer other than OK with a record
//! exits non-zero after printing its summary, so that a benchmark of a misconfigured setup fails
//! loudly instead of reporting how fast it sent errors.

use huitong_client::code_name;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use huitong_proto::v1::adapter_client::AdapterClient;
use huitong_proto::v1::exchange_client::ExchangeClient;
use huitong_proto::v1::{FetchRequest, QueryRequest, Value};
use huitong_tls::{ClientTls, Expect, Role, TlsFiles};
use prost::Message;
use serde_json::json;
use tonic::transport::Channel;

use crate::query::duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// `Adapter.Fetch`, as the broker calls it (present a broker certificate).
    Adapter,
    /// `Exchange.Query`, as a consumer calls it (present a consumer certificate).
    Broker,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which service to call: adapter (Adapter.Fetch) or broker (Exchange.Query).
    #[arg(long, value_enum)]
    target: Target,
    /// The server: https://host:port (mutual TLS) or http://host:port (plaintext HTTP/2, e.g.
    /// a proxy that terminates TLS elsewhere or not at all).
    #[arg(long)]
    addr: String,
    /// The exchange CA certificate (PEM); required for https.
    #[arg(long, env = "HUITONG_CA", value_name = "PEM")]
    ca: Option<PathBuf>,
    /// Our certificate (PEM): a broker certificate for adapters, a consumer certificate for
    /// brokers. Required for https.
    #[arg(long, env = "HUITONG_CERT", value_name = "PEM")]
    cert: Option<PathBuf>,
    /// Our private key (PEM); by default the certificate's path with a .key extension.
    #[arg(long = "cert-key", env = "HUITONG_CERT_KEY", value_name = "PEM")]
    cert_key: Option<PathBuf>,
    /// The role the server's certificate must have; by default the target's (a proxy in front
    /// of an adapter presents the adapter's certificate).
    #[arg(long, value_parser = ["broker", "adapter"])]
    server_role: Option<String>,
    /// The resource, as <department>/<name>.
    #[arg(long)]
    resource: String,
    /// The key as FIELD=VALUE (repeat for composite keys). Values are sent as strings.
    #[arg(
        long = "key",
        value_name = "FIELD=VALUE",
        required_unless_present = "filters"
    )]
    keys: Vec<String>,
    /// Instead of a key, a search (broker target): FIELD=VALUE, repeat for several. Each
    /// request asks for the first page of `--page-size` records.
    #[arg(long = "filter", value_name = "FIELD=VALUE", conflicts_with = "keys")]
    filters: Vec<String>,
    /// Records per page of a search.
    #[arg(long, default_value_t = 100, requires = "filters")]
    page_size: u32,
    /// The fields wanted, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    fields: Vec<String>,
    /// The declared purpose (broker target).
    #[arg(long)]
    purpose: Option<String>,
    /// HTTP/2 connections to open.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connections: u32,
    /// Requests in flight per connection (workers per connection).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    concurrency: u32,
    /// Open loop: this many requests per second over all connections, latency measured from
    /// each request's scheduled time. Without it, closed loop (as fast as answers come back).
    #[arg(long)]
    rate: Option<f64>,
    /// Run this long before measuring (connections warm, caches filled), e.g. 2s.
    #[arg(long, default_value = "1s", value_parser = duration)]
    warmup: Duration,
    /// Measure for this long, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = duration)]
    duration: Duration,
    /// Deadline of each request; a request past it counts as DEADLINE_EXCEEDED.
    #[arg(long, default_value = "5s", value_parser = duration)]
    timeout: Duration,
    /// A name for this run, repeated in the summary (e.g. "direct").
    #[arg(long, default_value = "")]
    label: String,
    /// Write the request message, gRPC-framed, to FILE (a body for h2load's --data).
    #[arg(long, value_name = "FILE")]
    save_request: Option<PathBuf>,
    /// Write the first OK answer, gRPC-framed, to FILE (a body a static server can replay).
    #[arg(long, value_name = "FILE")]
    save_answer: Option<PathBuf>,
}

/// The request every worker sends, on its own clone of a connection's client.
#[derive(Clone)]
enum Caller {
    Adapter(AdapterClient<Channel>, FetchRequest),
    Broker(ExchangeClient<Channel>, QueryRequest),
}

/// What an answer was, for the tally.
enum Outcome {
    /// OK with a record; whether the broker said it came from its cache.
    Ok { from_cache: bool },
    /// A gRPC status other than OK, or OK without a record.
    Err(&'static str),
}

/// Counted as an error: a server that answers OK but with nothing in it is not serving records.
const EMPTY_ANSWER: &str = "OK_WITHOUT_RECORD";

impl Caller {
    fn request_bytes(&self) -> Vec<u8> {
        match self {
            Caller::Adapter(_, r) => r.encode_to_vec(),
            Caller::Broker(_, r) => r.encode_to_vec(),
        }
    }

    /// One call. `keep` asks for the answer's encoded bytes (once per run: encoding every
    /// answer again would add work the server did not cause).
    async fn call(&mut self, timeout: Duration, keep: bool) -> (Outcome, Option<Vec<u8>>) {
        let result = match self {
            Caller::Adapter(client, req) => {
                let mut request = tonic::Request::new(req.clone());
                request.set_timeout(timeout);
                match tokio::time::timeout(timeout, client.fetch(request)).await {
                    Err(_) => Err("DEADLINE_EXCEEDED"),
                    Ok(Err(status)) => Err(code_name(status.code())),
                    Ok(Ok(answer)) => {
                        let answer = answer.into_inner();
                        if answer.record.is_none() {
                            Err(EMPTY_ANSWER)
                        } else {
                            Ok((false, keep.then(|| answer.encode_to_vec())))
                        }
                    }
                }
            }
            Caller::Broker(client, req) => {
                let mut request = tonic::Request::new(req.clone());
                request.set_timeout(timeout);
                match tokio::time::timeout(timeout, client.query(request)).await {
                    Err(_) => Err("DEADLINE_EXCEEDED"),
                    Ok(Err(status)) => Err(code_name(status.code())),
                    Ok(Ok(answer)) => {
                        let answer = answer.into_inner();
                        if answer.records.is_empty() {
                            Err(EMPTY_ANSWER)
                        } else {
                            let cached = answer.provenance.as_ref().is_some_and(|p| p.from_cache);
                            Ok((cached, keep.then(|| answer.encode_to_vec())))
                        }
                    }
                }
            }
        };
        match result {
            Ok((from_cache, bytes)) => (Outcome::Ok { from_cache }, bytes),
            Err(code) => (Outcome::Err(code), None),
        }
    }
}

/// The run's timetable, shared by every worker.
struct Plan {
    start: Instant,
    /// Requests sent (closed loop) or due (open loop) from here on are measured.
    measure_from: Instant,
    end: Instant,
    /// Open loop: the gap between two scheduled requests in seconds, and the next slot to take.
    interval: Option<f64>,
    next_slot: AtomicU64,
    timeout: Duration,
}

/// Open loop: how late after the end a request due before it may still be sent.
const END_GRACE: Duration = Duration::from_millis(250);

/// Latencies above this (in µs) are recorded as this; no request outlives its deadline anyway.
const MAX_MICROS: u64 = 3_600_000_000;

/// One worker's counts; merged at the end so that workers share nothing while running.
struct Tally {
    /// Answer time of measured requests: from the send (closed loop) or the due time (open).
    latency: Histogram<u64>,
    /// Open loop: from the actual send, i.e. what the server and network took.
    service: Histogram<u64>,
    /// Open loop: how late requests were sent after their due time (timer granularity and
    /// workers all busy).
    lag: Histogram<u64>,
    /// Every answer of the run, warm-up included, by status.
    codes: BTreeMap<&'static str, u64>,
    /// Requests sent (closed) or due (open) in the measured window.
    measured: u64,
    /// OK answers that arrived within the measured window: the throughput.
    ok_in_window: u64,
    from_cache: u64,
    answer: Option<Vec<u8>>,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        let h = || Histogram::new_with_bounds(1, MAX_MICROS, 3).context("creating a histogram");
        Ok(Self {
            latency: h()?,
            service: h()?,
            lag: h()?,
            codes: BTreeMap::new(),
            measured: 0,
            ok_in_window: 0,
            from_cache: 0,
            answer: None,
        })
    }

    fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        self.latency
            .add(&other.latency)
            .context("merging histograms")?;
        self.service
            .add(&other.service)
            .context("merging histograms")?;
        self.lag.add(&other.lag).context("merging histograms")?;
        for (code, n) in other.codes {
            *self.codes.entry(code).or_default() += n;
        }
        self.measured += other.measured;
        self.ok_in_window += other.ok_in_window;
        self.from_cache += other.from_cache;
        if self.answer.is_none() {
            self.answer = other.answer;
        }
        Ok(())
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_MICROS)
}

async fn worker(mut caller: Caller, plan: Arc<Plan>, mut tally: Tally) -> Tally {
    loop {
        let (due, sent) = match plan.interval {
            None => {
                let now = Instant::now();
                if now >= plan.end {
                    break;
                }
                (now, now)
            }
            Some(interval) => {
                let slot = plan.next_slot.fetch_add(1, Ordering::Relaxed);
                // From the slot number, not by adding intervals, so that rounding does not drift.
                let due = plan.start + Duration::from_secs_f64(slot as f64 * interval);
                if due >= plan.end {
                    break;
                }
                if Instant::now() < due {
                    tokio::time::sleep_until(due.into()).await;
                }
                let now = Instant::now();
                // Far behind schedule at the end: the server could not keep the rate. The slots
                // left unsent show in the summary instead of stretching the run. (A little
                // lateness is the timer's millisecond granularity, not the server.)
                if now >= plan.end + END_GRACE {
                    break;
                }
                (due, now)
            }
        };
        let keep = tally.answer.is_none();
        let (outcome, bytes) = caller.call(plan.timeout, keep).await;
        let done = Instant::now();
        let ok = match outcome {
            Outcome::Ok { from_cache } => {
                if bytes.is_some() {
                    tally.answer = bytes;
                }
                *tally.codes.entry("OK").or_default() += 1;
                if from_cache && due >= plan.measure_from {
                    tally.from_cache += 1;
                }
                true
            }
            Outcome::Err(code) => {
                *tally.codes.entry(code).or_default() += 1;
                false
            }
        };
        if due >= plan.measure_from {
            tally.measured += 1;
            tally.latency.saturating_record(micros(done - due));
            if plan.interval.is_some() {
                tally.service.saturating_record(micros(done - sent));
                tally.lag.saturating_record(micros(sent - due));
            }
        }
        if ok && done >= plan.measure_from && done < plan.end {
            tally.ok_in_window += 1;
        }
    }
    tally
}

fn tls_files(args: &Args) -> anyhow::Result<TlsFiles> {
    let (Some(ca), Some(cert)) = (&args.ca, &args.cert) else {
        bail!(
            "{} is https: give --ca and --cert (or HUITONG_CA and HUITONG_CERT)",
            args.addr
        );
    };
    Ok(TlsFiles {
        ca: ca.clone(),
        cert: cert.clone(),
        key: args
            .cert_key
            .clone()
            .unwrap_or_else(|| cert.with_extension("key")),
        crl: None,
    })
}

/// One HTTP/2 connection per call: each `Channel` from `connect` is its own connection.
async fn connect(args: &Args, tls: Option<&ClientTls>) -> anyhow::Result<Channel> {
    let channel = match tls {
        Some(tls) => {
            let role = match (args.server_role.as_deref(), args.target) {
                (Some("broker"), _) | (None, Target::Broker) => Role::Broker,
                _ => Role::Adapter,
            };
            huitong_tls::endpoint(&args.addr)?
                .connect_timeout(Duration::from_secs(5))
                .connect_with_connector(tls.connector(Expect::Role(role)))
                .await
        }
        None => {
            tonic::transport::Endpoint::from_shared(args.addr.clone())
                .with_context(|| format!("{} is not a valid address", args.addr))?
                .connect_timeout(Duration::from_secs(5))
                .tcp_nodelay(true)
                .connect()
                .await
        }
    };
    channel.map_err(|e| anyhow::anyhow!("cannot connect to {}: {}", args.addr, error_chain(&e)))
}

/// tonic's transport error says only "transport error"; the cause is further down.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// A message as a gRPC length-prefixed frame: what travels in an HTTP/2 DATA frame.
fn grpc_frame(message: &[u8]) -> anyhow::Result<Vec<u8>> {
    let len = u32::try_from(message.len()).context("message over 4 GiB")?;
    let mut out = Vec::with_capacity(message.len() + 5);
    out.push(0);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    Ok(out)
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut key = std::collections::HashMap::new();
    for k in &args.keys {
        let (field, value) = k
            .split_once('=')
            .with_context(|| format!("--key {k:?} must be FIELD=VALUE"))?;
        key.insert(field.to_owned(), Value::from(value));
    }
    let mut filters = Vec::new();
    for f in &args.filters {
        let (field, value) = f
            .split_once('=')
            .with_context(|| format!("--filter {f:?} must be FIELD=VALUE"))?;
        filters.push(huitong_proto::v1::Filter {
            field: field.to_owned(),
            value: Some(Value::from(value)),
        });
    }
    if !filters.is_empty() && args.target == Target::Adapter {
        bail!("--filter is for the broker target; an adapter's Search is not measured here");
    }
    let fields: Vec<String> = args.fields.iter().map(|f| f.trim().to_owned()).collect();
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        bail!("--rate must be a positive number of requests per second");
    }
    if args.duration.is_zero() {
        bail!("--duration must be longer than zero");
    }

    let plain = args.addr.starts_with("http://");
    let tls = if plain {
        None
    } else {
        Some(ClientTls::load(&tls_files(&args)?).context("loading our certificate")?)
    };
    let connecting = Instant::now();
    let mut channels = Vec::new();
    for _ in 0..args.connections {
        channels.push(connect(&args, tls.as_ref()).await?);
    }
    let connect_ms = connecting.elapsed().as_secs_f64() * 1e3;

    let callers: Vec<Caller> = channels
        .into_iter()
        .map(|channel| match args.target {
            Target::Adapter => Caller::Adapter(
                AdapterClient::new(channel),
                FetchRequest {
                    resource: args.resource.clone(),
                    key: key.clone(),
                    fields: fields.clone(),
                },
            ),
            Target::Broker => Caller::Broker(
                ExchangeClient::new(channel),
                QueryRequest {
                    resource: args.resource.clone(),
                    key: key.clone(),
                    filters: filters.clone(),
                    page_size: if filters.is_empty() {
                        0
                    } else {
                        args.page_size
                    },
                    fields: fields.clone(),
                    purpose: args.purpose.clone().unwrap_or_default(),
                    ..Default::default()
                },
            ),
        })
        .collect();
    if let (Some(path), Some(first)) = (&args.save_request, callers.first()) {
        std::fs::write(path, grpc_frame(&first.request_bytes())?)
            .with_context(|| format!("writing {}", path.display()))?;
    }

    let start = Instant::now();
    let measure_from = start + args.warmup;
    let plan = Arc::new(Plan {
        start,
        measure_from,
        end: measure_from + args.duration,
        interval: args.rate.map(|r| 1.0 / r),
        next_slot: AtomicU64::new(0),
        timeout: args.timeout,
    });
    let mut tasks = Vec::new();
    for caller in &callers {
        for _ in 0..args.concurrency {
            tasks.push(tokio::spawn(worker(
                caller.clone(),
                plan.clone(),
                Tally::new()?,
            )));
        }
    }
    let mut total = Tally::new()?;
    for t in tasks {
        total.merge(t.await.context("a load worker panicked")?)?;
    }
    report(&args, &plan, total, connect_ms, plain)
}

fn report(
    args: &Args,
    plan: &Plan,
    total: Tally,
    connect_ms: f64,
    plain: bool,
) -> anyhow::Result<ExitCode> {
    let seconds = args.duration.as_secs_f64();
    let throughput = total.ok_in_window as f64 / seconds;
    let errors: BTreeMap<&str, u64> = total
        .codes
        .iter()
        .filter(|(c, _)| **c != "OK")
        .map(|(c, n)| (*c, *n))
        .collect();
    let error_count: u64 = errors.values().sum();
    let answers: u64 = total.codes.values().sum();
    // Open loop: slots due in the measured window that were never sent because the run was
    // behind schedule at its end.
    let (scheduled, unsent) = match plan.interval {
        Some(interval) => {
            let due = |t: Duration| (t.as_secs_f64() / interval).ceil() as u64;
            let scheduled =
                due(plan.end - plan.start).saturating_sub(due(plan.measure_from - plan.start));
            (Some(scheduled), scheduled.saturating_sub(total.measured))
        }
        None => (None, 0),
    };
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e3;
    let summary_of = |h: &Histogram<u64>| {
        json!({
            "p50": ms(h, 0.5),
            "p90": ms(h, 0.9),
            "p99": ms(h, 0.99),
            "p999": ms(h, 0.999),
            "max": h.max() as f64 / 1e3,
            "mean": h.mean() / 1e3,
        })
    };
    let answer_bytes = total.answer.as_ref().map(Vec::len);
    let mode = if plan.interval.is_some() {
        "open"
    } else {
        "closed"
    };
    let mut summary = json!({
        "label": args.label,
        "target": match args.target { Target::Adapter => "adapter", Target::Broker => "broker" },
        "addr": args.addr,
        "tls": !plain,
        "mode": mode,
        "rate": args.rate,
        "connections": args.connections,
        "concurrency": args.concurrency,
        "warmup_s": args.warmup.as_secs_f64(),
        "duration_s": seconds,
        "connect_ms": connect_ms,
        "requests": total.measured,
        "answers": answers,
        "errors": error_count,
        "errors_by_code": errors,
        "throughput_rps": throughput,
        "latency_ms": summary_of(&total.latency),
        "answer_bytes": answer_bytes,
        "from_cache": total.from_cache,
    });
    if plan.interval.is_some() {
        summary["scheduled"] = json!(scheduled);
        summary["unsent"] = json!(unsent);
        summary["service_ms"] = summary_of(&total.service);
        summary["send_lag_ms"] = summary_of(&total.lag);
    }

    if let (Some(path), Some(answer)) = (&args.save_answer, &total.answer) {
        std::fs::write(path, grpc_frame(answer)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }

    let label = if args.label.is_empty() {
        String::new()
    } else {
        format!("{}: ", args.label)
    };
    let how = match args.rate {
        Some(r) => format!("open loop at {r:.0}/s"),
        None => "closed loop".into(),
    };
    // Written, not println!: a reader that closes the pipe early (`| head`) is not a panic.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{label}{} {}, {how}, {}x{} in flight, {:.1}s after {:.1}s warm-up: {throughput:.0} answers/s, \
         latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, {} requests, {error_count} errors{}{}",
        summary["target"].as_str().unwrap_or_default(),
        args.addr,
        args.connections,
        args.concurrency,
        seconds,
        args.warmup.as_secs_f64(),
        ms(&total.latency, 0.5),
        ms(&total.latency, 0.99),
        ms(&total.latency, 0.999),
        total.measured,
        answer_bytes.map_or(String::new(), |b| format!(", answers of {b} bytes")),
        if unsent > 0 {
            format!(", {unsent} scheduled requests not sent: the rate was not kept")
        } else {
            String::new()
        },
    );
    let _ = writeln!(out, "{summary}");
    drop(out);

    if error_count > 0 {
        let by_code: Vec<String> = errors.iter().map(|(c, n)| format!("{c} {n}")).collect();
        eprintln!(
            "error: {error_count} of {answers} answers were not records: {}",
            by_code.join(", ")
        );
        return Ok(ExitCode::FAILURE);
    }
    if total.measured == 0 {
        eprintln!("error: no request was measured; lengthen --duration or raise --rate");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
