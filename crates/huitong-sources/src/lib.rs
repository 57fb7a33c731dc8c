//! Ready-made sources for the adapter: SQL databases, HTTP/JSON APIs and CSV or JSON Lines files, built from the adapter config.
//!
//! [`load`] builds one [`Source`] for every resource of an
//! [`AdapterConfig`], whatever the `kind` of each resource's `source` table (see
//! [`huitong_adapter::config`] for the options):
//!
//! - `jsonl` and `csv`: [`FileSource`], files held in memory and reloaded when they change, each
//!   reload reported to watchers as the records added, changed and removed;
//! - `sql`: [`SqlSource`], PostgreSQL, MySQL/MariaDB or SQLite through a connection pool, values
//!   always bound as parameters, changes found by polling a column that grows with every write
//!   (and, on PostgreSQL, by LISTEN/NOTIFY);
//! - `http`: [`HttpSource`], an existing REST API answering JSON.
//!
//! [`check`] makes the checks `load` makes (secrets present, data files readable and valid)
//! without connecting to anything or starting any task, for `huitong config check`.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = huitong_adapter::AdapterConfig::load("adapter.toml")?;
//! let source = huitong_sources::load(&config)?;
//! let listener = huitong_proto::transport::bind(config.listen())?;
//! let tls = huitong_tls::ServerTls::load(config.tls_files())?;
//! huitong_adapter::serve(
//!     config.dept().clone(),
//!     source,
//!     listener,
//!     config.serve_options(),
//!     tls,
//!     async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     },
//! )
//! .await?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Arc;

use huitong_adapter::config::SourceConfig;
use huitong_adapter::{
    AdapterConfig, ChangeStream, Page, PageRequest, Record, Source, SourceError, Value,
};
use huitong_core::{FieldName, ResourceName, ResourceSpec};

mod error;
pub mod file;
#[cfg(feature = "http")]
pub mod http;
#[cfg(any(feature = "sql", feature = "http"))]
mod secret;
#[cfg(feature = "sql")]
pub mod sql;
#[cfg(test)]
mod test_support;
#[cfg(any(feature = "sql", feature = "http"))]
mod token;

pub use error::Error;
pub use file::FileSource;
#[cfg(feature = "http")]
pub use http::HttpSource;
#[cfg(feature = "sql")]
pub use sql::SqlSource;

