//! `huitong adapter check`: runs the `Adapter` contract of `docs/protocol.md` against a running
//! adapter, whatever it is written in, and reports each check as passed, failed, skipped or
//! passed with a warning.
//!
//! The checker calls the adapter as the broker does (mutual TLS with a broker certificate) and
//! only reads: it never needs to know the records in advance, it samples them with Search.
//! Reasons name fields and status codes but never record values, which are personal data.

use huitong_client::code_name;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use huitong_core::{DeptId, FieldName, FieldType, ResourceSpec, SharingClass};
use huitong_proto::convert;
use huitong_proto::transport::DEFAULT_MAX_MESSAGE_BYTES;
use huitong_proto::v1::adapter_client::AdapterClient;
use huitong_proto::v1::{
    ChangeEvent, DescribeRequest, DescribeResponse, FetchRequest, Filter, Record, SearchRequest,
    SearchResponse, Value, WatchChangesRequest,
};
use huitong_tls::{ClientTls, Expect, PeerId, Role, TlsFiles};
use serde::Serialize;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::identity::IdentityArgs;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Adapters serve only the broker, so give a broker certificate of the \
exchange (huitong pki issue --role broker) with --cert. Example:\n  huitong adapter check \
--adapter https://127.0.0.1:7401 --ca pki/ca.pem --cert pki/exchange-office-broker.pem \
--other-cert pki/civil-affairs-consumer.pem"
)]
pub struct Args {
    /// The adapter to check, e.g. https://127.0.0.1:7401 (`--target` is its old name).
    #[arg(long = "adapter", alias = "target")]
    target: String,
    // A broker certificate: adapters serve only the broker (see after_help).
    #[command(flatten)]
    identity: IdentityArgs,
    /// A certificate of the same exchange in another role (e.g. a consumer's), to check that the
    /// adapter refuses callers other than the broker.
    #[arg(long, value_name = "PEM")]
    other_cert: Option<PathBuf>,
    /// The key of --other-cert; by default its path with a .key extension.
    #[arg(long, value_name = "PEM", requires = "other_cert")]
    other_key: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Give up on a call (and on connecting) after this long.
    #[arg(long, default_value = "10s", value_parser = crate::query::duration)]
    timeout: Duration,
    /// The adapter's largest accepted message; one byte more must be RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
    /// How long a change stream may stay quiet before its replay counts as complete.
    #[arg(long, default_value = "1s", value_parser = crate::query::duration)]
    watch_idle: Duration,
}

/// Records read from the first page to sample a resource.
const SAMPLES: u32 = 3;
/// Page size of the paging walks: small and odd, so that pages rarely line up with anything.
const WALK_PAGE: u32 = 7;
/// A second page size, to check the order does not depend on it.
const WALK_PAGE_ALT: u32 = 30;
/// Records walked per walk; enough to cross many pages without reading a whole register.
const WALK_LIMIT: usize = 210;
/// Change events read from one stream at most.
const MAX_EVENTS: usize = 10_000;
/// Names that no resource, field or record of a real department has.
const NO_SUCH_RESOURCE: &str = "huitong-conformance-no-such-resource";
const NO_SUCH_FIELD: &str = "huitong_conformance_no_such_field";
const NO_SUCH_TEXT: &str = "huitong-conformance-no-such-record-7f3a9c";
const BAD_TOKEN: &str = "huitong-conformance: not a token";
/// Responses may be larger than the client default when a page_size is clamped high.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    /// Passed, with something worth fixing that the protocol does not forbid.
    Warn,
    Fail,
    /// Not applicable or not checkable here; the reason says why.
    Skip,
}

impl Outcome {
    fn symbol(self) -> &'static str {
        match self {
            Outcome::Pass => "✓",
            Outcome::Warn => "!",
            Outcome::Fail => "✗",
            Outcome::Skip => "–",
        }
    }
}

/// One check's result. Field names are part of the `--json` interface.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable id, e.g. `fetch.unknown-key`.
    pub id: &'static str,
    /// The resource's local name, for per-resource checks.
    pub resource: Option<String>,
    pub outcome: Outcome,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub passed: usize,
    pub warned: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// The whole report; `--json` prints exactly this.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    /// False when no check could run: the adapter could not be reached or refused the checker.
    pub reachable: bool,
    /// Why the adapter could not be checked; `null` when it was.
    pub error: Option<String>,
    pub dept: Option<String>,
    /// The identity the adapter presented, when it matched its department.
    pub identity: Option<String>,
    pub software: Option<String>,
    pub checks: Vec<Check>,
    pub summary: Summary,
    /// Reachable and no check failed.
    pub conforms: bool,
}

impl Report {
    fn reached(target: &str) -> Self {
        Report {
            target: target.to_owned(),
            reachable: true,
            error: None,
            dept: None,
            identity: None,
            software: None,
            checks: Vec::new(),
            summary: Summary::default(),
            conforms: false,
        }
    }

    fn unreachable(target: &str, error: String) -> Self {
        Report {
            reachable: false,
            error: Some(error),
            ..Report::reached(target)
        }
    }

    fn finish(mut self) -> Self {
        let count = |o: Outcome| self.checks.iter().filter(|c| c.outcome == o).count();
        self.summary = Summary {
            passed: count(Outcome::Pass),
            warned: count(Outcome::Warn),
            failed: count(Outcome::Fail),
            skipped: count(Outcome::Skip),
        };
        self.conforms = self.reachable && self.summary.failed == 0;
        self
    }

    /// 0 when the adapter conforms, 1 when a check failed, 2 when it could not be checked.
    pub fn exit_code(&self) -> u8 {
        if !self.reachable {
            2
        } else if self.summary.failed > 0 {
            1
        } else {
            0
        }
    }

    /// The readable report: one line per check, then the counts.
    pub fn text(&self) -> String {
        let mut out = format!("Checking the adapter at {}\n", self.target);
        if let Some(e) = &self.error {
            out.push_str(&format!("✗ cannot check it: {e}\n"));
            return out;
        }
        let about: Vec<&str> = [&self.dept, &self.identity, &self.software]
            .into_iter()
            .filter_map(|s| s.as_deref())
            .collect();
        if !about.is_empty() {
            out.push_str(&format!("  {}\n", about.join(", ")));
        }
        for c in &self.checks {
            out.push_str(&c.line());
            out.push('\n');
        }
        let s = &self.summary;
        out.push_str(&format!(
            "{} passed, {} failed, {} skipped, {} warning{}",
            s.passed,
            s.failed,
            s.skipped,
            s.warned,
            if s.warned == 1 { "" } else { "s" }
        ));
        if self.conforms {
            out.push_str(": the adapter conforms\n");
        } else {
            let failed: Vec<String> = self
                .checks
                .iter()
                .filter(|c| c.outcome == Outcome::Fail)
                .map(Check::label)
                .collect();
            out.push_str(&format!(
                ": the adapter does not conform ({})\n",
                failed.join(", ")
            ));
        }
        out
    }
}

