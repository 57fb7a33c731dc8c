//! `huitong admin`: access requests and grants, for a department's administrator. Prints JSON.
//!
//! With an auditor certificate, `requests` and `grants` list every department's (read-only:
//! the broker refuses auditors every change).

use std::process::ExitCode;

use anyhow::Context;
use huitong_client::{AccessRequestState, Admin, Approval};
use huitong_proto::v1::{AccessRequest, Grant};
use huitong_proto::value::format_timestamp;
use serde_json::json;

use crate::identity::IdentityArgs;
use crate::out::outln;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The broker's address.
    #[arg(long, env = "HUITONG_BROKER", default_value = crate::query::DEFAULT_BROKER)]
    broker: String,
    #[command(flatten)]
    identity: IdentityArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// File an access request for another department's resource.
    Request {
        /// <department>/<name>.
        resource: String,
        /// Fields needed, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        fields: Vec<String>,
        /// What the data is for; repeat for several.
        #[arg(long = "purpose", required = true)]
        purposes: Vec<String>,
        /// The law or regulation that allows the use.
        #[arg(long)]
        legal_basis: String,
        /// How long the grant should last.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// List requests we filed or must decide (an auditor: every department's).
    Requests {
        /// Only those past their reply deadline.
        #[arg(long)]
        overdue: bool,
        /// pending, approved or denied.
        #[arg(long)]
        state: Option<String>,
        /// Only those filed by this consumer department.
        #[arg(long)]
        consumer: Option<String>,
        /// Only those for this resource.
        #[arg(long)]
        resource: Option<String>,
    },
    /// Approve a request for one of our resources.
    Approve {
        id: String,
        /// Grant only these fields (comma-separated); default all requested.
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
        /// FIELD=MASK with MASK one of id-number, name, address, phone, bank-card, email,
        /// licence-plate, redact, keep:N:M or keep:N:M:C (keep the first N and last M
        /// characters, hide the rest with * or C); repeat. See docs/masking.md.
        #[arg(long = "mask")]
        masks: Vec<String>,
        /// Masked fields the consumer may still filter or key on (comma-separated). Without
        /// this a filter or key on a masked field is refused: it would confirm the hidden value.
        #[arg(long = "match-fields", value_delimiter = ',')]
        match_fields: Vec<String>,
        /// key (one record at a time, by its key) or search (also by filters). Default: key
        /// if the resource has personal or sensitive fields, else search.
        #[arg(long)]
        lookup: Option<String>,
        /// Most records one query (one page of a search) may release.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        max_records_per_query: Option<u32>,
        /// Most different people released to the consumer per day (UTC), queries and
        /// subscription deliveries together.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        max_subjects_per_day: Option<u32>,
        /// Every query and subscription must give a case reference (--case).
        #[arg(long)]
        require_case: bool,
    },
    /// Deny a request for one of our resources, with a written reason.
    Deny {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// List grants we hold or have given (an auditor: every department's).
    Grants {
        /// Include expired and revoked grants.
        #[arg(long)]
        all: bool,
        /// Only grants in force at this time, expired and revoked ones included: "which grants
        /// existed on that date". A date (midnight in HUITONG_DISPLAY_ZONE, default UTC) or an
        /// RFC 3339 time with any offset.
        #[arg(long, value_parser = crate::zone::TimeArg::parse)]
        at: Option<crate::zone::TimeArg>,
        /// Only grants held by this consumer department.
        #[arg(long)]
        consumer: Option<String>,
        /// Only grants of this resource.
        #[arg(long)]
        resource: Option<String>,
    },
    /// Revoke a grant.
    Revoke {
        id: String,
        #[arg(long)]
        reason: String,
    },
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut admin = Admin::connect(&args.broker, &args.identity.files()).await?;
    let out = match args.command {
        Command::Request {
            resource,
            fields,
            purposes,
            legal_basis,
            days,
        } => {
            let fields: Vec<&str> = fields.iter().map(|s| s.trim()).collect();
            let purposes: Vec<&str> = purposes.iter().map(String::as_str).collect();
            request_json(
                &admin
                    .file_request(&resource, &fields, &purposes, &legal_basis, days)
                    .await?,
            )
        }
        Command::Requests {
            overdue,
            state,
            consumer,
            resource,
        } => {
            let state = match state.as_deref() {
                None => None,
                Some("pending") => Some(AccessRequestState::Pending),
                Some("approved") => Some(AccessRequestState::Approved),
                Some("denied") => Some(AccessRequestState::Denied),
                Some(other) => anyhow::bail!("--state {other:?}: use pending, approved or denied"),
            };
            let list = admin
                .requests(huitong_proto::v1::ListAccessRequestsRequest {
                    overdue_only: overdue,
                    state: state.unwrap_or(AccessRequestState::Unspecified) as i32,
                    consumer: consumer.unwrap_or_default(),
                    resource: resource.unwrap_or_default(),
                })
                .await?;
            serde_json::Value::Array(list.iter().map(request_json).collect())
        }
        Command::Approve {
            id,
            fields,
            masks,
            match_fields,
            lookup,
            max_records_per_query,
            max_subjects_per_day,
            require_case,
        } => {
            let mut approval = Approval::new()
                .fields(fields.iter().map(|s| s.trim()))
                .match_fields(match_fields.iter().map(|s| s.trim()));
            for m in &masks {
                let (field, mask) = m
                    .split_once('=')
                    .with_context(|| format!("--mask {m:?} must be FIELD=MASK"))?;
                approval = approval.mask(field, mask);
            }
            if let Some(l) = &lookup {
                // The broker checks it too; this says it before anything is sent.
                if huitong_core::Lookup::parse(l).is_none() {
                    anyhow::bail!("--lookup {l:?}: use key or search");
                }
                approval = approval.lookup(l);
            }
            if let Some(n) = max_records_per_query {
                approval = approval.max_records_per_query(n);
            }
            if let Some(n) = max_subjects_per_day {
                approval = approval.max_subjects_per_day(n);
            }
            if require_case {
                approval = approval.require_case();
            }
            grant_json(&admin.approve_with(&id, &approval).await?)
        }
        Command::Deny { id, reason } => request_json(&admin.deny(&id, &reason).await?),
        Command::Grants {
            all,
            at,
            consumer,
            resource,
        } => {
            let zone = crate::zone::Zone::parse(
                &std::env::var("HUITONG_DISPLAY_ZONE").unwrap_or_default(),
            )
            .map_err(anyhow::Error::msg)
            .context("HUITONG_DISPLAY_ZONE")?;
            let at = at.map(|t| t.micros(&zone)).transpose().context("--at")?;
            serde_json::Value::Array(
                admin
                    .grants(huitong_proto::v1::ListGrantsRequest {
                        include_inactive: all,
                        consumer: consumer.unwrap_or_default(),
                        resource: resource.unwrap_or_default(),
                        in_force_at: at.map(|us| huitong_proto::Timestamp {
                            seconds: us.div_euclid(1_000_000),
                            nanos: (us.rem_euclid(1_000_000) * 1000) as i32,
                        }),
                    })
                    .await?
                    .iter()
                    .map(grant_json)
                    .collect(),
            )
        }
        Command::Revoke { id, reason } => grant_json(&admin.revoke(&id, &reason).await?),
    };
    outln!("{}", serde_json::to_string_pretty(&out)?)?;
    Ok(ExitCode::SUCCESS)
}

fn ts(t: &Option<huitong_proto::Timestamp>) -> serde_json::Value {
    t.as_ref()
        .map_or(serde_json::Value::Null, |t| format_timestamp(t).into())
}

fn request_json(r: &AccessRequest) -> serde_json::Value {
    let state = match AccessRequestState::try_from(r.state) {
        Ok(AccessRequestState::Pending) => "pending",
        Ok(AccessRequestState::Approved) => "approved",
        Ok(AccessRequestState::Denied) => "denied",
        _ => "unspecified",
    };
    json!({
        "id": r.id,
        "consumer": r.consumer,
        "resource": r.resource,
        "fields": r.fields,
        "purposes": r.purposes,
        "legal_basis": r.legal_basis,
        "duration_days": r.duration_days,
        "filed_at": ts(&r.filed_at),
        "reply_due": ts(&r.reply_due),
        "overdue": r.overdue,
        "state": state,
        "decided_at": ts(&r.decided_at),
        "decided_by": r.decided_by,
        "denial_reason": r.denial_reason,
        "grant_id": r.grant_id,
    })
}

fn grant_json(g: &Grant) -> serde_json::Value {
    let mut masks: Vec<(&String, &String)> = g.masks.iter().collect();
    masks.sort();
    json!({
        "id": g.id,
        "consumer": g.consumer,
        "resource": g.resource,
        "fields": g.fields,
        "purposes": g.purposes,
        "masks": masks.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "match_fields": g.match_fields,
        // "default" when the grant leaves it to the resource and the broker could not say which
        // that is (the resource is not in its catalogue just now).
        "lookup": if g.lookup.is_empty() { "default" } else { g.lookup.as_str() },
        "max_records_per_query": (g.max_records_per_query > 0).then_some(g.max_records_per_query),
        "max_subjects_per_day": (g.max_subjects_per_day > 0).then_some(g.max_subjects_per_day),
        "require_case": g.require_case,
        "granted_at": ts(&g.granted_at),
        "expires_at": ts(&g.expires_at),
        "revoked_at": ts(&g.revoked_at),
        "revoked_by": g.revoked_by,
        "revocation_reason": g.revocation_reason,
        "origin": g.origin,
        "active": g.active,
    })
}
