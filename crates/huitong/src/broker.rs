//! `huitong broker`: run the broker from its config file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use huitong_broker::BrokerConfig;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The broker's config file (TOML).
    #[arg(long, short)]
    config: PathBuf,
    /// Listen here instead of the config's `broker.listen` (port 0 picks a free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut config = BrokerConfig::load(&args.config)?;
    if let Some(addr) = args.listen {
        config.listen = addr;
    }
    let listen = config.listen;
    let broker = tokio::task::spawn_blocking(move || huitong_broker::Broker::new(config))
        .await
        .context("starting the broker")?
        .with_context(|| format!("starting the broker from {}", args.config.display()))?;
    let listener = huitong_proto::transport::bind(listen)
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let shutdown = crate::serve::shutdown_signal();
    crate::serve::announce("huitong broker", addr);
    broker
        .serve(listener, shutdown)
        .await
        .context("broker stopped")?;
    Ok(ExitCode::SUCCESS)
}
