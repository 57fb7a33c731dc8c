//! `huitong adapter`: run a department's adapter from its config file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use huitong_adapter::AdapterConfig;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The adapter's config file (TOML).
    #[arg(long, short)]
    config: PathBuf,
    /// Listen here instead of the config's `listen` (port 0 picks a free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = AdapterConfig::load(&args.config)?;
    let source = config
        .into_source()
        .with_context(|| format!("loading the records for {}", args.config.display()))?;
    let tls = huitong_tls::ServerTls::load(config.tls_files())
        .with_context(|| format!("{}: [tls]", args.config.display()))?;
    let listen = args.listen.unwrap_or(config.listen());
    let listener = huitong_proto::transport::bind(listen)
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let shutdown = crate::serve::shutdown_signal();
    crate::serve::announce(&format!("huitong adapter {}", config.dept()), addr);
    huitong_adapter::serve(
        config.dept().clone(),
        source,
        listener,
        config.serve_options(),
        tls,
        shutdown,
    )
    .await
    .context("adapter stopped")?;
    Ok(ExitCode::SUCCESS)
}
