//! `huitong bench events`: publish/subscribe fan-out. One publisher (an SDK adapter with a
//! `ChangeFeed`) sends events through a broker to 1, 10 and 100 subscribers; reported are the
//! events per second that reach every subscriber, the deliveries per second, and the delivery
//! latency from publishing to a subscriber holding the event (HDR histogram).
//!
//! Adapter, broker and subscribers run in this one process, over loopback with mutual TLS and
//! the broker's durable event and exchange logs, so the figures include the subscribers' own
//! work; the same machine is shared by all three, as in every other row of the suite.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use hdrhistogram::Histogram;
use huitong_adapter::{
    ChangeFeed, ChangeStream, Page, PageRequest, Record, ServeOptions, Source, SourceError, Value,
};
use huitong_client::{Client, Subscribe};
use huitong_core::{
    DeptId, FieldName, FieldSpec, FieldType, ResourceId, ResourceName, ResourceSpec,
    ResourceSpecParts, Sensitivity, SharingClass,
};
use huitong_tls::{Role, ServerTls, TlsFiles, pki};
use serde_json::json;
use tokio::sync::watch;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Subscriber counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    subscribers: Vec<usize>,
    /// Events published per measurement.
    #[arg(long, default_value_t = 2000)]
    events: usize,
    /// Events per second to publish; 0 publishes them all at once (a burst: the figures are
    /// then throughput, and latency includes the wait behind the burst).
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// Bytes of payload per event.
    #[arg(long, default_value_t = 200)]
    payload: usize,
    /// Scratch directory for the broker's data (on the disk to measure); removed afterwards.
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

const DEPT: &str = "bench-registry";
const CONSUMER: &str = "bench-consumer";
const RESOURCE: &str = "bench-registry/events";

/// A resource whose only news is what the bench publishes.
struct Feed {
    spec: ResourceSpec,
    feed: ChangeFeed,
}

#[tonic::async_trait]
impl Source for Feed {
    fn resources(&self) -> Vec<ResourceSpec> {
        vec![self.spec.clone()]
    }

    async fn fetch(
        &self,
        _resource: &ResourceName,
        _key: &[(FieldName, Value)],
        _fields: &[FieldName],
    ) -> Result<Option<Record>, SourceError> {
        Ok(None)
    }

    async fn search(
        &self,
        _resource: &ResourceName,
        _filters: &[(FieldName, Value)],
        _fields: &[FieldName],
        _page: PageRequest,
    ) -> Result<Page, SourceError> {
        Ok(Page::default())
    }

    async fn watch(
        &self,
        resource: &ResourceName,
        cursor: Option<&str>,
    ) -> Result<ChangeStream, SourceError> {
        self.feed.watch(resource, cursor)
    }
}

