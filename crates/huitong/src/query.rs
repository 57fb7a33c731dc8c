//! `huitong query` and `huitong catalogue`: a consumer on the command line. Output is JSON
//! (query) or a table (catalogue), on stdout; errors go to stderr with the broker's message.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use huitong_client::{Client, Query, QueryResponse};
use huitong_core::ResourceSpec;
use huitong_proto::v1::Value;
use huitong_proto::value::format_timestamp;
use serde_json::{Map, json};

use crate::identity::IdentityArgs;
use crate::out::outln;

pub const DEFAULT_BROKER: &str = "https://127.0.0.1:7400";

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The broker's address.
    #[arg(long, env = "HUITONG_BROKER", default_value = DEFAULT_BROKER)]
    broker: String,
    #[command(flatten)]
    identity: IdentityArgs,
    /// The resource, as <department>/<name>, e.g. public-security/household-register.
    resource: String,
    /// A key value as FIELD=VALUE (repeat for composite keys). Typed by the catalogue.
    #[arg(long = "key", value_name = "FIELD=VALUE", conflicts_with = "filters")]
    keys: Vec<String>,
    /// An equality filter as FIELD=VALUE (repeat to combine).
    #[arg(long = "filter", value_name = "FIELD=VALUE")]
    filters: Vec<String>,
    /// The fields wanted, comma-separated. Nothing else is released.
    #[arg(long, value_delimiter = ',', required = true)]
    fields: Vec<String>,
    /// Why the data is needed, e.g. "marriage registration".
    #[arg(long)]
    purpose: String,
    /// The official acting for your department: the id your own system gives them (recorded
    /// only as an HMAC).
    #[arg(long, env = "HUITONG_OFFICIAL")]
    official: Option<String>,
    /// The case (办件编号) the data is needed for.
    #[arg(long = "case")]
    case_ref: Option<String>,
    /// Records per page, for filter queries.
    #[arg(long)]
    page_size: Option<u32>,
    /// Continue from a previous answer's next_page_token.
    #[arg(long)]
    page_token: Option<String>,
    /// Follow next_page_token until the last page (filter queries).
    #[arg(long)]
    all_pages: bool,
    /// Give up after this long, e.g. 2s or 500ms.
    #[arg(long, default_value = "10s", value_parser = duration)]
    timeout: Duration,
}

#[derive(Debug, clap::Args)]
pub struct CatalogueArgs {
    /// The broker's address.
    #[arg(long, env = "HUITONG_BROKER", default_value = DEFAULT_BROKER)]
    broker: String,
    #[command(flatten)]
    identity: IdentityArgs,
    /// Only this department's resources.
    #[arg(long)]
    provider: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|_| format!("{s:?} is not a duration like 2s or 500ms"))
}

fn split_pair(s: &str) -> anyhow::Result<(&str, &str)> {
    s.split_once('=')
        .with_context(|| format!("{s:?} must be FIELD=VALUE"))
}

/// Types a value typed by a person, from the resource's catalogue entry.
fn typed(spec: &ResourceSpec, field: &str, text: &str) -> anyhow::Result<Value> {
    let Some(f) = spec.field(field) else {
        let known: Vec<&str> = spec.fields().iter().map(|f| f.name.as_str()).collect();
        bail!(
            "{field:?} is not a field of {}; its fields are: {}",
            spec.id(),
            known.join(", ")
        );
    };
    Value::parse_text(text, f.ty).with_context(|| format!("{field}: the value is not {}", f.ty))
}

