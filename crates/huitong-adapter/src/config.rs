//! The adapter configuration file (TOML), read by `huitong adapter --config adapter.toml` and
//! written by `huitong demo`. Every key, with its type, default and meaning, and a complete
//! example per source kind: `docs/adapter-config.md`, which `config/tests.rs` holds to these
//! structs. In short:
//!
//! ```toml
//! dept = "public-security"
//!
//! [tls]                    # relative paths start at this file's directory
//! ca = "pki/ca.pem"
//! cert = "pki/public-security-adapter.pem"
//! key = "pki/public-security-adapter.key"
//!
//! [[resources]]
//! name = "household-register"
//! title = "户籍登记 Household register"
//! sharing_class = "conditional"
//! legal_basis = "户口登记条例"
//! key_fields = ["id_number"]
//! source = { kind = "jsonl", path = "household-register.jsonl" }
//! fields = [{ name = "id_number", type = "string", sensitivity = "personal" }]
//! ```
//!
//! `jsonl` is served by this crate ([`AdapterConfig::into_source`]); `huitong adapter` serves
//! every kind through the `huitong-sources` crate.
//!
//! [`ConfigFile`] is the file as written, with plain strings; [`AdapterConfig`] is the checked
//! result. Enumerations are read as strings and checked here rather than by serde, so that an
//! error names the key path and the accepted values.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use huitong_core::{
    DeptId, FieldName, FieldSpec, FieldType, ResourceId, ResourceName, ResourceSpec,
    ResourceSpecParts, Sensitivity, SharingClass,
};
use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Error};
use crate::jsonl::JsonlSource;
use crate::server::ServeOptions;

pub mod sources;
pub use sources::{CsvConfig, HttpConfig, QueryParam, SqlChangesConfig, SqlConfig};

/// Listen address when the file gives none.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7401";

/// The configuration file as written. Build one in code and [`write`](ConfigFile::write) it, or
/// let [`AdapterConfig::load`] read and check one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The department whose adapter this is, e.g. `public-security`.
    #[serde(default)]
    pub dept: String,
    /// `ip:port` to listen on; [`DEFAULT_LISTEN`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_bytes: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_page_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_page_size: Option<u32>,
    /// Where to serve Prometheus metrics over plain HTTP (`/metrics`), e.g. `127.0.0.1:9401`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// The broker identities served (SPIFFE ids); the exchange office's broker when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brokers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_handshakes_per_address: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections_per_address: Option<usize>,
    /// On SIGTERM, seconds calls in flight get to finish before they are cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_grace_seconds: Option<u64>,
    /// The adapter's certificate and the exchange CA; required, every link is mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub resources: Vec<ResourceConfig>,
}

/// The `[tls]` table: PEM files, relative to the configuration file's directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Revocation list, reloaded when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl: Option<PathBuf>,
}

/// One `[[resources]]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    pub name: String,
    #[serde(default)]
    pub title: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// `open`, `conditional` or `not-shared`.
    #[serde(default)]
    pub sharing_class: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub legal_basis: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub update_cycle: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_cache_age_seconds: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stale_if_error_seconds: u32,
    #[serde(default)]
    pub key_fields: Vec<String>,
    pub source: SourceConfig,
    #[serde(default)]
    pub fields: Vec<FieldConfig>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Where a resource's records come from, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
#[non_exhaustive]
pub enum SourceConfig {
    /// A JSON Lines file, relative to the configuration file's directory; see [`JsonlSource`].
    Jsonl { path: PathBuf },
    /// A CSV file with a header row.
    Csv(CsvConfig),
    /// A table, view or query of a SQL database.
    Sql(SqlConfig),
    /// A REST API answering JSON.
    Http(HttpConfig),
}

impl SourceConfig {
    /// The `kind` as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Jsonl { .. } => "jsonl",
            SourceConfig::Csv(_) => "csv",
            SourceConfig::Sql(_) => "sql",
            SourceConfig::Http(_) => "http",
        }
    }
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig::Jsonl {
            path: PathBuf::new(),
        }
    }
}

/// One `[[resources.fields]]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldConfig {
    pub name: String,
    /// `string`, `int`, `double`, `bool`, `bytes`, `date` or `timestamp`.
    #[serde(rename = "type", default)]
    pub ty: String,
    /// `public`, `internal`, `personal` or `sensitive`.
    #[serde(default)]
    pub sensitivity: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl ConfigFile {
    /// A configuration with default listen address and limits.
    pub fn new(dept: &DeptId, resources: Vec<ResourceConfig>) -> Self {
        Self {
            dept: dept.to_string(),
            resources,
            ..Self::default()
        }
    }

    /// The TOML text of this configuration.
    pub fn to_toml_string(&self) -> Result<String, Error> {
        Ok(toml::to_string(self)?)
    }

    /// Checks this configuration as if it were read from `path`, then writes it there, so that
    /// no invalid configuration is ever written.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let path = path.as_ref();
        AdapterConfig::from_raw(self.clone(), path)?;
        let text = self.to_toml_string()?;
        std::fs::write(path, text).map_err(|e| Error::io("write", path, e))
    }
}