impl Check {
    /// `id [resource]`, as the text report names a check.
    pub fn label(&self) -> String {
        match &self.resource {
            Some(r) => format!("{} [{r}]", self.id),
            None => self.id.to_owned(),
        }
    }

    /// The check's line in the text report.
    pub fn line(&self) -> String {
        format!(
            "{} {}: {}",
            self.outcome.symbol(),
            self.label(),
            self.reason
        )
    }
}

pub async fn run(args: Args) -> ExitCode {
    let report = check(&args).await.finish();
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("error: cannot write the report as JSON: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", report.text());
    }
    ExitCode::from(report.exit_code())
}

async fn check(args: &Args) -> Report {
    let target = args.target.as_str();
    let tls = match ClientTls::load(&args.identity.files()) {
        Ok(t) => t,
        Err(e) => return Report::unreachable(target, format!("the checker's certificate: {e}")),
    };
    let other = match &args.other_cert {
        None => None,
        Some(cert) => {
            let files = TlsFiles {
                ca: args.identity.ca.clone(),
                cert: cert.clone(),
                key: args
                    .other_key
                    .clone()
                    .unwrap_or_else(|| cert.with_extension("key")),
                crl: None,
            };
            match ClientTls::load(&files) {
                Ok(t) => Some(t),
                Err(e) => return Report::unreachable(target, format!("--other-cert: {e}")),
            }
        }
    };
    let channel = match connect(&tls, target, Expect::Role(Role::Adapter), args.timeout).await {
        Ok(c) => c,
        Err(e) => return Report::unreachable(target, e),
    };
    let checker = Checker {
        client: client(channel.clone()),
        channel,
        timeout: args.timeout,
        watch_idle: args.watch_idle,
    };
    let describe = match checker.describe().await {
        Ok(d) => d,
        Err(s) if matches!(s.code(), Code::PermissionDenied | Code::Unauthenticated) => {
            let hint = if tls.id().role == Role::Broker {
                String::new()
            } else {
                format!(
                    "; adapters serve only the broker, and the checker presented {}: give a \
                     broker certificate (huitong pki issue --role broker)",
                    tls.id()
                )
            };
            return Report::unreachable(
                target,
                format!(
                    "the adapter refused the checker's certificate: {}{hint}",
                    status_text(&s)
                ),
            );
        }
        Err(s) => {
            let mut report = Report::reached(target);
            report.checks.push(fail(
                "describe.well-formed",
                None,
                format!("Describe failed: {}", status_text(&s)),
            ));
            return report;
        }
    };

    let mut report = Report {
        dept: Some(describe.dept_id.clone()),
        software: Some(describe.software.clone()).filter(|s| !s.is_empty()),
        ..Report::reached(target)
    };
    let described = described(&describe);
    let checks = &mut report.checks;

    // Identity: the broker dials an adapter expecting exactly its department's identity.
    match &described.dept {
        Some(dept) => match PeerId::new(&tls.id().trust_domain, dept.clone(), Role::Adapter) {
            Ok(want) => {
                match connect(&tls, target, Expect::Exactly(want.clone()), args.timeout).await {
                    Ok(_) => {
                        report.identity = Some(want.to_string());
                        checks.push(pass(
                            "identity.presented",
                            None,
                            format!("the adapter presents {want}, the department it describes"),
                        ));
                    }
                    Err(e) => checks.push(fail("identity.presented", None, e)),
                }
            }
            Err(e) => checks.push(fail("identity.presented", None, e.to_string())),
        },
        None => checks.push(skip(
            "identity.presented",
            None,
            "not checked: Describe names no valid department".into(),
        )),
    }
    checks.push(
        refuses_others(
            other.as_ref(),
            target,
            args.timeout,
            // A not-shared resource is refused to everyone, which would prove nothing.
            described
                .specs
                .iter()
                .find(|s| s.sharing_class != SharingClass::NotShared),
        )
        .await,
    );
    checks.extend(described.checks);
    checks.extend(checker.health().await);

    let specs = described.specs;
    if specs.is_empty() {
        return report;
    }
    checks.push(checker.unknown_resource().await);
    checks.push(checker.oversized(&specs[0], args.max_message_bytes).await);
    let mut offers_changes = false;
    for spec in &specs {
        let (resource_checks, offered) = checker.resource(spec).await;
        checks.extend(resource_checks);
        offers_changes |= offered;
    }
    if offers_changes {
        checks.push(checker.changes_unknown_resource().await);
    }
    report
}

fn pass(id: &'static str, resource: Option<&str>, reason: String) -> Check {
    result(id, resource, Outcome::Pass, reason)
}

fn fail(id: &'static str, resource: Option<&str>, reason: String) -> Check {
    result(id, resource, Outcome::Fail, reason)
}

fn skip(id: &'static str, resource: Option<&str>, reason: String) -> Check {
    result(id, resource, Outcome::Skip, reason)
}

fn result(id: &'static str, resource: Option<&str>, outcome: Outcome, reason: String) -> Check {
    Check {
        id,
        resource: resource.map(str::to_owned),
        outcome,
        reason,
    }
}

/// A mutual TLS channel to `target`, connected now so that an unreachable adapter is reported
/// as such; the error says what went wrong (refused, TLS, identity).
async fn connect(
    tls: &ClientTls,
    target: &str,
    expect: Expect,
    timeout: Duration,
) -> Result<Channel, String> {
    let endpoint = huitong_tls::endpoint(target)
        .map_err(|e| e.to_string())?
        .connect_timeout(timeout);
    match tokio::time::timeout(
        timeout,
        endpoint.connect_with_connector(tls.connector(expect)),
    )
    .await
    {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => Err(transport_reason(&e)),
        Err(_) => Err(format!("{target} did not answer within {timeout:?}")),
    }
}

/// The most useful message of a transport error: huitong-tls's (which names the identity
/// presented and expected, or the refused connection), else the whole chain.
fn transport_reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(tls) = err.downcast_ref::<huitong_tls::Error>() {
            return tls.to_string();
        }
        chain.push(err.to_string());
        cur = err.source();
    }
    chain.join(": ")
}

fn client(channel: Channel) -> AdapterClient<Channel> {
    AdapterClient::new(channel)
        .max_decoding_message_size(MAX_RESPONSE_BYTES)
        .max_encoding_message_size(usize::MAX)
}

/// `CODE ("message")`, the message cut short.
fn status_text(s: &Status) -> String {
    let message: String = s.message().chars().take(200).collect();
    if message.is_empty() {
        code_name(s.code()).to_owned()
    } else {
        format!("{} ({message:?})", code_name(s.code()))
    }
}

/// A check that a call is refused with `want`: passes with `what`, else says what came back.
fn expect_code<T>(
    id: &'static str,
    resource: Option<&str>,
    what: &str,
    want: Code,
    got: Result<T, Status>,
) -> Check {
    match got {
        Err(s) if s.code() == want => pass(id, resource, format!("{what} is {}", code_name(want))),
        Err(s) => fail(
            id,
            resource,
            format!(
                "{what} must be {}, but the adapter answered {}",
                code_name(want),
                status_text(&s)
            ),
        ),
        Ok(_) => fail(
            id,
            resource,
            format!(
                "{what} must be {}, but the adapter answered OK",
                code_name(want)
            ),
        ),
    }
}

