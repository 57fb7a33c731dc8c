//! The broker's config file (TOML), checked whole before anything starts: a broker never runs
//! half-configured.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use huitong_core::DeptId;
use serde::{Deserialize, Serialize};

/// A config file that could not be used. The message names the file, the key and the problem.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct ConfigError {
    pub path: PathBuf,
    pub problem: String,
}

/// The file as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBrokerConfig {
    #[serde(default)]
    pub broker: RawBrokerSection,
    /// The broker's own certificate and the exchange CA; required.
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub adapters: Vec<RawAdapter>,
    /// Thresholds of the bulk-lookup alert metrics; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<RawAlerts>,
}

/// `[alerts]`: per consumer and sliding hour, see `huitong_audit::alerts`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// More distinct people named by one consumer's queries in an hour raise an alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subjects_per_hour: Option<u64>,
    /// More refused queries of one consumer in an hour raise an alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusals_per_hour: Option<u64>,
}

/// Certificate files, relative to the config file's directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca: String,
    pub cert: String,
    pub key: String,
    /// Revocation list; reloaded when it changes, so revocations need no restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBrokerSection {
    pub listen: String,
    pub max_message_bytes: usize,
    pub adapter_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub default_page_size: u32,
    pub max_page_size: u32,
    pub catalogue_refresh_seconds: u64,
    /// Where grants and access requests are kept, relative to the config file's directory.
    pub data_dir: String,
    /// Grants declared in a file, for bootstrapping; relative to the config file's directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Working days a provider has to answer an access request.
    pub reply_deadline_working_days: u32,
    /// Public holidays (`YYYY-MM-DD`) that do not count as working days for reply deadlines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub holidays: Vec<String>,
    /// Saturdays and Sundays (`YYYY-MM-DD`) worked in exchange for holidays (调休); they count.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub make_up_working_days: Vec<String>,
    /// How often the exchange log's checkpoint is signed while the log grows.
    pub checkpoint_interval_seconds: u64,
    /// Subject keys older than this many months are destroyed, cutting the link between old
    /// log entries and people (the entries stay and verify). 0 keeps them forever.
    pub subject_key_retention_months: u32,
    /// Where to serve Prometheus metrics over plain HTTP (`/metrics`); unset serves none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// Bytes of records the cache may hold; 0 turns caching off.
    pub cache_max_bytes: u64,
    /// Calls in progress at once to one adapter.
    pub adapter_max_concurrency: usize,
    /// Exchanges waiting for one adapter beyond those in progress; more are refused at once.
    pub adapter_max_queue: usize,
    /// Consecutive failures of an adapter that open its circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker refuses before it lets a probe through (doubling up to 30 s).
    pub breaker_open_ms: u64,
    /// Retries of failed adapter calls, as a percentage of first attempts.
    pub retry_budget_percent: u32,
    /// Exchanges in the broker at once; beyond this it sheds load with UNAVAILABLE.
    pub max_in_flight: usize,
    /// On shutdown, how long in-flight exchanges get to finish before they are cancelled.
    pub shutdown_grace_seconds: u64,
    /// Events older than this are dropped from the event log.
    pub event_retention_hours: u64,
    /// At most this many events are kept per resource; older ones are dropped first.
    pub event_retention_max_events: u64,
    /// How long a client has from its TCP connect to a finished TLS handshake.
    pub handshake_timeout_ms: u64,
    /// TLS handshakes in flight from one IP address; more connections from it are closed.
    pub max_pending_handshakes_per_address: usize,
    /// Connections from one IP address (in handshake or open); more are closed.
    pub max_connections_per_address: usize,
    /// Where the keys that seal the event log are kept (one per day, destroyed as retention
    /// passes them); relative to the config file's directory. Unset: `<data_dir>/event-keys`.
    /// Put it on another volume (or tmpfs) so that a copy of the data directory reveals nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_keys_dir: Option<String>,
}

