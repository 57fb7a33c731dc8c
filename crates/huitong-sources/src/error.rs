//! The error of loading sources.

/// Why the sources of a configuration could not be loaded. Messages name the file and the key
/// or line at fault and never quote a secret or a record value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An option is wrong, or a secret, CA file or database URL it names cannot be used.
    #[error(transparent)]
    Config(#[from] huitong_adapter::ConfigError),
    /// A data file is unreadable or does not fit its resource's description.
    #[error(transparent)]
    Data(#[from] huitong_adapter::Error),
}