fn spec() -> anyhow::Result<ResourceSpec> {
    let field = |name: &str, ty| -> anyhow::Result<FieldSpec> {
        Ok(FieldSpec {
            name: FieldName::new(name)?,
            ty,
            sensitivity: Sensitivity::Public,
            description: String::new(),
        })
    };
    Ok(ResourceSpec::new(ResourceSpecParts {
        id: ResourceId::parse(RESOURCE)?,
        title: "Benchmark events".into(),
        description: String::new(),
        fields: vec![
            field("n", FieldType::Int)?,
            field("published_micros", FieldType::Int)?,
            field("payload", FieldType::String)?,
        ],
        key_fields: vec![FieldName::new("n")?],
        sharing_class: SharingClass::Open,
        legal_basis: String::new(),
        update_cycle: "real-time".into(),
        max_cache_age_seconds: 0,
        stale_if_error_seconds: 0,
    })?)
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("huitong-bench-events-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = measure(&args, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(args: &Args, dir: &Path) -> anyhow::Result<ExitCode> {
    let pki_dir = dir.join("pki");
    pki::init(&pki_dir, "bench.huitong.example")?;
    for (dept, role) in [
        ("exchange-office", Role::Broker),
        (DEPT, Role::Adapter),
        (CONSUMER, Role::Consumer),
    ] {
        pki::issue(&pki_dir, &pki::IssueOptions::new(DeptId::new(dept)?, role))?;
    }
    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let feed = ChangeFeed::with_limits(args.events.max(1) * 2, args.events.max(1024));
    let dept = DeptId::new(DEPT)?;
    let adapter_listener = huitong_proto::transport::bind("127.0.0.1:0".parse()?)?;
    let adapter_addr = adapter_listener.local_addr()?;
    let adapter_tls = ServerTls::load(&TlsFiles::from_pki_dir(&pki_dir, &dept, Role::Adapter))?;
    tokio::spawn(huitong_adapter::serve(
        dept,
        Feed {
            spec: spec()?,
            feed: feed.clone(),
        },
        adapter_listener,
        ServeOptions::default(),
        adapter_tls,
        until_stopped(stopped.clone()),
    ));

    let config_path = dir.join("broker.toml");
    std::fs::write(
        &config_path,
        format!(
            "[broker]\ndata_dir = \"data\"\n\n[tls]\nca = \"pki/ca.pem\"\n\
             cert = \"pki/exchange-office-broker.pem\"\nkey = \"pki/exchange-office-broker.key\"\n\n\
             [[adapters]]\ndept = \"{DEPT}\"\nendpoint = \"https://{adapter_addr}\"\n"
        ),
    )?;
    let config = huitong_broker::BrokerConfig::load(&config_path)?;
    let broker_listener = huitong_proto::transport::bind("127.0.0.1:0".parse()?)?;
    let broker = format!("https://{}", broker_listener.local_addr()?);
    let broker_task = tokio::spawn(huitong_broker::serve(
        config,
        broker_listener,
        until_stopped(stopped.clone()),
    ));
    let identity = TlsFiles::from_pki_dir(&pki_dir, &DeptId::new(CONSUMER)?, Role::Consumer);
    let mut client = Client::connect(&broker, &identity).await?;
    // The broker follows the resource's change stream once its catalogue lists it.
    let ready_by = Instant::now() + Duration::from_secs(30);
    while !client
        .catalogue(None)
        .await?
        .iter()
        .any(|e| e.resource == RESOURCE && e.provider_reachable)
    {
        anyhow::ensure!(
            Instant::now() < ready_by,
            "the broker never listed {RESOURCE}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let resource = ResourceName::new("events")?;
    let payload = "汇".repeat(args.payload / 3 + 1);
    println!(
        "# publish/subscribe fan-out: {} events of ~{} bytes per run, {}",
        args.events,
        args.payload,
        if args.rate > 0 {
            format!("published at {} per second", args.rate)
        } else {
            "published at once".to_owned()
        }
    );
    let mut failed = false;
    for (round, &subscribers) in args.subscribers.iter().enumerate() {
        // Subscribers spread over a few connections, as departments' systems would be.
        let mut subs = Vec::with_capacity(subscribers);
        let connections = subscribers.div_ceil(10).max(1);
        let mut clients = Vec::with_capacity(connections);
        for _ in 0..connections {
            clients.push(Client::connect(&broker, &identity).await?);
        }
        for i in 0..subscribers {
            let sub = clients[i % connections]
                .subscribe(
                    Subscribe::new(RESOURCE)
                        .name(&format!("r{round}-s{i}"))
                        .fields(["n", "published_micros", "payload"])
                        .purpose("benchmark"),
                )
                .await
                .context("subscribing")?;
            subs.push(sub);
        }
        let events = args.events;
        let tasks: Vec<_> = subs
            .into_iter()
            .map(|mut sub| {
                tokio::spawn(async move {
                    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
                    for _ in 0..events {
                        let r = tokio::time::timeout(Duration::from_secs(60), sub.next())
                            .await
                            .context("no event for 60 s")??;
                        let published = r
                            .event
                            .and_then(|e| e.record)
                            .and_then(|r| r.fields.get("published_micros").cloned())
                            .and_then(|v| match v.kind {
                                Some(huitong_proto::v1::value::Kind::IntValue(i)) => Some(i),
                                _ => None,
                            })
                            .context("an event without its publishing time")?;
                        latency.saturating_record((now_micros() - published).max(1) as u64);
                    }
                    sub.close().await?;
                    anyhow::Ok(latency)
                })
            })
            .collect();
        let started = Instant::now();
        let mut pace = (args.rate > 0).then(|| {
            let mut i = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate)));
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            i
        });
        for n in 0..args.events {
            if let Some(pace) = &mut pace {
                pace.tick().await;
            }
            let mut r = Record::default();
            r.fields.insert("n".into(), Value::int(n as i64));
            r.fields
                .insert("published_micros".into(), Value::int(now_micros()));
            r.fields
                .insert("payload".into(), Value::string(payload.as_str()));
            feed.publish(&resource, [("n", Value::int(n as i64))], Some(r));
            if pace.is_none() && n % 256 == 255 {
                tokio::task::yield_now().await;
            }
        }
        let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        for t in tasks {
            match t.await? {
                Ok(h) => all.add(h)?,
                Err(e) => {
                    eprintln!("a subscriber failed: {e:#}");
                    failed = true;
                }
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let ms = |q: f64| all.value_at_quantile(q) as f64 / 1e3;
        println!(
            "{subscribers:>4} subscribers: {:>9.0} events/s to all, {:>9.0} deliveries/s; latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms",
            args.events as f64 / seconds,
            (args.events * subscribers) as f64 / seconds,
            ms(0.5),
            ms(0.99),
            ms(0.999)
        );
        println!(
            "{}",
            json!({
                "bench": "events",
                "rate": args.rate,
                "subscribers": subscribers,
                "events": args.events,
                "seconds": seconds,
                "events_per_s": args.events as f64 / seconds,
                "deliveries_per_s": (args.events * subscribers) as f64 / seconds,
                "latency_ms": { "p50": ms(0.5), "p99": ms(0.99), "p999": ms(0.999), "max": all.max() as f64 / 1e3 },
                "deliveries": all.len(),
            })
        );
        if all.len() != (args.events * subscribers) as u64 {
            failed = true;
        }
    }
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(15), broker_task).await;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