/// A check that Fetch and Search of `what` are both refused with `want`.
fn both_refused<A, B>(
    id: &'static str,
    resource: Option<&str>,
    what: &str,
    want: Code,
    fetch: Result<A, Status>,
    search: Result<B, Status>,
) -> Check {
    if !matches!(&fetch, Err(s) if s.code() == want) {
        return expect_code(id, resource, &format!("Fetch of {what}"), want, fetch);
    }
    if !matches!(&search, Err(s) if s.code() == want) {
        return expect_code(id, resource, &format!("Search of {what}"), want, search);
    }
    pass(
        id,
        resource,
        format!("Fetch and Search of {what} are {}", code_name(want)),
    )
}

/// What Describe says, checked: the department, the usable resource specs, and the checks.
struct Described {
    dept: Option<DeptId>,
    specs: Vec<ResourceSpec>,
    checks: Vec<Check>,
}

fn described(d: &DescribeResponse) -> Described {
    const ID: &str = "describe.well-formed";
    let dept = match DeptId::new(&d.dept_id) {
        Ok(dept) => dept,
        Err(e) => {
            return Described {
                dept: None,
                specs: Vec::new(),
                checks: vec![fail(ID, None, format!("dept_id: {e}"))],
            };
        }
    };
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut specs: Vec<ResourceSpec> = Vec::new();
    let mut seen = HashSet::new();
    if d.resources.is_empty() {
        problems.push("it describes no resources".to_owned());
    }
    for r in &d.resources {
        let shown: String = r.name.chars().take(80).collect();
        if !seen.insert(r.name.as_str()) {
            problems.push(format!(
                "resource {shown:?} is described twice; names must be distinct"
            ));
            continue;
        }
        // The broker reads descriptions with this very function, so what passes here is what
        // the catalogue accepts.
        let spec = match convert::resource_spec(&dept, r) {
            Ok(spec) => spec,
            Err(e) => {
                problems.push(format!("resource {shown:?}: {e}"));
                continue;
            }
        };
        if spec.sharing_class != SharingClass::Open && spec.legal_basis.trim().is_empty() {
            problems.push(format!(
                "resource {shown}: a {} resource must name its legal basis",
                spec.sharing_class
            ));
            continue;
        }
        if spec.title.trim().is_empty() {
            warnings.push(format!(
                "resource {shown} has no title; the catalogue shows it to consumers"
            ));
        }
        specs.push(spec);
    }
    let summary: Vec<String> = specs
        .iter()
        .map(|s| {
            let keys: Vec<&str> = s.key_fields().iter().map(FieldName::as_str).collect();
            format!(
                "{} ({} fields, key {}, {})",
                s.id().name(),
                s.fields().len(),
                keys.join("+"),
                s.sharing_class
            )
        })
        .collect();
    let check = if !problems.is_empty() {
        fail(ID, None, problems.join("; "))
    } else if !warnings.is_empty() {
        result(ID, None, Outcome::Warn, warnings.join("; "))
    } else {
        pass(
            ID,
            None,
            format!("department {dept}, resources: {}", summary.join(", ")),
        )
    };
    Described {
        dept: Some(dept),
        specs,
        checks: vec![check],
    }
}

/// The adapter must refuse a caller that is not the broker: consumers would otherwise bypass
/// the broker's grants by dialling a department directly.
async fn refuses_others(
    other: Option<&ClientTls>,
    target: &str,
    timeout: Duration,
    spec: Option<&ResourceSpec>,
) -> Check {
    const ID: &str = "identity.refuses-non-broker";
    let Some(other) = other else {
        return skip(
            ID,
            None,
            "not checked: give --other-cert with a certificate of this exchange in another role \
             (e.g. a consumer's) to check that the adapter refuses it"
                .into(),
        );
    };
    let who = other.id().to_string();
    if other.id().role == Role::Broker {
        return skip(
            ID,
            None,
            format!("not checked: --other-cert is {who}, a broker; give one in another role"),
        );
    }
    let channel = match connect(other, target, Expect::Role(Role::Adapter), timeout).await {
        Ok(c) => c,
        Err(e) => {
            return result(
                ID,
                None,
                Outcome::Warn,
                format!(
                    "{who} was refused during the TLS handshake ({e}); refusing it with \
                     PERMISSION_DENIED after the handshake tells the caller why"
                ),
            );
        }
    };
    let checker = Checker {
        client: client(channel.clone()),
        channel,
        timeout,
        watch_idle: timeout,
    };
    let mut calls = vec![("Describe", checker.describe().await.map(|_| ()))];
    if let Some(spec) = spec {
        let search = checker
            .search(spec.id().name().as_str(), vec![], all_fields(spec), 1, "")
            .await;
        calls.push(("Search", search.map(|_| ())));
    }
    if let Some((call, _)) = calls.iter().find(|(_, r)| r.is_ok()) {
        return fail(
            ID,
            None,
            format!("{call} answered {who}; an adapter must serve only the broker"),
        );
    }
    let codes: Vec<Code> = calls
        .iter()
        .filter_map(|(_, r)| r.as_ref().err().map(Status::code))
        .collect();
    if codes.iter().all(|c| *c == Code::PermissionDenied) {
        pass(ID, None, format!("{who} is refused with PERMISSION_DENIED"))
    } else if codes
        .iter()
        .all(|c| matches!(c, Code::PermissionDenied | Code::Unauthenticated))
    {
        result(
            ID,
            None,
            Outcome::Warn,
            format!(
                "{who} is refused, but with UNAUTHENTICATED; the protocol answers a valid \
                 certificate in the wrong role with PERMISSION_DENIED"
            ),
        )
    } else {
        let got: Vec<&str> = codes.iter().map(|c| code_name(*c)).collect();
        fail(
            ID,
            None,
            format!(
                "{who} must be refused with PERMISSION_DENIED, but the adapter answered {}",
                got.join(" and ")
            ),
        )
    }
}

fn all_fields(spec: &ResourceSpec) -> Vec<String> {
    spec.fields().iter().map(|f| f.name.to_string()).collect()
}

fn key_field_names(spec: &ResourceSpec) -> Vec<String> {
    spec.key_fields().iter().map(ToString::to_string).collect()
}

/// A value of `ty` that no real record holds, or `None` for bool (only two values exist).
fn unlikely_value(ty: FieldType) -> Option<Value> {
    Some(match ty {
        FieldType::String => Value::string(NO_SUCH_TEXT),
        FieldType::Int => Value::int(i64::MIN + 7_919),
        FieldType::Double => Value::double(-7.919e300),
        FieldType::Bool => return None,
        FieldType::Bytes => Value {
            kind: Some(huitong_proto::v1::value::Kind::BytesValue(
                NO_SUCH_TEXT.as_bytes().to_vec(),
            )),
        },
        FieldType::Date => Value::date(1, 2, 3),
        FieldType::Timestamp => Value::timestamp(std::time::UNIX_EPOCH + Duration::from_secs(7)),
    })
}

