//! The one error type of `huitong-adapter`, and the configuration error it wraps.
//!
//! Each message names what is wrong and where (file, line, config key, resource) so that an
//! operator can fix it without reading code. None quotes a record value: a data file holds
//! personal identifiers, and error messages end up in logs.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use huitong_core::{DeptId, ResourceId};

/// Why an adapter could not be configured, loaded or served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The adapter configuration file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The source described a resource of a department other than the adapter's.
    #[error(
        "the source describes {resource}, but this adapter serves department {dept}; \
         an adapter serves only its own department's resources"
    )]
    ForeignResource { dept: DeptId, resource: ResourceId },
    /// The source described two resources with the same name.
    #[error("the source describes {0} twice; resource names must be unique")]
    DuplicateResource(ResourceId),
    /// The configuration names a kind of source this function does not load.
    #[error(
        "{resource} is read by a {kind} source, which only `huitong adapter` (the \
         huitong-sources crate) loads; this function serves jsonl sources only"
    )]
    SourceKind {
        resource: ResourceId,
        kind: &'static str,
    },
    /// The source described no resources at all.
    #[error("the source of department {0} describes no resources; there is nothing to serve")]
    NoResources(DeptId),
    /// The serve options are out of range.
    #[error("invalid serve options: {0}")]
    InvalidOptions(String),
    /// A file could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// "read" or "write".
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A line of a data file does not fit its resource's description.
    #[error("{}, line {line}{}: {problem}", file.display(), field_part(field.as_deref()))]
    Data {
        file: PathBuf,
        /// 1-based.
        line: usize,
        /// The field at fault, when the problem is one field's.
        field: Option<String>,
        problem: String,
    },
    /// The configuration could not be written as TOML.
    #[error("cannot write the adapter configuration as TOML: {0}")]
    Serialize(#[from] toml::ser::Error),
    /// The reflection service could not read the embedded descriptors (a build fault).
    #[error("the gRPC reflection service could not be built: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The gRPC server failed while serving.
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

fn field_part(field: Option<&str>) -> String {
    field.map(|f| format!(", field {f}")).unwrap_or_default()
}

impl Error {
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        Error::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

/// An unreadable or invalid adapter configuration file.
///
/// Displayed as `<file>: <key>: <problem>`, e.g.
/// `adapter.toml: resources[0].fields[3].sensitivity: "secret" is not one of public, internal,
/// personal, sensitive`; `<key>` is left out for problems of the whole file (unreadable, not
/// TOML), where the problem carries toml's line and column instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    file: PathBuf,
    key: Option<String>,
    problem: String,
}

impl ConfigError {
    /// A problem with `key` (a path like `resources[0].source.url_env`) of `file`; for
    /// sources that check their configuration when they load.
    pub fn new(file: &Path, key: Option<String>, problem: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            key,
            problem: problem.into(),
        }
    }

    /// The configuration file, as it was named to [`AdapterConfig::load`](crate::AdapterConfig::load).
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The key path at fault, e.g. `resources[1].fields[2].type`.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// What is wrong, and what would be accepted.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.problem)
    }
}

impl std::error::Error for ConfigError {}
