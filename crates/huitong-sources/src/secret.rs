//! Secrets (database URLs, passwords, API credentials) read from a file or an environment
//! variable, and kept out of logs and debug output.

use std::path::Path;

use huitong_adapter::ConfigError;

use crate::Place;

/// A secret's text. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub(crate) struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// Text that was written in the configuration file itself (e.g. a URL without a password),
    /// treated as secret all the same.
    pub(crate) fn from_config(text: &str) -> Secret {
        Secret(text.to_owned())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

/// The secret in `file` (relative to the configuration's directory) or in the environment
/// variable `env`, whichever is given; `None` when neither is. A trailing line break is not
/// part of it. `file_key` and `env_key` name the options in errors.
pub(crate) fn read(
    at: &Place,
    file: Option<&Path>,
    file_key: &str,
    env: Option<&str>,
    env_key: &str,
) -> Result<Option<Secret>, ConfigError> {
    if let Some(file) = file {
        let path = at.dir.join(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| at.error(file_key, format!("cannot read {}: {e}", path.display())))?;
        warn_if_readable_by_all(&path);
        let text = text.trim_end_matches(['\r', '\n']).to_owned();
        if text.trim().is_empty() {
            return Err(at.error(file_key, format!("{} is empty", path.display())));
        }
        return Ok(Some(Secret(text)));
    }
    if let Some(name) = env {
        return match std::env::var(name) {
            Ok(v) if !v.trim().is_empty() => Ok(Some(Secret(v))),
            Ok(_) => Err(at.error(env_key, format!("the environment variable {name} is empty"))),
            Err(_) => Err(at.error(
                env_key,
                format!("the environment variable {name} is not set"),
            )),
        };
    }
    Ok(None)
}

#[cfg(unix)]
fn warn_if_readable_by_all(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o004 != 0
    {
        tracing::warn!(
            file = %path.display(),
            "a secret file is readable by every user of this machine; chmod o-r it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_all(_path: &Path) {}
