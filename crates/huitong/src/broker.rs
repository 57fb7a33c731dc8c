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
    // The checks `huitong config check` makes, so that both say the same, naming the key.
    let problems = crate::config::broker_problems(&args.config, &config);
    if !problems.is_empty() {
        anyhow::bail!("cannot start: {}", problems.join("; "));
    }
    let broker = tokio::task::spawn_blocking(move || huitong_broker::Broker::new(config))
        .await
        .context("starting the broker")?
        .with_context(|| format!("starting the broker from {}", args.config.display()))?;
    let listener = huitong_proto::transport::bind(listen)
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let shutdown = crate::serve::shutdown_signal();
    if let Some(reloader) = broker.policy_reloader() {
        reload_on_sighup(reloader)?;
    }
    crate::serve::announce("huitong broker", addr);
    broker
        .serve(listener, shutdown)
        .await
        .context("broker stopped")?;
    Ok(ExitCode::SUCCESS)
}

/// SIGHUP reloads the policy file (revocation lists reload by themselves when they change). A
/// broken file is reported and changes nothing, so a typo cannot revoke every grant.
#[cfg(unix)]
fn reload_on_sighup(reloader: huitong_broker::PolicyReloader) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let r = reloader.clone();
            match tokio::task::spawn_blocking(move || r.reload()).await {
                Ok(Ok(n)) => tracing::info!(grants = n, "policy file reloaded"),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "policy file NOT reloaded; the previous grants stay in force")
                }
                Err(e) => tracing::error!(error = %e, "policy reload failed"),
            }
        }
    });
    Ok(())
}

#[cfg(not(unix))]
fn reload_on_sighup(_reloader: huitong_broker::PolicyReloader) -> anyhow::Result<()> {
    Ok(())
}
