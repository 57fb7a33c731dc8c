//! The broker: authenticates, checks policy, routes each exchange to the providing department and answers.
//!
//! Read [`exchange`] top to bottom to follow one query through the broker. [`providers`] owns the
//! connections to departments' adapters and the catalogue built from their descriptions;
//! [`error`] is the one place where failures become gRPC statuses.

#![forbid(unsafe_code)]

pub mod admin;
pub mod alerts;
pub mod audit;
pub mod cache;
pub mod changes;
pub mod config;
pub mod daily;
pub mod deadline;
pub mod error;
pub mod events;
pub mod exchange;
pub mod governance;
pub mod log;
pub mod metrics;
pub mod policy;
pub mod providers;
pub mod quota;
pub mod release;
pub mod resilience;
pub mod server;
pub mod subscribe;

pub use config::{BrokerConfig, ConfigError};
pub use error::{Error, ExchangeError};
pub use server::{Broker, PolicyReloader, serve};