impl ResourceConfig {
    /// The table that describes `spec`, its records read from `source`.
    pub fn from_spec(spec: &ResourceSpec, source: SourceConfig) -> Self {
        Self {
            name: spec.id().name().to_string(),
            title: spec.title.clone(),
            description: spec.description.clone(),
            sharing_class: spec.sharing_class.to_string(),
            legal_basis: spec.legal_basis.clone(),
            update_cycle: spec.update_cycle.clone(),
            max_cache_age_seconds: spec.max_cache_age_seconds,
            stale_if_error_seconds: spec.stale_if_error_seconds,
            key_fields: spec.key_fields().iter().map(ToString::to_string).collect(),
            source,
            fields: spec.fields().iter().map(FieldConfig::from_spec).collect(),
        }
    }
}

impl FieldConfig {
    pub fn from_spec(f: &FieldSpec) -> Self {
        Self {
            name: f.name.to_string(),
            ty: f.ty.to_string(),
            sensitivity: f.sensitivity.to_string(),
            description: f.description.clone(),
        }
    }
}

/// A checked adapter configuration.
#[derive(Debug, Clone)]
pub struct AdapterConfig {
    file: PathBuf,
    raw: ConfigFile,
    dept: DeptId,
    listen: SocketAddr,
    options: ServeOptions,
    tls: huitong_tls::TlsFiles,
    resources: Vec<(ResourceSpec, SourceConfig)>,
}

