//! What the fuzz targets share: splitting one input into several files, a scratch directory
//! per process, the example resources and a fixed log key.
//!
//! Each target in `fuzz_targets/` feeds libFuzzer's bytes to the decoder the servers use on
//! outside input and then through the same checks the server makes, so that a panic, a hang
//! or an unbounded allocation anywhere on that path is found. Inputs made of several files (a
//! log directory, an export bundle) are length-prefixed sections, see [`sections`].

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use huitong_adapter::AdapterConfig;
use huitong_audit::note::Signer;
use huitong_core::ResourceSpec;

/// The example adapters' configurations and data, as the repository ships them.
pub const PUBLIC_SECURITY_TOML: &str =
    include_str!("../../deploy/examples/public-security-adapter.toml");
pub const CIVIL_AFFAIRS_TOML: &str =
    include_str!("../../deploy/examples/civil-affairs-adapter.toml");
pub const MARKET_REGULATION_TOML: &str =
    include_str!("../../deploy/examples/market-regulation-adapter.toml");
pub const BROKER_TOML: &str = include_str!("../../deploy/examples/broker.toml");
pub const POLICY_TOML: &str = include_str!("../../deploy/examples/policy.toml");
pub const HOUSEHOLD_JSONL: &str =
    include_str!("../../deploy/examples/data/household-register.jsonl");
pub const CRIMINAL_JSONL: &str = include_str!("../../deploy/examples/data/criminal-records.jsonl");
pub const MARRIAGES_JSONL: &str =
    include_str!("../../deploy/examples/data/marriage-registrations.jsonl");
pub const LICENCES_JSONL: &str = include_str!("../../deploy/examples/data/business-licences.jsonl");

/// Splits `data` into sections, each `[u32 LE length][bytes]`; a length past the end takes
/// the rest, and fewer than four bytes left are one last section. Always returns at least
/// `min` sections (missing ones empty), so targets can index without checking.
pub fn sections(mut data: &[u8], min: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let Some((len, rest)) = data.split_first_chunk::<4>() else {
            out.push(data);
            break;
        };
        let len = (u32::from_le_bytes(*len) as usize).min(rest.len());
        let (section, rest) = rest.split_at(len);
        out.push(section);
        data = rest;
    }
    while out.len() < min {
        out.push(&[]);
    }
    out
}

/// The inverse of [`sections`], for writing seeds.
pub fn join_sections(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// A directory of this process's own, on tmpfs where there is one: the log fsyncs every file
/// it opens, which on a disk would make each run cost milliseconds.
pub fn scratch(name: &str) -> PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        let root = std::env::var_os("HUITONG_FUZZ_TMP")
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|p| p.is_dir()))
            .unwrap_or_else(std::env::temp_dir);
        root.join(format!("huitong-fuzz-{}", std::process::id()))
    });
    let dir = base.join(name);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("the fuzz harness cannot create {}: {e}", dir.display());
    }
    dir
}

/// Empties `dir` (made by [`scratch`]) for the next run.
pub fn reset(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    if let Err(e) = std::fs::create_dir_all(dir) {
        panic!("the fuzz harness cannot recreate {}: {e}", dir.display());
    }
}

/// Writes a harness file; failing to is the harness's fault, not the input's.
pub fn write(path: &Path, data: &[u8]) {
    if let Err(e) = std::fs::write(path, data) {
        panic!("the fuzz harness cannot write {}: {e}", path.display());
    }
}

/// An example adapter configuration read as if installed in `dir` with its data files there.
pub fn example_adapter(toml: &str, dir: &Path) -> AdapterConfig {
    let data = dir.join("data");
    let _ = std::fs::create_dir_all(&data);
    for (name, text) in [
        ("household-register.jsonl", HOUSEHOLD_JSONL),
        ("criminal-records.jsonl", CRIMINAL_JSONL),
        ("marriage-registrations.jsonl", MARRIAGES_JSONL),
        ("business-licences.jsonl", LICENCES_JSONL),
    ] {
        write(&data.join(name), text.as_bytes());
    }
    match AdapterConfig::from_toml_str(toml, dir.join("adapter.toml")) {
        Ok(c) => c,
        Err(e) => panic!("the example adapter configuration does not load: {e}"),
    }
}

/// Every resource the example adapters describe: shared, conditional and not shared, with
/// string, date and other fields, so that the catalogue checks take every branch.
pub fn example_specs() -> &'static [ResourceSpec] {
    static SPECS: OnceLock<Vec<ResourceSpec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        let dir = scratch("example-specs");
        [
            PUBLIC_SECURITY_TOML,
            CIVIL_AFFAIRS_TOML,
            MARKET_REGULATION_TOML,
        ]
        .iter()
        .flat_map(|t| {
            example_adapter(t, &dir)
                .resources()
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect()
    })
}

/// The log's name and the fixed key the log and bundle targets sign with, so that the fuzzer
/// can get past signature checks to what lies behind them (an attacker cannot sign; a log
/// damaged on disk, or a bundle altered after signing, still carries a valid signature).
pub const LOG_ORIGIN: &str = "huitong.invalid/exchange-log";

pub fn log_signer() -> &'static Signer {
    static SIGNER: OnceLock<Signer> = OnceLock::new();
    SIGNER.get_or_init(|| match Signer::from_seed(LOG_ORIGIN, &[7; 32]) {
        Ok(s) => s,
        Err(e) => panic!("the fixed log key cannot be made: {e}"),
    })
}

/// A current-thread runtime for the async parts (the adapter service, the log's close).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("no Tokio runtime: {e}"),
        }
    })
}
