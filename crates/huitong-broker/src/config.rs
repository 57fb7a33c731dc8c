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
    #[serde(default)]
    pub adapters: Vec<RawAdapter>,
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
}

impl Default for RawBrokerSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7400".into(),
            max_message_bytes: huitong_proto::transport::DEFAULT_MAX_MESSAGE_BYTES,
            adapter_timeout_ms: 5_000,
            connect_timeout_ms: 1_000,
            default_page_size: 100,
            max_page_size: 1_000,
            catalogue_refresh_seconds: 30,
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
    pub adapters: Vec<AdapterEndpoint>,
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
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let err = |problem: String| ConfigError {
            path: path.to_owned(),
            problem,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let raw: RawBrokerConfig = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        Self::from_raw(raw).map_err(|(key, problem)| err(format!("{key}: {problem}")))
    }

    /// Checks a parsed file; on error returns the key and the problem.
    pub fn from_raw(raw: RawBrokerConfig) -> Result<Self, (String, String)> {
        let b = &raw.broker;
        let key = |k: &str| format!("broker.{k}");
        let listen: SocketAddr = b.listen.parse().map_err(|_| {
            (
                key("listen"),
                format!("{:?} is not an address like 127.0.0.1:7400", b.listen),
            )
        })?;
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
            adapters,
        })
    }
}

fn check_endpoint(s: &str) -> Result<(), String> {
    let rest = s
        .strip_prefix("http://")
        .ok_or_else(|| format!("{s:?} must be an http:// URL such as http://127.0.0.1:7401"))?;
    let hostport = rest.trim_end_matches('/');
    let ok = hostport
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if !ok || hostport.contains('/') {
        return Err(format!("{s:?} must be http://HOST:PORT"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
