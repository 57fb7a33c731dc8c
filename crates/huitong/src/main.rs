//! The huitong command: demo, broker, adapter, query and the other subcommands.
//!
//! This file only parses flags and maps the outcome to an exit code; each subcommand lives in
//! its own module and the work itself in the library crates.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod adapter;
mod admin;
mod audit;
mod bench;
mod broker;
mod config;
mod demo;
mod health;
mod identity;
mod pki;
mod query;
mod serve;

#[derive(Debug, Parser)]
#[command(
    name = "huitong",
    version,
    about = "Huitong (汇通): cross-department data exchange. Data travels between departments, not citizens."
)]
struct Cli {
    /// Write log lines as JSON objects (for log shippers) instead of text.
    #[arg(long, global = true, env = "HUITONG_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a three-department exchange on this machine and walk through real exchanges.
    Demo(demo::Args),
    /// Run the broker.
    Broker(broker::Args),
    /// Run a department's adapter from a config file.
    Adapter(adapter::Args),
    /// Query records through a broker; prints JSON.
    Query(query::QueryArgs),
    /// List the broker's catalogue.
    Catalogue(query::CatalogueArgs),
    /// Access requests and grants (a department administrator's certificate).
    Admin(admin::Args),
    /// Read, filter and verify the exchange log.
    Audit(audit::Args),
    /// Measure: log appends, proofs, verification (ratios to a baseline from the same run).
    Bench(bench::Args),
    /// The exchange CA: create it, issue and revoke certificates.
    #[command(subcommand)]
    Pki(pki::Command),
    /// Ask a broker or adapter whether it is serving (gRPC health over mutual TLS).
    Health(health::Args),
    /// Check configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a broker or adapter config file; exits non-zero with the key and problem if wrong.
    Check {
        /// The file to check.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = matches!(
        cli.command,
        Command::Query(_)
            | Command::Catalogue(_)
            | Command::Config(_)
            | Command::Demo(_)
            | Command::Admin(_)
            | Command::Audit(_)
            | Command::Bench(_)
            | Command::Health(_)
            | Command::Pki(_)
    );
    init_logging(if quiet { "warn" } else { "info" }, cli.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => demo::run(args).await,
            Command::Broker(args) => broker::run(args).await,
            Command::Adapter(args) => adapter::run(args).await,
            Command::Query(args) => query::run_query(args).await,
            Command::Catalogue(args) => query::run_catalogue(args).await,
            Command::Admin(args) => admin::run(args).await,
            Command::Audit(args) => audit::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Health(args) => health::run(args).await,
            Command::Pki(cmd) => pki::run(cmd),
            Command::Config(ConfigCommand::Check { file }) => config::check(&file),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, so that stdout carries only results (JSON, addresses) for scripts.
/// `HUITONG_LOG` takes a tracing filter such as `info,huitong_broker=debug`.
fn init_logging(default: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HUITONG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Catches clashing flags (e.g. two `--key`s) before a user does.
    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