pub async fn run_query(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let mut client = Client::connect(&args.broker, &args.identity.files()).await?;
    let spec = client.describe(&args.resource).await?;
    let mut query = Query::search(&args.resource);
    for k in &args.keys {
        let (f, v) = split_pair(k)?;
        query = query.key(f, typed(&spec, f, v)?);
    }
    for k in &args.filters {
        let (f, v) = split_pair(k)?;
        query = query.filter(f, typed(&spec, f, v)?);
    }
    query = query
        .fields(args.fields.iter().map(|f| f.trim()))
        .purpose(&args.purpose)
        .timeout(args.timeout);
    if let Some(n) = args.page_size {
        query = query.page_size(n);
    }
    if let Some(id) = &args.official {
        query = query.official(id);
    }
    if let Some(case) = &args.case_ref {
        query = query.case_ref(case);
    }
    let mut token = args.page_token.clone().unwrap_or_default();
    let mut pages = Vec::new();
    loop {
        let answer = client.query(query.clone().page_token(&token)).await?;
        token = answer.next_page_token.clone();
        pages.push(answer);
        if !args.all_pages || token.is_empty() {
            break;
        }
    }
    let out = answer_json(&pages);
    outln!("{}", serde_json::to_string_pretty(&out)?)?;
    Ok(ExitCode::SUCCESS)
}

/// The JSON form of one or more pages of an answer.
pub fn answer_json(pages: &[QueryResponse]) -> serde_json::Value {
    let records: Vec<serde_json::Value> = pages
        .iter()
        .flat_map(|p| &p.records)
        .map(|r| {
            let mut fields: Vec<(&String, &Value)> = r.fields.iter().collect();
            fields.sort_by(|a, b| a.0.cmp(b.0));
            serde_json::Value::Object(
                fields
                    .into_iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect::<Map<_, _>>(),
            )
        })
        .collect();
    let last = pages.last();
    let provenance = last.and_then(|p| p.provenance.as_ref()).map(|p| {
        json!({
            "provider": p.provider,
            "resource": p.resource,
            "fetched_at": p.fetched_at.as_ref().map(format_timestamp),
            "from_cache": p.from_cache,
            "age_millis": p.age_millis,
            "stale": p.stale,
        })
    });
    json!({
        "request_ids": pages.iter().map(|p| p.request_id.as_str()).collect::<Vec<_>>(),
        "grant_id": last.map(|p| p.grant_id.as_str()).unwrap_or_default(),
        "masked_fields": last.map(|p| p.masked_fields.clone()).unwrap_or_default(),
        "provenance": provenance,
        "records": records,
        "next_page_token": last.map(|p| p.next_page_token.as_str()).unwrap_or_default(),
        // One per page: what `huitong audit receipt --from` checks against the signed log.
        "receipts": pages
            .iter()
            .filter_map(|p| p.receipt.as_ref())
            .map(|r| json!({"index": r.index, "leaf_hash": huitong_audit::merkle::hex(&r.leaf_hash)}))
            .collect::<Vec<_>>(),
    })
}

pub async fn run_catalogue(args: CatalogueArgs) -> anyhow::Result<ExitCode> {
    let mut client = Client::connect(&args.broker, &args.identity.files()).await?;
    let entries = client.catalogue(args.provider.as_deref()).await?;
    if args.json {
        let out: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                let d = e.description.clone().unwrap_or_default();
                json!({
                    "resource": e.resource,
                    "provider": e.provider,
                    "provider_reachable": e.provider_reachable,
                    "title": d.title,
                    "sharing_class": sharing_class_name(d.sharing_class),
                    "key_fields": d.key_fields,
                    "fields": d.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
                    "max_cache_age_seconds": d.max_cache_age_seconds,
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
    } else {
        outln!(
            "{:<45} {:<12} {:<10} TITLE",
            "RESOURCE",
            "SHARING",
            "REACHABLE"
        )?;
        for e in &entries {
            let d = e.description.clone().unwrap_or_default();
            outln!(
                "{:<45} {:<12} {:<10} {}",
                e.resource,
                sharing_class_name(d.sharing_class),
                if e.provider_reachable { "yes" } else { "no" },
                d.title
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn sharing_class_name(raw: i32) -> &'static str {
    use huitong_proto::v1::SharingClass;
    match SharingClass::try_from(raw) {
        Ok(SharingClass::Open) => "open",
        Ok(SharingClass::Conditional) => "conditional",
        Ok(SharingClass::NotShared) => "not-shared",
        _ => "unspecified",
    }
}
