//! The huitong command: demo, broker, adapter, query and the other subcommands.
//!
//! This file only parses flags and maps the outcome to an exit code; each subcommand lives in
//! its own module and the work itself in the library crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod adapter;
mod admin;
mod audit;
mod audit_stats;
mod bench;
mod broker;
mod config;
mod conformance;
mod demo;
mod health;
mod identity;
mod out;
mod pki;
mod query;
mod serve;
mod subscribe;
mod zone;

#[derive(Debug, Parser)]
#[command(
    name = "huitong",
    version,
    about = "Huitong (汇通): cross-department data exchange. Data travels between departments, not citizens."
)]
struct Cli {
    /// Write log lines as JSON objects (for log shippers) instead of text. The environment
    /// variable takes 1/0, true/false, yes/no or on/off.
    #[arg(
        long,
        global = true,
        env = "HUITONG_LOG_JSON",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    log_json: bool,
    /// Export spans over OTLP/gRPC to this collector, e.g. http://127.0.0.1:4317.
    #[arg(long, global = true, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a three-department exchange on this machine and walk through real exchanges.
    Demo(demo::Args),
    /// Run the broker.
    Broker(broker::Args),
    /// Run a department's adapter from a config file, or check one (`adapter check`).
    Adapter(adapter::Args),
    /// Query records through a broker; prints JSON.
    Query(query::QueryArgs),
    /// List the broker's catalogue.
    Catalogue(query::CatalogueArgs),
    /// Follow a resource's change events: JSON lines, acknowledged as written, resumed after
    /// a restart.
    Subscribe(subscribe::Args),
    /// Access requests and grants (a department administrator's certificate).
    Admin(admin::Args),
    /// Read, filter and verify the exchange log.
    Audit(audit::Args),
    /// Measure: load on adapters and brokers, open connections, log appends and proofs.
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
    /// Check a broker config, an adapter config or a policy file as start-up would; exits
    /// non-zero with one line per problem, each naming the file and key.
    Check(config::CheckArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = matches!(
        cli.command,
        Command::Query(_)
            | Command::Catalogue(_)
            | Command::Subscribe(_)
            | Command::Config(_)
            | Command::Demo(_)
            | Command::Admin(_)
            | Command::Audit(_)
            | Command::Bench(_)
            | Command::Health(_)
            | Command::Pki(_)
    ) || matches!(&cli.command, Command::Adapter(a) if a.is_check());
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
    // The OTLP exporter runs on the runtime, so logging starts inside it.
    let service = service_name(&cli.command);
    let otlp = {
        let _guard = runtime.enter();
        match init_logging(
            if quiet { "warn" } else { "info" },
            cli.log_json,
            cli.otlp_endpoint.as_deref(),
            service,
        ) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    };
    serve::set_json(cli.log_json);
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => demo::run(args).await,
            Command::Broker(args) => broker::run(args).await,
            Command::Adapter(args) => adapter::run(args).await,
            Command::Query(args) => query::run_query(args).await,
            Command::Catalogue(args) => query::run_catalogue(args).await,
            Command::Subscribe(args) => subscribe::run(args).await,
            Command::Admin(args) => admin::run(args).await,
            Command::Audit(args) => audit::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Health(args) => health::run(args).await,
            Command::Pki(cmd) => pki::run(cmd),
            Command::Config(ConfigCommand::Check(args)) => config::check(&args),
        }
    });
    if let Some(provider) = otlp {
        // Spans still batched are sent before the process ends.
        let _guard = runtime.enter();
        let _ = provider.shutdown();
    }
    match result {
        Ok(code) => code,
        // The reader (e.g. `head`) has what it wanted; nothing failed.
        Err(e) if out::is_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: library errors often include their source in
/// their own message (`cannot read x.pem: No such file`), which `{:#}` would repeat.
fn report(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn service_name(command: &Command) -> &'static str {
    match command {
        Command::Broker(_) => "huitong-broker",
        Command::Adapter(a) if !a.is_check() => "huitong-adapter",
        Command::Demo(_) => "huitong-demo",
        _ => "huitong",
    }
}

/// Logs go to stderr, so that stdout carries only results (JSON, addresses) for scripts.
/// `HUITONG_LOG` takes a tracing filter such as `info,huitong_broker=debug`. With an OTLP
/// endpoint, spans are also exported there (the returned provider flushes them at exit).
fn init_logging(
    default: &str,
    json: bool,
    otlp_endpoint: Option<&str>,
    service: &'static str,
) -> anyhow::Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>> {
    use std::io::IsTerminal;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("HUITONG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let fmt = if json {
        fmt.json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed()
    } else {
        fmt.with_ansi(std::io::stderr().is_terminal()).boxed()
    };
    let (otel, provider) = match otlp_endpoint {
        None => (None, None),
        Some(endpoint) => {
            use opentelemetry::trace::TracerProvider;
            use opentelemetry_otlp::WithExportConfig;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .map_err(|e| anyhow::anyhow!("--otlp-endpoint {endpoint}: {e}"))?;
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name(service)
                        .build(),
                )
                .build();
            let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("huitong"));
            (Some(layer), Some(provider))
        }
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .init();
    Ok(provider)
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
