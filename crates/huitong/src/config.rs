//! `huitong config check`: the checks the broker and adapter make at start-up, without starting
//! anything, for the three files operators edit: a broker config, an adapter config and a
//! policy file. Start-up calls the same functions ([`broker_problems`], [`adapter_problems`]),
//! so that a file that passes here cannot stop a start.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::out::outln;
use anyhow::Context;
use huitong_core::policy::Grant;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The file to check: a broker config, an adapter config or a policy file (told apart by
    /// their keys).
    file: PathBuf,
    /// The exchange's catalogue as `huitong catalogue --json` prints it: grants are then
    /// checked against its resources and fields too.
    #[arg(long)]
    catalogue: Option<PathBuf>,
    /// What the file is, when its keys would mislead (they are told apart by default).
    #[arg(long, value_enum)]
    kind: Option<Kind>,
}

/// Which kind of file a table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    Adapter,
    Broker,
    Policy,
}

fn kind_of(table: &toml::Table) -> Kind {
    // An adapter names its department; a policy file has only grants, quotas and cache
    // limits; anything else is read as a broker config, whose errors then say what is wrong.
    if table.contains_key("dept") {
        Kind::Adapter
    } else if !table.is_empty()
        && table
            .keys()
            .all(|k| matches!(k.as_str(), "grants" | "quotas" | "cache"))
    {
        Kind::Policy
    } else {
        Kind::Broker
    }
}

pub fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let file = &args.file;
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("{}: cannot read", file.display()))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let catalogue = match &args.catalogue {
        None => None,
        Some(path) => Some(Catalogue::read(path)?),
    };
    let (problems, summary) = match args.kind.unwrap_or_else(|| kind_of(&table)) {
        Kind::Adapter => {
            let config = huitong_adapter::AdapterConfig::load(file)?;
            let summary = format!("adapter config for {} is valid", config.dept());
            (adapter_problems(&config), summary)
        }
        Kind::Broker => {
            let config = huitong_broker::BrokerConfig::load(file)?;
            let mut problems = broker_problems(file, &config);
            if let (Some(policy), Some(catalogue)) = (&config.policy, &catalogue)
                && problems.is_empty()
            {
                let declared = huitong_broker::policy::check_policy_file(policy)?;
                problems.extend(catalogue.check(policy, &declared.grants));
            }
            let summary = format!(
                "broker config with {} adapters is valid{}",
                config.adapters.len(),
                match (&config.policy, &catalogue) {
                    (Some(_), Some(_)) => ", and its policy file matches the catalogue",
                    (Some(_), None) =>
                        " (give --catalogue to check its grants' resources and fields)",
                    (None, _) => "",
                }
            );
            (problems, summary)
        }
        Kind::Policy => match huitong_broker::policy::check_policy_file(file) {
            Err(e) => (vec![e.to_string()], String::new()),
            Ok(declared) => {
                let problems = catalogue
                    .as_ref()
                    .map(|c| c.check(file, &declared.grants))
                    .unwrap_or_default();
                let summary = format!(
                    "policy file with {} grants, {} quotas and {} cache limits is valid{}",
                    declared.grants.len(),
                    declared.quotas.len(),
                    declared.cache_limits.len(),
                    if catalogue.is_some() {
                        " and matches the catalogue"
                    } else {
                        " (give --catalogue to check its resources and fields)"
                    }
                );
                (problems, summary)
            }
        },
    };
    if problems.is_empty() {
        outln!("{}: {summary}", file.display())?;
        return Ok(ExitCode::SUCCESS);
    }
    for p in &problems {
        eprintln!("error: {p}");
    }
    eprintln!(
        "{}: {} problem{} found",
        file.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    Ok(ExitCode::FAILURE)
}

/// What `huitong broker` checks before it opens anything: one line per problem.
pub fn broker_problems(file: &Path, config: &huitong_broker::BrokerConfig) -> Vec<String> {
    config
        .check_files(file)
        .into_iter()
        .map(|e| e.to_string())
        .collect()
}

/// What `huitong adapter` checks before it serves: certificates, key and CRL, and the sources
/// (secrets, CA and data files read; databases and APIs not contacted).
pub fn adapter_problems(config: &huitong_adapter::AdapterConfig) -> Vec<String> {
    let mut problems = Vec::new();
    let file = config.file().display();
    let files = config.tls_files();
    if let Err(e) = huitong_tls::ServerTls::load(files) {
        problems.push(match files.key_of(&e) {
            Some(k) => format!("{file}: tls.{k}: {e}"),
            None => format!("{file}: tls: {e}"),
        });
    }
    if let Err(e) = huitong_sources::check(config) {
        problems.push(format!("{file}: {e}"));
    }
    problems
}

/// The catalogue's resources and their fields, from `huitong catalogue --json`.
struct Catalogue {
    path: PathBuf,
    fields: BTreeMap<String, BTreeSet<String>>,
}

impl Catalogue {
    fn read(path: &Path) -> anyhow::Result<Catalogue> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--catalogue {}: cannot read", path.display()))?;
        let entries: Vec<serde_json::Value> = serde_json::from_str(&text).with_context(|| {
            format!(
                "--catalogue {}: not the JSON of `huitong catalogue --json`",
                path.display()
            )
        })?;
        let mut fields = BTreeMap::new();
        for (i, e) in entries.iter().enumerate() {
            let resource = e["resource"].as_str().with_context(|| {
                format!("--catalogue {}: [{i}] has no \"resource\"", path.display())
            })?;
            let names: BTreeSet<String> = e["fields"]
                .as_array()
                .with_context(|| {
                    format!("--catalogue {}: [{i}] has no \"fields\"", path.display())
                })?
                .iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect();
            fields.insert(resource.to_owned(), names);
        }
        Ok(Catalogue {
            path: path.to_owned(),
            fields,
        })
    }

    /// One problem per grant field, mask or match field the catalogue does not offer.
    fn check(&self, policy: &Path, grants: &[Grant]) -> Vec<String> {
        let mut problems = Vec::new();
        for (i, g) in grants.iter().enumerate() {
            let at = |key: &str, problem: String| {
                format!("{}: grants[{i}].{key}: {problem}", policy.display())
            };
            let resource = g.resource().to_string();
            let Some(known) = self.fields.get(&resource) else {
                problems.push(at(
                    "resource",
                    format!(
                        "{resource} is not in the catalogue {} (its resources: {})",
                        self.path.display(),
                        self.fields.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
                continue;
            };
            let unknown = |key: &str, field: &str| {
                let problem = huitong_core::Error::UnknownField {
                    resource: g.resource().clone(),
                    field: field.to_owned(),
                    known: known.iter().cloned().collect::<Vec<_>>().join(", "),
                };
                at(key, problem.to_string())
            };
            for f in g.fields() {
                if !known.contains(f.as_str()) {
                    problems.push(unknown("fields", f.as_str()));
                }
            }
            for (f, _) in g.masks() {
                if !known.contains(f.as_str()) {
                    problems.push(unknown("masks", f.as_str()));
                }
            }
            for f in g.match_fields() {
                if !known.contains(f.as_str()) {
                    problems.push(unknown("match_fields", f.as_str()));
                }
            }
        }
        problems
    }
}