/// Every resource of a configuration, each served by the source its `source` table names.
pub struct Sources {
    specs: Vec<ResourceSpec>,
    by_name: HashMap<ResourceName, Arc<dyn Source>>,
    kind: String,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("kind", &self.kind)
            .field("resources", &self.by_name.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The sources a configuration describes, ready to serve: files read, pools created (they
/// connect on first use, so a database that is down at start-up makes its resources
/// UNAVAILABLE until it is back, rather than stopping the adapter), file reloading and change
/// listeners started. Must be called within a Tokio runtime.
pub fn load(config: &AdapterConfig) -> Result<Sources, Error> {
    build(config, true)
}

/// Checks what [`load`] would load: secrets present, CA files readable, data files valid.
/// Connects to nothing and starts nothing.
pub fn check(config: &AdapterConfig) -> Result<(), Error> {
    build(config, false).map(|_| ())
}

fn build(config: &AdapterConfig, start: bool) -> Result<Sources, Error> {
    let mut files = Vec::new();
    #[cfg(feature = "sql")]
    let mut sqls = Vec::new();
    #[cfg(feature = "http")]
    let mut https = Vec::new();
    for (index, (spec, source)) in config.sources().enumerate() {
        let at = Place {
            file: config.file().to_owned(),
            dir: config.dir().to_owned(),
            key: format!("resources[{index}].source"),
        };
        match source {
            SourceConfig::Jsonl { path } => {
                files.push((spec.clone(), config.dir().join(path), file::Format::Jsonl))
            }
            SourceConfig::Csv(c) => {
                let format = file::Format::csv(c).map_err(|p| at.error("delimiter", p))?;
                files.push((spec.clone(), config.dir().join(&c.path), format));
            }
            #[cfg(feature = "sql")]
            SourceConfig::Sql(c) => sqls.push((spec.clone(), c.clone(), at)),
            #[cfg(feature = "http")]
            SourceConfig::Http(c) => https.push((spec.clone(), c.clone(), at)),
            other => {
                return Err(at
                    .error(
                        "kind",
                        format!("{} sources are not known here", other.kind()),
                    )
                    .into());
            }
        }
    }
    let mut parts: Vec<Arc<dyn Source>> = Vec::new();
    let mut kinds = Vec::new();
    if !files.is_empty() {
        let source = FileSource::load(files)?;
        if start {
            source.reload_every(file::RELOAD_INTERVAL);
        }
        kinds.push("file");
        parts.push(Arc::new(source));
    }
    #[cfg(feature = "sql")]
    if !sqls.is_empty() {
        kinds.push("sql");
        parts.push(Arc::new(SqlSource::load(sqls, start)?));
    }
    #[cfg(feature = "http")]
    if !https.is_empty() {
        kinds.push("http");
        parts.push(Arc::new(HttpSource::load(https)?));
    }
    let mut specs = Vec::new();
    let mut by_name = HashMap::new();
    for part in parts {
        for spec in part.resources() {
            by_name.insert(spec.id().name().clone(), Arc::clone(&part));
            specs.push(spec);
        }
    }
    // Describe lists resources in the configuration's order, whatever their kind.
    let order: Vec<&ResourceName> = config.resources().map(|s| s.id().name()).collect();
    specs.sort_by_key(|s| order.iter().position(|n| *n == s.id().name()));
    Ok(Sources {
        specs,
        by_name,
        kind: kinds.join("+"),
    })
}

/// Where in which configuration file a source's options are, for error messages.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    pub(crate) file: std::path::PathBuf,
    /// The configuration file's directory, which relative paths are taken from.
    #[cfg_attr(not(any(feature = "sql", feature = "http")), allow(dead_code))]
    pub(crate) dir: std::path::PathBuf,
    /// E.g. `resources[2].source`.
    pub(crate) key: String,
}

impl Place {
    /// A problem with one option of this source, e.g. `url_env`.
    pub(crate) fn error(
        &self,
        option: &str,
        problem: impl Into<String>,
    ) -> huitong_adapter::ConfigError {
        let key = if option.is_empty() {
            self.key.clone()
        } else {
            format!("{}.{option}", self.key)
        };
        huitong_adapter::ConfigError::new(&self.file, Some(key), problem)
    }
}

impl Sources {
    fn part(&self, resource: &ResourceName) -> Result<&Arc<dyn Source>, SourceError> {
        self.by_name
            .get(resource)
            .ok_or_else(|| SourceError::Internal(format!("no source is loaded for {resource}")))
    }
}

#[tonic::async_trait]
impl Source for Sources {
    fn resources(&self) -> Vec<ResourceSpec> {
        self.specs.clone()
    }

    fn kind(&self) -> &str {
        &self.kind
    }

    async fn fetch(
        &self,
        resource: &ResourceName,
        key: &[(FieldName, Value)],
        fields: &[FieldName],
    ) -> Result<Option<Record>, SourceError> {
        self.part(resource)?.fetch(resource, key, fields).await
    }

    async fn search(
        &self,
        resource: &ResourceName,
        filters: &[(FieldName, Value)],
        fields: &[FieldName],
        page: PageRequest,
    ) -> Result<Page, SourceError> {
        self.part(resource)?
            .search(resource, filters, fields, page)
            .await
    }

    async fn watch(
        &self,
        resource: &ResourceName,
        cursor: Option<&str>,
    ) -> Result<ChangeStream, SourceError> {
        self.part(resource)?.watch(resource, cursor).await
    }
}