/// Whether `message` repeats `value`: its text as a consumer would have written it.
fn quotes_value(message: &str, value: &Value) -> bool {
    let text = match value.to_json() {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    // Short values (a digit, `true`) occur in any sentence; the checker's own are long.
    text.len() >= 6 && message.contains(&text)
}

/// A value of a type `ty` does not accept (ints count as doubles, so a double gets a string).
fn wrong_typed_value(ty: FieldType) -> Value {
    match ty {
        FieldType::String => Value::int(7),
        _ => Value::string("huitong-conformance"),
    }
}

/// A key of a record that does not exist: one field gets an unlikely value, the others the
/// sample's (or any valid) values.
fn unknown_key(spec: &ResourceSpec, sample: Option<&Record>) -> Option<HashMap<String, Value>> {
    let mut key = HashMap::new();
    let mut replaced = false;
    for name in spec.key_fields() {
        let ty = spec.field(name.as_str())?.ty;
        let value = match (replaced, unlikely_value(ty)) {
            (false, Some(v)) => {
                replaced = true;
                v
            }
            _ => sample
                .and_then(|r| r.fields.get(name.as_str()).cloned())
                .or_else(|| unlikely_value(ty))
                .unwrap_or_else(|| Value::bool(true)),
        };
        key.insert(name.to_string(), value);
    }
    replaced.then_some(key)
}

/// A record's key, if it holds every key field.
fn key_of(spec: &ResourceSpec, record: &Record) -> Option<HashMap<String, Value>> {
    spec.key_fields()
        .iter()
        .map(|k| {
            record
                .fields
                .get(k.as_str())
                .map(|v| (k.to_string(), v.clone()))
        })
        .collect()
}

/// The key's values in key-field order, encoded, for telling records apart.
fn key_bytes(spec: &ResourceSpec, key: &HashMap<String, Value>) -> Vec<u8> {
    use prost::Message;
    let mut out = Vec::new();
    for k in spec.key_fields() {
        if let Some(v) = key.get(k.as_str()) {
            let bytes = v.encode_to_vec();
            out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            out.extend_from_slice(&bytes);
        } else {
            out.extend_from_slice(&u64::MAX.to_be_bytes());
        }
    }
    out
}

/// Problems with a returned record: requested fields missing, values of the wrong type; and
/// fields returned that were not requested (a warning).
fn record_problems(
    spec: &ResourceSpec,
    record: &Record,
    requested: &[String],
) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    for name in requested {
        match record.fields.get(name) {
            None => problems.push(format!("requested field {name} is missing")),
            Some(v) => {
                if let Some(f) = spec.field(name) {
                    let kind = v.value_kind();
                    if kind != huitong_core::ValueKind::Null && !f.ty.accepts(kind) {
                        problems.push(format!(
                            "field {name} is described as {} but holds another type",
                            f.ty
                        ));
                    }
                }
            }
        }
    }
    let mut extra: Vec<String> = record
        .fields
        .keys()
        .filter(|k| !requested.contains(k))
        .cloned()
        .collect();
    extra.sort();
    (problems, extra)
}

/// One walk through every page of a resource (up to [`WALK_LIMIT`] records).
struct Walk {
    keys: Vec<Vec<u8>>,
    pages: usize,
    complete: bool,
}

/// How a change stream was read.
struct Changes {
    events: Vec<ChangeEvent>,
    /// The server ended the stream (it should stay open for live changes).
    closed: bool,
}

struct Checker {
    client: AdapterClient<Channel>,
    channel: Channel,
    timeout: Duration,
    watch_idle: Duration,
}