impl Default for RawBrokerSection {
    fn default() -> Self {
        let limits = huitong_tls::ConnectionLimits::default();
        Self {
            listen: "127.0.0.1:7400".into(),
            max_message_bytes: huitong_proto::transport::DEFAULT_MAX_MESSAGE_BYTES,
            adapter_timeout_ms: 5_000,
            connect_timeout_ms: 1_000,
            default_page_size: 100,
            max_page_size: 1_000,
            catalogue_refresh_seconds: 30,
            data_dir: "huitong-data".into(),
            policy: None,
            reply_deadline_working_days: 10,
            holidays: Vec::new(),
            make_up_working_days: Vec::new(),
            checkpoint_interval_seconds: 60,
            subject_key_retention_months: 0,
            metrics_listen: None,
            cache_max_bytes: 256 * 1024 * 1024,
            adapter_max_concurrency: 64,
            adapter_max_queue: 256,
            breaker_failures: 5,
            breaker_open_ms: 2_000,
            retry_budget_percent: 20,
            max_in_flight: 4_096,
            shutdown_grace_seconds: 10,
            event_retention_hours: 24 * 7,
            event_retention_max_events: 1_000_000,
            handshake_timeout_ms: limits.handshake_timeout.as_millis() as u64,
            max_pending_handshakes_per_address: limits.pending_handshakes_per_address,
            max_connections_per_address: limits.connections_per_address,
            event_keys_dir: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdapter {
    pub dept: String,
    pub endpoint: String,
}

/// A checked broker configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub listen: SocketAddr,
    pub max_message_bytes: usize,
    /// Cap on one adapter call; a consumer's shorter deadline wins.
    pub adapter_timeout: Duration,
    pub connect_timeout: Duration,
    pub default_page_size: u32,
    pub max_page_size: u32,
    pub catalogue_refresh: Duration,
    pub data_dir: PathBuf,
    pub policy: Option<PathBuf>,
    pub reply_deadline_working_days: u32,
    /// Which days count for reply deadlines.
    pub work_calendar: huitong_core::calendar::WorkCalendar,
    pub checkpoint_interval: Duration,
    pub subject_key_retention_months: u32,
    pub metrics_listen: Option<SocketAddr>,
    pub cache_max_bytes: u64,
    pub adapter_limits: crate::resilience::Limits,
    pub max_in_flight: usize,
    pub shutdown_grace: Duration,
    pub event_retention: crate::events::Retention,
    /// Against floods of idle or slow connections.
    pub connections: huitong_tls::ConnectionLimits,
    /// Where the event log's sealing keys are kept.
    pub event_keys_dir: PathBuf,
    pub tls: huitong_tls::TlsFiles,
    pub adapters: Vec<AdapterEndpoint>,
    /// The bulk-lookup alert thresholds; `None` exports no alert metrics.
    pub alerts: Option<huitong_audit::alerts::Thresholds>,
}

/// Where a department's adapter listens.
#[derive(Debug, Clone)]
pub struct AdapterEndpoint {
    pub dept: DeptId,
    pub endpoint: String,
}

const MIN_MESSAGE_BYTES: usize = 1024;
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

impl BrokerConfig {
    /// What start-up reads besides the config file itself, checked without starting: the
    /// certificates, key and CRL (as a server and as the adapters' client) and the policy
    /// file. One error per problem, each naming its file and key once. `path` is the config
    /// file, named in the errors about its `[tls]` keys.
    pub fn check_files(&self, path: &Path) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        let tls_problem = |e: huitong_tls::Error| ConfigError {
            path: path.to_owned(),
            problem: match self.tls.key_of(&e) {
                Some(k) => format!("tls.{k}: {e}"),
                None => format!("tls: {e}"),
            },
        };
        match huitong_tls::ServerTls::load(&self.tls) {
            Err(e) => problems.push(tls_problem(e)),
            // The same files as the adapters' client: a certificate without clientAuth, say.
            Ok(_) => {
                if let Err(e) = huitong_tls::ClientTls::load(&self.tls) {
                    problems.push(tls_problem(e));
                }
            }
        }
        if let Some(policy) = &self.policy
            && let Err(e) = crate::policy::check_policy_file(policy)
        {
            problems.push(match e {
                crate::policy::PolicyError::PolicyFile { path, problem } => {
                    ConfigError { path, problem }
                }
                other => ConfigError {
                    path: policy.clone(),
                    problem: other.to_string(),
                },
            });
        }
        problems
    }

    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let err = |problem: String| ConfigError {
            path: path.to_owned(),
            problem,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let raw: RawBrokerConfig = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_raw(raw, base).map_err(|(key, problem)| err(format!("{key}: {problem}")))
    }

    /// Checks a parsed file whose relative paths start at `base`; on error returns the key and
    /// the problem.
    pub fn from_raw(raw: RawBrokerConfig, base: &Path) -> Result<Self, (String, String)> {
        let b = &raw.broker;
        let key = |k: &str| format!("broker.{k}");
        let listen: SocketAddr = b.listen.parse().map_err(|_| {
            (
                key("listen"),
                format!("{:?} is not an address like 127.0.0.1:7400", b.listen),
            )
        })?;
        let metrics_listen = match &b.metrics_listen {
            None => None,
            Some(m) => Some(m.parse::<SocketAddr>().map_err(|_| {
                (
                    key("metrics_listen"),
                    format!("{m:?} is not an address like 127.0.0.1:9400"),
                )
            })?),
        };
        if !(MIN_MESSAGE_BYTES..=MAX_MESSAGE_BYTES).contains(&b.max_message_bytes) {
            return Err((
                key("max_message_bytes"),
                format!(
                    "{} is outside {MIN_MESSAGE_BYTES}..={MAX_MESSAGE_BYTES}",
                    b.max_message_bytes
                ),
            ));
        }
        for (k, v) in [
            ("adapter_timeout_ms", b.adapter_timeout_ms),
            ("connect_timeout_ms", b.connect_timeout_ms),
            ("catalogue_refresh_seconds", b.catalogue_refresh_seconds),
            ("checkpoint_interval_seconds", b.checkpoint_interval_seconds),
            ("adapter_max_concurrency", b.adapter_max_concurrency as u64),
            ("breaker_failures", u64::from(b.breaker_failures)),
            ("breaker_open_ms", b.breaker_open_ms),
            ("max_in_flight", b.max_in_flight as u64),
            ("event_retention_hours", b.event_retention_hours),
            ("event_retention_max_events", b.event_retention_max_events),
            ("handshake_timeout_ms", b.handshake_timeout_ms),
            (
                "max_pending_handshakes_per_address",
                b.max_pending_handshakes_per_address as u64,
            ),
            (
                "max_connections_per_address",
                b.max_connections_per_address as u64,
            ),
        ] {
            if v == 0 {
                return Err((key(k), "must be greater than 0".into()));
            }
        }
        if b.default_page_size == 0 || b.default_page_size > b.max_page_size {
            return Err((
                key("default_page_size"),
                format!(
                    "{} must be between 1 and max_page_size ({})",
                    b.default_page_size, b.max_page_size
                ),
            ));
        }
        if !(1..=60).contains(&b.reply_deadline_working_days) {
            return Err((
                key("reply_deadline_working_days"),
                format!("{} is outside 1..=60", b.reply_deadline_working_days),
            ));
        }
        let work_calendar = work_calendar(b).map_err(|(k, p)| (key(&k), p))?;
        if b.retry_budget_percent > 100 {
            return Err((
                key("retry_budget_percent"),
                format!("{} is outside 0..=100", b.retry_budget_percent),
            ));
        }
        if b.data_dir.trim().is_empty() {
            return Err((key("data_dir"), "must name a directory".into()));
        }
        if b.event_keys_dir
            .as_ref()
            .is_some_and(|d| d.trim().is_empty())
        {
            return Err((
                key("event_keys_dir"),
                "must name a directory, or be left out for <data_dir>/event-keys".into(),
            ));
        }
        let tls = raw.tls.as_ref().ok_or_else(|| {
            (
                "tls".to_owned(),
                "missing: every link is mutual TLS; add a [tls] table with ca, cert and key (see huitong pki)".to_owned(),
            )
        })?;
        for (k, v) in [("ca", &tls.ca), ("cert", &tls.cert), ("key", &tls.key)] {
            if v.trim().is_empty() {
                return Err((format!("tls.{k}"), "must name a PEM file".into()));
            }
        }
        let tls = huitong_tls::TlsFiles {
            ca: base.join(&tls.ca),
            cert: base.join(&tls.cert),
            key: base.join(&tls.key),
            crl: tls.crl.as_ref().map(|c| base.join(c)),
        };
        let mut adapters: Vec<AdapterEndpoint> = Vec::with_capacity(raw.adapters.len());
        for (i, a) in raw.adapters.iter().enumerate() {
            let k = |f: &str| format!("adapters[{i}].{f}");
            let dept = DeptId::new(&a.dept).map_err(|e| (k("dept"), e.to_string()))?;
            if adapters.iter().any(|x| x.dept == dept) {
                return Err((k("dept"), format!("department {dept} is listed twice")));
            }
            check_endpoint(&a.endpoint).map_err(|p| (k("endpoint"), p))?;
            adapters.push(AdapterEndpoint {
                dept,
                endpoint: a.endpoint.clone(),
            });
        }
        let alerts = alert_thresholds(raw.alerts.as_ref())?;
        if adapters.is_empty() {
            return Err((
                "adapters".into(),
                "no adapters are configured; add an [[adapters]] table per department".into(),
            ));
        }
        Ok(Self {
            listen,
            max_message_bytes: b.max_message_bytes,
            adapter_timeout: Duration::from_millis(b.adapter_timeout_ms),
            connect_timeout: Duration::from_millis(b.connect_timeout_ms),
            default_page_size: b.default_page_size,
            max_page_size: b.max_page_size,
            catalogue_refresh: Duration::from_secs(b.catalogue_refresh_seconds),
            data_dir: base.join(&b.data_dir),
            policy: b.policy.as_ref().map(|p| base.join(p)),
            reply_deadline_working_days: b.reply_deadline_working_days,
            work_calendar,
            checkpoint_interval: Duration::from_secs(b.checkpoint_interval_seconds),
            subject_key_retention_months: b.subject_key_retention_months,
            metrics_listen,
            cache_max_bytes: b.cache_max_bytes,
            adapter_limits: crate::resilience::Limits {
                concurrency: b.adapter_max_concurrency,
                queue: b.adapter_max_queue,
                breaker_failures: b.breaker_failures,
                breaker_open: Duration::from_millis(b.breaker_open_ms),
                breaker_max_open: Duration::from_secs(30)
                    .max(Duration::from_millis(b.breaker_open_ms)),
                retry_ratio: f64::from(b.retry_budget_percent) / 100.0,
            },
            max_in_flight: b.max_in_flight,
            shutdown_grace: Duration::from_secs(b.shutdown_grace_seconds),
            event_retention: crate::events::Retention {
                max_age: Duration::from_secs(b.event_retention_hours.saturating_mul(3600)),
                max_events: b.event_retention_max_events,
            },
            connections: huitong_tls::ConnectionLimits {
                handshake_timeout: Duration::from_millis(b.handshake_timeout_ms),
                pending_handshakes_per_address: b.max_pending_handshakes_per_address,
                connections_per_address: b.max_connections_per_address,
            },
            event_keys_dir: match &b.event_keys_dir {
                Some(d) => base.join(d),
                None => base.join(&b.data_dir).join(crate::events::KEYS_DIR),
            },
            tls,
            adapters,
            alerts,
        })
    }
}

/// `[alerts]` checked: each threshold at least 1, and at least one of them.
fn alert_thresholds(
    raw: Option<&RawAlerts>,
) -> Result<Option<huitong_audit::alerts::Thresholds>, (String, String)> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    for (k, v) in [
        ("subjects_per_hour", raw.subjects_per_hour),
        ("refusals_per_hour", raw.refusals_per_hour),
    ] {
        if v == Some(0) {
            return Err((
                format!("alerts.{k}"),
                "must be at least 1 (leave it out to turn this alert off)".into(),
            ));
        }
    }
    let t = huitong_audit::alerts::Thresholds {
        subjects_per_hour: raw.subjects_per_hour,
        refusals_per_hour: raw.refusals_per_hour,
    };
    if !t.any() {
        return Err((
            "alerts".into(),
            "is empty: set subjects_per_hour or refusals_per_hour, or remove the [alerts] table"
                .into(),
        ));
    }
    Ok(Some(t))
}

