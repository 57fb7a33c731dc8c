//! `huitong config check`: the same checks the broker and adapter make at start-up, without
//! starting anything.

use std::path::Path;
use std::process::ExitCode;

use crate::out::outln;
use anyhow::Context;

pub fn check(file: &Path) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("{}: cannot read", file.display()))?;
    // The two kinds are told apart by their top-level keys: an adapter names its department.
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if table.contains_key("dept") {
        let config = huitong_adapter::AdapterConfig::load(file)?;
        // Secrets, CA files and data files are read; databases and APIs are not contacted.
        huitong_sources::check(&config)
            .with_context(|| format!("{}: loading its sources", file.display()))?;
        outln!(
            "{}: adapter config for {} is valid",
            file.display(),
            config.dept()
        )?;
    } else {
        let config = huitong_broker::BrokerConfig::load(file)?;
        outln!(
            "{}: broker config with {} adapters is valid",
            file.display(),
            config.adapters.len()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