impl AdapterConfig {
    /// Reads and checks a configuration file. Data files are not read yet; see
    /// [`into_source`](AdapterConfig::into_source).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, None, format!("cannot read it: {e}")))?;
        Self::from_toml_str(&text, path)
    }

    /// Parses and checks configuration text; `path` names it in errors, and relative data
    /// paths are taken from its directory.
    pub fn from_toml_str(text: &str, path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let raw: ConfigFile = toml::from_str(text)
            .map_err(|e| ConfigError::new(path, None, e.to_string().trim_end().to_owned()))?;
        Self::from_raw(raw, path)
    }

    /// Checks a configuration built in code, as if read from `path`.
    pub fn from_raw(raw: ConfigFile, path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let file = path.as_ref();
        let err = |key: String, problem: String| ConfigError::new(file, Some(key), problem);

        if raw.dept.is_empty() {
            return Err(err(
                "dept".into(),
                "it is missing; name the department this adapter serves, e.g. \"public-security\""
                    .into(),
            ));
        }
        let dept = DeptId::new(&raw.dept).map_err(|e| err("dept".into(), e.to_string()))?;

        let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            err(
                "listen".into(),
                format!(
                    "{:?} is not an IP address and port, e.g. \"{DEFAULT_LISTEN}\" or \"[::]:7401\"",
                    listen_text.chars().take(80).collect::<String>()
                ),
            )
        })?;

        let metrics_listen = match &raw.metrics_listen {
            None => None,
            Some(m) => Some(m.parse::<SocketAddr>().map_err(|_| {
                err(
                    "metrics_listen".into(),
                    format!(
                        "{:?} is not an IP address and port, e.g. \"127.0.0.1:9401\"",
                        m.chars().take(80).collect::<String>()
                    ),
                )
            })?),
        };
        let defaults = ServeOptions::default();
        let brokers = match &raw.brokers {
            None => Vec::new(),
            Some(list) if list.is_empty() => {
                return Err(err(
                    "brokers".into(),
                    "it is empty, so no broker could call this adapter; name the exchange's \
                     broker, e.g. \"spiffe://gov.example/dept/exchange-office/broker\", or \
                     remove the key for that default"
                        .into(),
                ));
            }
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let id = huitong_tls::PeerId::parse_uri(b)
                        .map_err(|e| err(format!("brokers[{i}]"), e.to_string()))?;
                    if id.role != huitong_tls::Role::Broker {
                        return Err(err(
                            format!("brokers[{i}]"),
                            format!("{id} is not a broker identity; its role must be broker"),
                        ));
                    }
                    Ok(id)
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let limits = defaults.connections;
        let connections = huitong_tls::ConnectionLimits {
            handshake_timeout: raw
                .handshake_timeout_ms
                .map_or(limits.handshake_timeout, std::time::Duration::from_millis),
            pending_handshakes_per_address: raw
                .max_pending_handshakes_per_address
                .unwrap_or(limits.pending_handshakes_per_address),
            connections_per_address: raw
                .max_connections_per_address
                .unwrap_or(limits.connections_per_address),
        };
        for (k, zero) in [
            (
                "handshake_timeout_ms",
                connections.handshake_timeout.is_zero(),
            ),
            (
                "max_pending_handshakes_per_address",
                connections.pending_handshakes_per_address == 0,
            ),
            (
                "max_connections_per_address",
                connections.connections_per_address == 0,
            ),
        ] {
            if zero {
                return Err(err(k.into(), "it must be greater than 0".into()));
            }
        }
        let options = ServeOptions {
            metrics_listen,
            max_message_bytes: raw.max_message_bytes.unwrap_or(defaults.max_message_bytes),
            default_page_size: raw.default_page_size.unwrap_or(defaults.default_page_size),
            max_page_size: raw.max_page_size.unwrap_or(defaults.max_page_size),
            brokers,
            connections,
            shutdown_grace: raw
                .shutdown_grace_seconds
                .map_or(defaults.shutdown_grace, std::time::Duration::from_secs),
        };
        if let Some((key, problem)) = options.problem() {
            return Err(err(key.into(), problem));
        }

        let base = file.parent().unwrap_or(Path::new(""));
        let tls = match &raw.tls {
            None => {
                return Err(err(
                    "tls".into(),
                    "it is missing; every link is mutual TLS: add a [tls] table with ca, cert and key (see huitong pki issue --role adapter)".into(),
                ));
            }
            Some(t) => {
                for (k, v) in [("ca", &t.ca), ("cert", &t.cert), ("key", &t.key)] {
                    if v.as_os_str().is_empty() {
                        return Err(err(format!("tls.{k}"), "it must name a PEM file".into()));
                    }
                }
                huitong_tls::TlsFiles {
                    ca: base.join(&t.ca),
                    cert: base.join(&t.cert),
                    key: base.join(&t.key),
                    crl: t.crl.as_ref().map(|c| base.join(c)),
                }
            }
        };

        if raw.resources.is_empty() {
            return Err(err(
                "resources".into(),
                "there are none; declare at least one [[resources]] table".into(),
            ));
        }
        let mut resources: Vec<(ResourceSpec, SourceConfig)> =
            Vec::with_capacity(raw.resources.len());
        for (i, r) in raw.resources.iter().enumerate() {
            let spec = resource_spec(&dept, r, &format!("resources[{i}]"))
                .map_err(|(key, problem)| err(key, problem))?;
            if let Some(j) = resources
                .iter()
                .position(|(s, _)| s.id().name() == spec.id().name())
            {
                return Err(err(
                    format!("resources[{i}].name"),
                    format!(
                        "{:?} is also the name of resources[{j}]; resource names must be unique",
                        r.name
                    ),
                ));
            }
            resources.push((spec, r.source.clone()));
        }

        Ok(Self {
            file: file.to_owned(),
            raw,
            dept,
            listen,
            options,
            tls,
            resources,
        })
    }

    /// The certificate files, resolved against the configuration file's directory.
    pub fn tls_files(&self) -> &huitong_tls::TlsFiles {
        &self.tls
    }

    /// The file this configuration was read from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The configuration as written.
    pub fn raw(&self) -> &ConfigFile {
        &self.raw
    }

    pub fn dept(&self) -> &DeptId {
        &self.dept
    }

    /// The configured listen address; a `--listen` flag may override it.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    pub fn serve_options(&self) -> ServeOptions {
        self.options.clone()
    }

    /// The resources described, in file order.
    pub fn resources(&self) -> impl Iterator<Item = &ResourceSpec> {
        self.resources.iter().map(|(spec, _)| spec)
    }

    /// The resources with their sources, in file order (`resources[i]` in error key paths).
    pub fn sources(&self) -> impl Iterator<Item = (&ResourceSpec, &SourceConfig)> {
        self.resources.iter().map(|(spec, source)| (spec, source))
    }

    /// The directory relative paths in the file are taken from.
    pub fn dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new(""))
    }

    /// Loads every resource's records, data paths taken relative to the configuration file's
    /// directory. Only `jsonl` sources are served this way; the `huitong-sources` crate loads
    /// every kind.
    pub fn into_source(&self) -> Result<JsonlSource, Error> {
        let dir = self.dir();
        let mut files = Vec::with_capacity(self.resources.len());
        for (spec, source) in &self.resources {
            match source {
                SourceConfig::Jsonl { path } => files.push((spec.clone(), dir.join(path))),
                other => {
                    return Err(Error::SourceKind {
                        resource: spec.id().clone(),
                        kind: other.kind(),
                    });
                }
            }
        }
        JsonlSource::load(files)
    }
}

type Problem = (String, String);