/// The reply-deadline calendar from `holidays` and `make_up_working_days`; an error names the
/// key (with its list position) and the problem.
fn work_calendar(
    b: &RawBrokerSection,
) -> Result<huitong_core::calendar::WorkCalendar, (String, String)> {
    use huitong_core::calendar::{CalendarError, WorkCalendar, parse_date};
    let days = |name: &str, list: &[String]| -> Result<Vec<i64>, (String, String)> {
        list.iter()
            .enumerate()
            .map(|(i, text)| {
                parse_date(text).ok_or_else(|| {
                    (
                        format!("{name}[{i}]"),
                        format!("{text:?} is not a date; write YYYY-MM-DD, e.g. \"2026-10-01\""),
                    )
                })
            })
            .collect()
    };
    let holidays = days("holidays", &b.holidays)?;
    let make_up = days("make_up_working_days", &b.make_up_working_days)?;
    WorkCalendar::new(holidays, make_up).map_err(|e| {
        let name = match &e {
            CalendarError::BothHolidayAndWorkingDay { .. } => "holidays",
            _ => "make_up_working_days",
        };
        (name.to_owned(), e.to_string())
    })
}

fn check_endpoint(s: &str) -> Result<(), String> {
    let rest = s.strip_prefix("https://").ok_or_else(|| {
        format!(
            "{s:?} must be an https:// URL such as https://127.0.0.1:7401 (links are mutual TLS)"
        )
    })?;
    let hostport = rest.trim_end_matches('/');
    let ok = hostport
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if !ok || hostport.contains('/') {
        return Err(format!("{s:?} must be https://HOST:PORT"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
