//! The adapter SDK: a trait a department implements, the gRPC server that serves it, and built-in sources.
//!
//! An integrator connects a department's records in one of two ways. With code: implement
//! [`Source`] (describe the resources, fetch a record by key, search by equality filters a page
//! at a time) and call [`serve`] with the department id, a listener and a shutdown signal; the
//! server checks every request against the resource descriptions before the source sees it,
//! trims answers to the requested fields, and serves gRPC health and reflection alongside. Or
//! without code: describe the resources in an [`AdapterConfig`] file and serve the built-in
//! [`JsonlSource`] it loads (the `huitong-sources` crate loads the other kinds of source the
//! file can name: SQL databases, HTTP APIs, CSV files).
//!
//! Changes: the server answers `WatchChanges` with [`Source::watch`]. A source that learns of
//! its own changes keeps a [`ChangeFeed`] and calls [`ChangeFeed::publish`] once per change;
//! the feed retains recent changes for watchers that resume from a cursor, delivers new ones
//! live, and tells a watcher that fell too far behind to resynchronise. [`MemTable`] holds a
//! resource's records in memory and lists what changed between two versions of it.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use huitong_adapter::{AdapterConfig, serve};
//!
//! let config = AdapterConfig::load("adapter.toml")?;
//! let listener = huitong_proto::transport::bind(config.listen())?;
//! let shutdown = async {
//!     let _ = tokio::signal::ctrl_c().await;
//! };
//! let source = config.into_source()?;
//! let tls = huitong_tls::ServerTls::load(config.tls_files())?;
//! serve(config.dept().clone(), source, listener, config.serve_options(), tls, shutdown).await?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

pub mod changes;
pub mod config;
pub mod error;
pub mod jsonl;
pub mod metrics;
pub mod server;
pub mod source;
mod status;
pub mod table;
#[cfg(test)]
mod test_support;

pub use changes::ChangeFeed;
pub use config::{AdapterConfig, ConfigFile, FieldConfig, ResourceConfig, SourceConfig, TlsConfig};
pub use error::{ConfigError, Error};
pub use huitong_proto::v1::{Record, Value};
pub use jsonl::JsonlSource;
pub use server::{
    AdapterService, DEFAULT_SHUTDOWN_GRACE, ServeOptions, WatchCloser, default_broker, serve,
};
pub use source::{Change, ChangeStream, Page, PageRequest, Source, SourceError};
pub use table::MemTable;