/// Checks one `[[resources]]` table; errors are (key path, problem).
fn resource_spec(dept: &DeptId, r: &ResourceConfig, at: &str) -> Result<ResourceSpec, Problem> {
    let name = ResourceName::new(&r.name).map_err(|e| (format!("{at}.name"), e.to_string()))?;
    if r.title.trim().is_empty() {
        return Err((
            format!("{at}.title"),
            "it is missing; give the resource a title, e.g. \"户籍登记 Household register\"".into(),
        ));
    }
    let sharing_class = named(&r.sharing_class, SharingClass::parse, SharingClass::names())
        .map_err(|p| (format!("{at}.sharing_class"), p))?;
    if sharing_class != SharingClass::Open && r.legal_basis.trim().is_empty() {
        let why = match sharing_class {
            SharingClass::NotShared => "the law or regulation under which it is not shared",
            _ => "the law or regulation under which it may be shared",
        };
        return Err((
            format!("{at}.legal_basis"),
            format!(
                "it is missing; a {sharing_class} resource must name {why}, e.g. \"户口登记条例\""
            ),
        ));
    }

    if r.fields.is_empty() {
        return Err((
            format!("{at}.fields"),
            "there are none; declare at least one [[resources.fields]] table".into(),
        ));
    }
    let mut fields: Vec<FieldSpec> = Vec::with_capacity(r.fields.len());
    for (j, f) in r.fields.iter().enumerate() {
        let at = format!("{at}.fields[{j}]");
        let name = FieldName::new(&f.name).map_err(|e| (format!("{at}.name"), e.to_string()))?;
        if let Some(k) = fields.iter().position(|g| g.name == name) {
            return Err((
                format!("{at}.name"),
                format!("{name:?} is also the name of fields[{k}]; field names must be unique"),
            ));
        }
        let ty = named(&f.ty, FieldType::parse, FieldType::names())
            .map_err(|p| (format!("{at}.type"), p))?;
        let sensitivity = named(&f.sensitivity, Sensitivity::parse, Sensitivity::names())
            .map_err(|p| (format!("{at}.sensitivity"), p))?;
        fields.push(FieldSpec {
            name,
            ty,
            sensitivity,
            description: f.description.clone(),
        });
    }

    if r.key_fields.is_empty() {
        return Err((
            format!("{at}.key_fields"),
            "there are none; name the fields that identify a record, e.g. [\"id_number\"]".into(),
        ));
    }
    let mut key_fields: Vec<FieldName> = Vec::with_capacity(r.key_fields.len());
    for (k, raw) in r.key_fields.iter().enumerate() {
        let key = format!("{at}.key_fields[{k}]");
        let name = FieldName::new(raw).map_err(|e| (key.clone(), e.to_string()))?;
        if !fields.iter().any(|f| f.name == name) {
            let known: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
            return Err((
                key,
                format!(
                    "{name:?} is not one of the resource's fields ({})",
                    known.join(", ")
                ),
            ));
        }
        if key_fields.contains(&name) {
            return Err((key, format!("{name:?} is named twice")));
        }
        key_fields.push(name);
    }

    let source_at = format!("{at}.source");
    match &r.source {
        SourceConfig::Jsonl { path } if path.as_os_str().is_empty() => {
            return Err((
                format!("{at}.source.path"),
                "it is empty; give the JSON Lines file, relative to this file's directory".into(),
            ));
        }
        SourceConfig::Jsonl { .. } => {}
        SourceConfig::Csv(c) => sources::check_csv(c, &fields, &source_at)?,
        SourceConfig::Sql(c) => sources::check_sql(c, &fields, &source_at)?,
        SourceConfig::Http(c) => sources::check_http(c, &fields, &key_fields, &source_at)?,
    }

    // The checks above cover what ResourceSpec::new checks; this keeps the two in step.
    ResourceSpec::new(ResourceSpecParts {
        id: ResourceId::new(dept.clone(), name),
        title: r.title.clone(),
        description: r.description.clone(),
        fields,
        key_fields,
        sharing_class,
        legal_basis: r.legal_basis.clone(),
        update_cycle: r.update_cycle.clone(),
        max_cache_age_seconds: r.max_cache_age_seconds,
        stale_if_error_seconds: r.stale_if_error_seconds,
    })
    .map_err(|e| (at.to_owned(), e.to_string()))
}

/// Parses one of an enumeration's names, or says which are accepted.
fn named<T>(value: &str, parse: fn(&str) -> Option<T>, names: String) -> Result<T, String> {
    if value.is_empty() {
        return Err(format!("it is missing; use one of {names}"));
    }
    parse(value).ok_or_else(|| {
        format!(
            "{:?} is not one of {names}",
            value.chars().take(80).collect::<String>()
        )
    })
}

#[cfg(test)]
mod tests;