impl Checker {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        req.set_timeout(self.timeout);
        req
    }

    /// Bounds a call by the timeout, also when the adapter ignores grpc-timeout.
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, Status> {
        match tokio::time::timeout(self.timeout + Duration::from_secs(1), call).await {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }

    async fn describe(&self) -> Result<DescribeResponse, Status> {
        let mut c = self.client.clone();
        self.bounded(c.describe(self.request(DescribeRequest {})))
            .await
    }

    async fn fetch(
        &self,
        resource: &str,
        key: HashMap<String, Value>,
        fields: Vec<String>,
    ) -> Result<Option<Record>, Status> {
        let mut c = self.client.clone();
        let req = self.request(FetchRequest {
            resource: resource.to_owned(),
            key,
            fields,
        });
        self.bounded(c.fetch(req)).await.map(|r| r.record)
    }

    async fn search(
        &self,
        resource: &str,
        filters: Vec<Filter>,
        fields: Vec<String>,
        page_size: u32,
        page_token: &str,
    ) -> Result<SearchResponse, Status> {
        let mut c = self.client.clone();
        let req = self.request(SearchRequest {
            resource: resource.to_owned(),
            filters,
            fields,
            page_size,
            page_token: page_token.to_owned(),
        });
        self.bounded(c.search(req)).await
    }

    /// gRPC health: the broker and load balancers ask it whether the adapter serves.
    /// Reflection only serves tools, so its absence is a warning.
    async fn health(&self) -> Vec<Check> {
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let mut health = HealthClient::new(self.channel.clone());
        let mut problems = Vec::new();
        for service in ["", "huitong.v1.Adapter"] {
            let req = self.request(HealthCheckRequest {
                service: service.into(),
            });
            match self.bounded(health.check(req)).await {
                Ok(r) if r.status() == ServingStatus::Serving => {}
                Ok(r) => problems.push(format!(
                    "service {service:?} is {}",
                    r.status().as_str_name()
                )),
                Err(s) => problems.push(format!("service {service:?}: {}", status_text(&s))),
            }
        }
        let health = if problems.is_empty() {
            pass(
                "health.serving",
                None,
                "grpc.health.v1 reports \"\" and huitong.v1.Adapter SERVING".into(),
            )
        } else {
            fail(
                "health.serving",
                None,
                format!(
                    "grpc.health.v1 must report SERVING: {}",
                    problems.join("; ")
                ),
            )
        };
        vec![health, self.reflection().await]
    }

    async fn reflection(&self) -> Check {
        const ID: &str = "reflection.lists-adapter";
        match self.reflected_services().await {
            Ok(services) if services.iter().any(|s| s == "huitong.v1.Adapter") => pass(
                ID,
                None,
                "server reflection lists huitong.v1.Adapter".into(),
            ),
            Ok(services) => result(
                ID,
                None,
                Outcome::Warn,
                format!(
                    "server reflection does not list huitong.v1.Adapter (it lists {}); grpcurl \
                     and other tools need it",
                    services.join(", ")
                ),
            ),
            Err(e) => result(
                ID,
                None,
                Outcome::Warn,
                format!("server reflection is not served ({e}); grpcurl and other tools need it"),
            ),
        }
    }

    /// Services listed by reflection v1, or v1alpha when v1 is not served.
    async fn reflected_services(&self) -> Result<Vec<String>, String> {
        use tonic_reflection::pb::{v1, v1alpha};
        let v1_req = v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        };
        let mut client =
            v1::server_reflection_client::ServerReflectionClient::new(self.channel.clone());
        let v1_err = match self
            .bounded(client.server_reflection_info(self.request(tokio_stream::once(v1_req))))
            .await
        {
            Ok(mut stream) => match self.next(&mut stream).await {
                Ok(Some(resp)) => match resp.message_response {
                    Some(
                        v1::server_reflection_response::MessageResponse::ListServicesResponse(l),
                    ) => return Ok(l.service.into_iter().map(|s| s.name).collect()),
                    _ => "an answer that does not list services".to_owned(),
                },
                Ok(None) => "no answer".to_owned(),
                Err(s) => status_text(&s),
            },
            Err(s) => status_text(&s),
        };
        let alpha_req = v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
            ),
        };
        let mut client =
            v1alpha::server_reflection_client::ServerReflectionClient::new(self.channel.clone());
        let mut stream = self
            .bounded(client.server_reflection_info(self.request(tokio_stream::once(alpha_req))))
            .await
            .map_err(|s| format!("v1: {v1_err}; v1alpha: {}", status_text(&s)))?;
        match self.next(&mut stream).await {
            Ok(Some(resp)) => match resp.message_response {
                Some(
                    v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(l),
                ) => Ok(l.service.into_iter().map(|s| s.name).collect()),
                _ => Err("an answer that does not list services".into()),
            },
            Ok(None) => Err("no answer".into()),
            Err(s) => Err(status_text(&s)),
        }
    }

    /// The next message of a stream within the timeout.
    async fn next<T>(&self, stream: &mut tonic::Streaming<T>) -> Result<Option<T>, Status> {
        match tokio::time::timeout(self.timeout, stream.message()).await {
            Ok(r) => r,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no message within {:?}",
                self.timeout
            ))),
        }
    }

    /// A resource the adapter does not serve is NOT_FOUND, for Fetch and Search alike.
    async fn unknown_resource(&self) -> Check {
        let fetch = self
            .fetch(
                NO_SUCH_RESOURCE,
                [("id".to_owned(), Value::string("1"))].into(),
                vec!["id".into()],
            )
            .await;
        let search = self
            .search(NO_SUCH_RESOURCE, vec![], vec!["id".into()], 1, "")
            .await;
        both_refused(
            "request.unknown-resource",
            None,
            "an unknown resource",
            Code::NotFound,
            fetch,
            search,
        )
    }

    /// A request over the message limit is RESOURCE_EXHAUSTED (not refused some other way).
    async fn oversized(&self, spec: &ResourceSpec, max: usize) -> Check {
        const ID: &str = "limits.oversized-message";
        let size = max.saturating_add(1024);
        let got = self
            .fetch(
                spec.id().name().as_str(),
                HashMap::new(),
                vec!["x".repeat(size)],
            )
            .await;
        match got {
            Err(s) if s.code() == Code::ResourceExhausted => pass(
                ID,
                None,
                format!("a request of {size} bytes (limit {max}) is RESOURCE_EXHAUSTED"),
            ),
            // The message was read, so the adapter accepts larger ones than assumed.
            Err(s) if s.code() == Code::InvalidArgument => skip(
                ID,
                None,
                format!(
                    "not checked: the adapter read a request of {size} bytes, so its limit is \
                     above {max}; pass its max_message_bytes with --max-message-bytes"
                ),
            ),
            other => expect_code(
                ID,
                None,
                &format!("a request of {size} bytes (limit {max})"),
                Code::ResourceExhausted,
                other,
            ),
        }
    }

    /// Every check of one resource; also whether it offers a change stream.
    async fn resource(&self, spec: &ResourceSpec) -> (Vec<Check>, bool) {
        let name = spec.id().name().as_str();
        let r = Some(name);
        let mut checks = Vec::new();

        if spec.sharing_class == SharingClass::NotShared {
            checks.push(self.not_shared(spec).await);
            return (checks, false);
        }

        // Samples: the first page of all records, with every field.
        let fields = all_fields(spec);
        let samples: Vec<Record> =
            match self.search(name, vec![], fields.clone(), SAMPLES, "").await {
                Ok(page) => {
                    let mut problems = Vec::new();
                    if page.records.len() > SAMPLES as usize {
                        problems.push(format!(
                            "{} records for page_size {SAMPLES}",
                            page.records.len()
                        ));
                    }
                    for (i, rec) in page.records.iter().enumerate() {
                        let (p, extra) = record_problems(spec, rec, &fields);
                        problems.extend(p.into_iter().map(|p| format!("record {}: {p}", i + 1)));
                        if !extra.is_empty() {
                            problems.push(format!(
                                "record {}: fields {} are not described",
                                i + 1,
                                extra.join(", ")
                            ));
                        }
                        if key_of(spec, rec).is_none() {
                            problems.push(format!("record {}: a key field is missing", i + 1));
                        }
                    }
                    if problems.is_empty() {
                        checks.push(pass(
                            "search.records",
                            r,
                            format!(
                                "the first page holds {} record(s) with every requested field, \
                             typed as described",
                                page.records.len()
                            ),
                        ));
                        page.records
                    } else {
                        checks.push(fail("search.records", r, problems.join("; ")));
                        Vec::new()
                    }
                }
                Err(s) => {
                    checks.push(fail(
                        "search.records",
                        r,
                        format!("Search of all records failed: {}", status_text(&s)),
                    ));
                    Vec::new()
                }
            };
        let sample = samples.first();

        checks.push(self.same_record(spec, &samples).await);
        checks.push(self.selected_fields(spec, sample).await);
        checks.push(self.filter(spec, sample).await);
        checks.extend(self.bad_keys(spec, sample).await);

        let key = sample
            .and_then(|s| key_of(spec, s))
            .or_else(|| unknown_key(spec, None))
            .unwrap_or_default();
        let unknown_field = self
            .fetch(name, key.clone(), vec![NO_SUCH_FIELD.into()])
            .await;
        checks.push(expect_code(
            "fetch.unknown-field",
            r,
            "Fetch asking for an undescribed field",
            Code::InvalidArgument,
            unknown_field,
        ));
        let no_fields = self.fetch(name, key, vec![]).await;
        checks.push(expect_code(
            "fetch.no-fields",
            r,
            "Fetch naming no fields",
            Code::InvalidArgument,
            no_fields,
        ));
        let unknown_filter = self
            .search(
                name,
                vec![Filter {
                    field: NO_SUCH_FIELD.into(),
                    value: Some(Value::string("x")),
                }],
                key_field_names(spec),
                1,
                "",
            )
            .await;
        checks.push(expect_code(
            "search.unknown-filter",
            r,
            "Search filtering on an undescribed field",
            Code::InvalidArgument,
            unknown_filter,
        ));

        checks.push(self.paging(spec).await);
        let bad_token = self
            .search(name, vec![], key_field_names(spec), WALK_PAGE, BAD_TOKEN)
            .await;
        checks.push(expect_code(
            "search.bad-page-token",
            r,
            "Search with a page_token the adapter never issued",
            Code::InvalidArgument,
            bad_token,
        ));
        checks.push(
            match self
                .search(name, vec![], key_field_names(spec), u32::MAX, "")
                .await
            {
                Ok(page) => pass(
                    "limits.page-size-clamped",
                    r,
                    format!(
                        "page_size {} is served ({} records), not refused",
                        u32::MAX,
                        page.records.len()
                    ),
                ),
                Err(s) => fail(
                    "limits.page-size-clamped",
                    r,
                    format!(
                        "a page_size above the adapter's maximum must be reduced to it, but the \
                         adapter answered {}",
                        status_text(&s)
                    ),
                ),
            },
        );

        let (change_checks, offered) = self.changes(spec).await;
        checks.extend(change_checks);
        (checks, offered)
    }

    /// A not-shared resource is described (it is in the catalogue) but never served.
    async fn not_shared(&self, spec: &ResourceSpec) -> Check {
        let name = spec.id().name().as_str();
        let key = unknown_key(spec, None).unwrap_or_default();
        let fetch = self.fetch(name, key, all_fields(spec)).await;
        let search = self.search(name, vec![], all_fields(spec), 1, "").await;
        both_refused(
            "request.not-shared",
            Some(name),
            "a not-shared resource",
            Code::PermissionDenied,
            fetch,
            search,
        )
    }

    async fn same_record(&self, spec: &ResourceSpec, samples: &[Record]) -> Check {
        const ID: &str = "fetch.same-record";
        let name = spec.id().name().as_str();
        if samples.is_empty() {
            return skip(ID, Some(name), "not checked: no sample records".into());
        }
        for (i, sample) in samples.iter().enumerate() {
            let Some(key) = key_of(spec, sample) else {
                return fail(
                    ID,
                    Some(name),
                    format!("sample {} has no complete key", i + 1),
                );
            };
            match self.fetch(name, key, all_fields(spec)).await {
                Ok(Some(record)) if &record == sample => {}
                Ok(Some(record)) => {
                    let mut differ: Vec<&str> = spec
                        .fields()
                        .iter()
                        .map(|f| f.name.as_str())
                        .filter(|f| record.fields.get(*f) != sample.fields.get(*f))
                        .collect();
                    differ.sort_unstable();
                    return fail(
                        ID,
                        Some(name),
                        format!(
                            "Fetch by the key of sample {} returned a different record (fields \
                             {} differ from Search's)",
                            i + 1,
                            differ.join(", ")
                        ),
                    );
                }
                Ok(None) => {
                    return fail(
                        ID,
                        Some(name),
                        format!("Fetch by the key of sample {} returned no record", i + 1),
                    );
                }
                Err(s) => {
                    return fail(
                        ID,
                        Some(name),
                        format!(
                            "Fetch by the key of sample {} failed: {}",
                            i + 1,
                            status_text(&s)
                        ),
                    );
                }
            }
        }
        pass(
            ID,
            Some(name),
            format!(
                "Fetch by key returns the record Search returned, for {} sample(s)",
                samples.len()
            ),
        )
    }

    /// Fields requested are returned; more is allowed (the broker releases only the requested
    /// ones) but sends data over the link that nobody asked for, so it is a warning.
    async fn selected_fields(&self, spec: &ResourceSpec, sample: Option<&Record>) -> Check {
        const ID: &str = "fields.selected";
        let name = spec.id().name().as_str();
        let Some(key) = sample.and_then(|s| key_of(spec, s)) else {
            return skip(ID, Some(name), "not checked: no sample record".into());
        };
        // A field that is not part of the key shows best whether selection happens.
        let field = spec
            .fields()
            .iter()
            .find(|f| !spec.key_fields().contains(&f.name))
            .or_else(|| spec.fields().first())
            .map(|f| f.name.to_string())
            .unwrap_or_default();
        let requested = vec![field.clone()];
        let mut problems = Vec::new();
        let mut extras = Vec::new();
        match self.fetch(name, key, requested.clone()).await {
            Ok(Some(rec)) => {
                let (p, extra) = record_problems(spec, &rec, &requested);
                problems.extend(p.into_iter().map(|p| format!("Fetch: {p}")));
                extras.extend(extra);
            }
            Ok(None) => problems.push("Fetch returned no record".into()),
            Err(s) => problems.push(format!("Fetch failed: {}", status_text(&s))),
        }
        match self
            .search(name, vec![], requested.clone(), SAMPLES, "")
            .await
        {
            Ok(page) => {
                for rec in &page.records {
                    let (p, extra) = record_problems(spec, rec, &requested);
                    problems.extend(p.into_iter().map(|p| format!("Search: {p}")));
                    extras.extend(extra);
                }
            }
            Err(s) => problems.push(format!("Search failed: {}", status_text(&s))),
        }
        extras.sort();
        extras.dedup();
        if !problems.is_empty() {
            fail(ID, Some(name), problems.join("; "))
        } else if !extras.is_empty() {
            result(
                ID,
                Some(name),
                Outcome::Warn,
                format!(
                    "asked for {field} only, the adapter also sent {}; the broker releases only \
                     what was asked, but the rest crosses the network for nothing",
                    extras.join(", ")
                ),
            )
        } else {
            pass(
                ID,
                Some(name),
                format!("Fetch and Search asked for {field} return exactly that field"),
            )
        }
    }

    /// Search by a sample's first key field returns that record and only matching ones.
    async fn filter(&self, spec: &ResourceSpec, sample: Option<&Record>) -> Check {
        const ID: &str = "search.filter";
        let name = spec.id().name().as_str();
        let (Some(sample), Some(field)) = (sample, spec.key_fields().first()) else {
            return skip(ID, Some(name), "not checked: no sample record".into());
        };
        let Some(value) = sample.fields.get(field.as_str()).cloned() else {
            return skip(ID, Some(name), "not checked: the sample has no key".into());
        };
        let keys = key_field_names(spec);
        let filter = Filter {
            field: field.to_string(),
            value: Some(value.clone()),
        };
        match self
            .search(name, vec![filter], keys, WALK_PAGE_ALT, "")
            .await
        {
            Ok(page) => {
                let want = key_of(spec, sample).map(|k| key_bytes(spec, &k));
                let found = page
                    .records
                    .iter()
                    .any(|r| key_of(spec, r).map(|k| key_bytes(spec, &k)) == want);
                let all_match = page
                    .records
                    .iter()
                    .all(|r| r.fields.get(field.as_str()) == Some(&value));
                if !all_match {
                    fail(
                        ID,
                        Some(name),
                        format!("Search filtered on {field} returned records with another {field}"),
                    )
                } else if !found && page.next_page_token.is_empty() {
                    fail(
                        ID,
                        Some(name),
                        format!(
                            "Search filtered on the sample's {field} did not return the sample"
                        ),
                    )
                } else {
                    pass(
                        ID,
                        Some(name),
                        format!("Search filtered on {field} returns only matching records"),
                    )
                }
            }
            Err(s) => fail(
                ID,
                Some(name),
                format!("Search filtered on {field} failed: {}", status_text(&s)),
            ),
        }
    }

    /// Keys that identify nothing, lack a key field, or carry a value of the wrong type.
    async fn bad_keys(&self, spec: &ResourceSpec, sample: Option<&Record>) -> Vec<Check> {
        let name = spec.id().name().as_str();
        let r = Some(name);
        let fields = key_field_names(spec);
        let mut checks = Vec::new();
        match unknown_key(spec, sample) {
            Some(key) => {
                let got = self.fetch(name, key.clone(), fields.clone()).await;
                let quoted = matches!(&got, Err(s) if s.code() == Code::NotFound
                    && key.values().any(|v| quotes_value(s.message(), v)));
                checks.push(if quoted {
                    // The code is the contract; the message is read by people and kept in logs
                    // along the way, so it must not carry the key a consumer asked about.
                    fail(
                        "fetch.unknown-key",
                        r,
                        "Fetch of a key no record has is NOT_FOUND, but the message repeats the \
                         key's value; say only that no record has that key"
                            .into(),
                    )
                } else {
                    expect_code(
                        "fetch.unknown-key",
                        r,
                        "Fetch of a key no record has",
                        Code::NotFound,
                        got,
                    )
                });
            }
            None => checks.push(skip(
                "fetch.unknown-key",
                r,
                "not checked: every key field is a bool, so no key is surely unknown".into(),
            )),
        }
        let base = sample
            .and_then(|s| key_of(spec, s))
            .or_else(|| unknown_key(spec, None))
            .unwrap_or_default();
        let mut missing = base.clone();
        if let Some(first) = spec.key_fields().first() {
            missing.remove(first.as_str());
        }
        let got = self.fetch(name, missing, fields.clone()).await;
        checks.push(expect_code(
            "fetch.key-missing-field",
            r,
            "Fetch with a key field left out",
            Code::InvalidArgument,
            got,
        ));
        let mut wrong = base;
        if let Some(first) = spec.key_fields().first()
            && let Some(f) = spec.field(first.as_str())
        {
            wrong.insert(first.to_string(), wrong_typed_value(f.ty));
        }
        let got = self.fetch(name, wrong, fields).await;
        checks.push(expect_code(
            "fetch.key-wrong-type",
            r,
            "Fetch with a key value of the wrong type",
            Code::InvalidArgument,
            got,
        ));
        checks
    }

    /// Walks the pages of a resource, asking for its key fields only.
    async fn walk(&self, spec: &ResourceSpec, page_size: u32) -> Result<Walk, String> {
        let name = spec.id().name().as_str();
        let mut walk = Walk {
            keys: Vec::new(),
            pages: 0,
            complete: false,
        };
        let mut token = String::new();
        let mut tokens = HashSet::new();
        loop {
            let page = self
                .search(name, vec![], key_field_names(spec), page_size, &token)
                .await
                .map_err(|s| format!("page {} failed: {}", walk.pages + 1, status_text(&s)))?;
            walk.pages += 1;
            if page.records.len() > page_size as usize {
                return Err(format!(
                    "page {} holds {} records for page_size {page_size}",
                    walk.pages,
                    page.records.len()
                ));
            }
            for rec in &page.records {
                let key = key_of(spec, rec)
                    .ok_or_else(|| format!("page {} holds a record without its key", walk.pages))?;
                walk.keys.push(key_bytes(spec, &key));
            }
            if page.next_page_token.is_empty() {
                walk.complete = true;
                return Ok(walk);
            }
            if walk.keys.len() >= WALK_LIMIT {
                return Ok(walk);
            }
            if !tokens.insert(page.next_page_token.clone()) {
                return Err(format!(
                    "page {} hands out a next_page_token it handed out before; paging would \
                     never end",
                    walk.pages
                ));
            }
            token = page.next_page_token;
        }
    }

    /// Two walks at one page size and one at another give the same records in the same order,
    /// each record once.
    async fn paging(&self, spec: &ResourceSpec) -> Check {
        const ID: &str = "search.paging";
        let name = spec.id().name().as_str();
        let mut walks = Vec::new();
        for size in [WALK_PAGE, WALK_PAGE, WALK_PAGE_ALT] {
            match self.walk(spec, size).await {
                Ok(w) => walks.push((size, w)),
                Err(e) => return fail(ID, Some(name), format!("page_size {size}: {e}")),
            }
        }
        let [(_, first), (_, second), (alt_size, alt)] = &walks[..] else {
            return fail(ID, Some(name), "the walks did not run".into());
        };
        let mut seen = HashSet::new();
        if let Some(i) = first.keys.iter().position(|k| !seen.insert(k)) {
            return fail(
                ID,
                Some(name),
                format!(
                    "walking with page_size {WALK_PAGE}, record {} is one already returned",
                    i + 1
                ),
            );
        }
        let compare = |a: &Walk, b: &Walk| -> Option<usize> {
            let n = a.keys.len().min(b.keys.len());
            if let Some(i) = (0..n).find(|&i| a.keys[i] != b.keys[i]) {
                return Some(i);
            }
            // A complete walk must not be shorter than another walk.
            let shorter = (a.complete && a.keys.len() < b.keys.len())
                || (b.complete && b.keys.len() < a.keys.len());
            shorter.then_some(n)
        };
        if let Some(i) = compare(first, second) {
            return fail(
                ID,
                Some(name),
                format!(
                    "two walks with page_size {WALK_PAGE} differ from record {} on; the order \
                     must be stable",
                    i + 1
                ),
            );
        }
        if let Some(i) = compare(first, alt) {
            return fail(
                ID,
                Some(name),
                format!(
                    "walks with page_size {WALK_PAGE} and {alt_size} differ from record {} on; \
                     the order must not depend on the page size",
                    i + 1
                ),
            );
        }
        let extent = if first.complete {
            format!("all {} records", first.keys.len())
        } else {
            format!("the first {} records", first.keys.len())
        };
        pass(
            ID,
            Some(name),
            format!(
                "three walks (page_size {WALK_PAGE}, {WALK_PAGE}, {alt_size}) through {extent} \
                 ({} pages) agree, each record once, no page over its size",
                first.pages
            ),
        )
    }

    /// Opens a change stream; `Err` when the call or its first message is refused.
    async fn watch(&self, resource: &str, cursor: &str) -> Result<Changes, Status> {
        let mut c = self.client.clone();
        // No grpc-timeout: the stream stays open on purpose, reading is bounded below.
        let call = c.watch_changes(WatchChangesRequest {
            resource: resource.to_owned(),
            cursor: cursor.to_owned(),
        });
        let mut stream = match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => r?.into_inner(),
            Err(_) => {
                return Err(Status::deadline_exceeded(format!(
                    "no answer within {:?}",
                    self.timeout
                )));
            }
        };
        let mut changes = Changes {
            events: Vec::new(),
            closed: false,
        };
        while changes.events.len() < MAX_EVENTS {
            match tokio::time::timeout(self.watch_idle, stream.message()).await {
                // Quiet for a while: the replay is over.
                Err(_) => break,
                Ok(Ok(Some(event))) => changes.events.push(event),
                Ok(Ok(None)) => {
                    changes.closed = true;
                    break;
                }
                Ok(Err(s)) => return Err(s),
            }
        }
        Ok(changes)
    }

    /// The change stream: replay from an empty cursor, resume after a cursor, refuse a
    /// malformed cursor. Not offering one (UNIMPLEMENTED) is allowed.
    async fn changes(&self, spec: &ResourceSpec) -> (Vec<Check>, bool) {
        let name = spec.id().name().as_str();
        let r = Some(name);
        let replay = match self.watch(name, "").await {
            Err(s) if s.code() == Code::Unimplemented => {
                return (
                    vec![skip(
                        "changes.replay",
                        r,
                        "change stream: not offered (WatchChanges is UNIMPLEMENTED)".into(),
                    )],
                    false,
                );
            }
            Err(s) => {
                return (
                    vec![fail(
                        "changes.replay",
                        r,
                        format!(
                            "WatchChanges from an empty cursor failed: {}",
                            status_text(&s)
                        ),
                    )],
                    true,
                );
            }
            Ok(c) => c,
        };
        let mut checks = Vec::new();
        let mut problems = Vec::new();
        let mut cursors = HashSet::new();
        for (i, e) in replay.events.iter().enumerate() {
            let n = i + 1;
            if e.cursor.is_empty() {
                problems.push(format!("event {n} has no cursor"));
            } else if !cursors.insert(e.cursor.as_str()) {
                problems.push(format!("event {n} repeats an earlier event's cursor"));
            }
            if e.resource != name && e.resource != spec.id().to_string() {
                problems.push(format!("event {n} names another resource"));
            }
            let mut key: Vec<&str> = e.key.keys().map(String::as_str).collect();
            key.sort_unstable();
            let mut want: Vec<&str> = spec.key_fields().iter().map(FieldName::as_str).collect();
            want.sort_unstable();
            if key != want {
                problems.push(format!("event {n} does not carry exactly the key fields"));
            }
            if let Some(rec) = &e.record {
                let undescribed = rec.fields.keys().any(|f| spec.field(f).is_none());
                if undescribed {
                    problems.push(format!("event {n} holds undescribed fields"));
                }
            }
            if problems.len() > 5 {
                break;
            }
        }
        let ended = if replay.closed {
            " The stream then ended; it should stay open for live changes."
        } else {
            ""
        };
        checks.push(if !problems.is_empty() {
            fail("changes.replay", r, problems.join("; "))
        } else if replay.events.is_empty() && !replay.closed {
            pass(
                "changes.replay",
                r,
                "no events retained yet; the stream stays open for live changes".into(),
            )
        } else if replay.closed {
            result(
                "changes.replay",
                r,
                Outcome::Warn,
                format!(
                    "{} retained event(s) replayed from an empty cursor.{ended}",
                    replay.events.len()
                ),
            )
        } else {
            pass(
                "changes.replay",
                r,
                format!(
                    "{} retained event(s) replayed from an empty cursor, each with its own \
                     cursor; the stream stays open",
                    replay.events.len()
                ),
            )
        });

        checks.push(self.resume(name, &replay).await);
        let bad = self.watch(name, BAD_TOKEN).await;
        checks.push(expect_code(
            "changes.bad-cursor",
            r,
            "WatchChanges from a malformed cursor",
            Code::InvalidArgument,
            bad,
        ));
        (checks, true)
    }

    /// Resuming from an event's cursor yields exactly the events after it.
    async fn resume(&self, name: &str, replay: &Changes) -> Check {
        const ID: &str = "changes.resume";
        let r = Some(name);
        if replay.events.is_empty() {
            return skip(ID, r, "not checked: no events are retained".into());
        }
        let i = replay.events.len() / 2;
        let after = &replay.events[i + 1..];
        match self.watch(name, &replay.events[i].cursor).await {
            Ok(resumed) => {
                // Events after the replay are live ones, which may arrive at any time.
                let n = resumed.events.len().min(after.len());
                let complete = replay.events.len() < MAX_EVENTS;
                if resumed.events[..n] != after[..n]
                    || (complete && resumed.events.len() < after.len())
                {
                    let at = (0..n).find(|&j| resumed.events[j] != after[j]).unwrap_or(n);
                    fail(
                        ID,
                        r,
                        format!(
                            "resuming after event {} must yield the {} events after it, but \
                             the stream differs from event {} on",
                            i + 1,
                            after.len(),
                            i + 2 + at
                        ),
                    )
                } else {
                    pass(
                        ID,
                        r,
                        format!(
                            "resuming after event {} of {} yields exactly the {} events after it",
                            i + 1,
                            replay.events.len(),
                            after.len()
                        ),
                    )
                }
            }
            Err(s) => fail(
                ID,
                r,
                format!(
                    "WatchChanges from event {}'s cursor failed: {}",
                    i + 1,
                    status_text(&s)
                ),
            ),
        }
    }

    async fn changes_unknown_resource(&self) -> Check {
        let got = self.watch(NO_SUCH_RESOURCE, "").await;
        expect_code(
            "changes.unknown-resource",
            None,
            "WatchChanges of an unknown resource",
            Code::NotFound,
            got,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_report_names_every_check_and_the_failures() {
        let report = Report {
            target: "https://127.0.0.1:1".into(),
            reachable: true,
            error: None,
            dept: Some("public-security".into()),
            identity: None,
            software: None,
            checks: vec![
                pass("a.b", Some("r"), "fine".into()),
                fail("c.d", None, "broken".into()),
            ],
            summary: Summary::default(),
            conforms: false,
        }
        .finish();
        let text = report.text();
        assert!(text.contains("✓ a.b [r]: fine"), "{text}");
        assert!(text.contains("✗ c.d: broken"), "{text}");
        assert!(
            text.contains("1 passed, 1 failed, 0 skipped, 0 warnings"),
            "{text}"
        );
        assert!(text.contains("does not conform (c.d)"), "{text}");
        assert_eq!(report.exit_code(), 1);
    }

    #[test]
    fn an_unknown_key_replaces_one_field_and_keeps_bools() {
        use huitong_core::{FieldSpec, ResourceId, ResourceName, ResourceSpecParts, Sensitivity};
        let field = |n: &str, ty| FieldSpec {
            name: FieldName::new(n).unwrap(),
            ty,
            sensitivity: Sensitivity::Public,
            description: String::new(),
        };
        let dept = DeptId::new("a").unwrap();
        let spec = ResourceSpec::new(ResourceSpecParts {
            id: ResourceId::new(dept, ResourceName::new("r").unwrap()),
            title: "r".into(),
            description: String::new(),
            fields: vec![field("flag", FieldType::Bool), field("n", FieldType::Int)],
            key_fields: vec![
                FieldName::new("flag").unwrap(),
                FieldName::new("n").unwrap(),
            ],
            sharing_class: SharingClass::Open,
            legal_basis: String::new(),
            update_cycle: String::new(),
            max_cache_age_seconds: 0,
            stale_if_error_seconds: 0,
        })
        .unwrap();
        let key = unknown_key(&spec, None).unwrap_or_default();
        assert_eq!(key.get("flag"), Some(&Value::bool(true)));
        assert_eq!(key.get("n"), Some(&Value::int(i64::MIN + 7_919)));
    }
}
