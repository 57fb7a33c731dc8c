//! The adapter SDK: a trait a department implements, the gRPC server that serves it, and built-in sources.
//!
//! An integrator connects a department's records in one of two ways. With code: implement
//! [`Source`] (describe the resources, fetch a record by key, search by equality filters a page
//! at a time) and call [`serve`] with the department id, a listener and a shutdown signal; the
//! server checks every request against the resource descriptions before the source sees it,
//! trims answers to the requested fields, and serves gRPC health and reflection alongside. Or
//! without code: describe the resources in an [`AdapterConfig`] file and serve the built-in
//! [`JsonlSource`] it loads.
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

pub mod config;
pub mod error;
pub mod jsonl;
pub mod metrics;
pub mod server;
pub mod source;
mod status;
#[cfg(test)]
mod test_support;

pub use config::{AdapterConfig, ConfigFile, FieldConfig, ResourceConfig, SourceConfig, TlsConfig};
pub use error::{ConfigError, Error};
pub use huitong_proto::v1::{Record, Value};
pub use jsonl::JsonlSource;
pub use server::{AdapterService, ServeOptions, serve};
pub use source::{Page, PageRequest, Source, SourceError};
