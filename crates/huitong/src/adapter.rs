//! `huitong adapter`: run a department's adapter from its config file, or (`huitong adapter
//! check`) check any adapter against the protocol's contract.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use huitong_adapter::AdapterConfig;

// Serving stays `huitong adapter --config FILE` (units and manifests already run it), so the
// subcommand is optional and its arguments exclude serving's.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The adapter's config file (TOML).
    #[arg(long, short, required = true)]
    config: Option<PathBuf>,
    /// Listen here instead of the config's `listen` (port 0 picks a free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Check a running adapter, in any language, against the protocol's contract; exits 0 when
    /// every check passes, 1 when one fails, 2 when the adapter cannot be reached.
    Check(crate::conformance::Args),
}

impl Args {
    /// Whether this runs the checker (a short-lived client) rather than an adapter.
    pub fn is_check(&self) -> bool {
        matches!(self.command, Some(Command::Check(_)))
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config_path = match (args.command, args.config) {
        (Some(Command::Check(check)), _) => return Ok(crate::conformance::run(check).await),
        (None, Some(path)) => path,
        // clap requires --config without a subcommand; this is only reached if that changes.
        (None, None) => anyhow::bail!("give --config FILE, or use `huitong adapter check`"),
    };
    let config = AdapterConfig::load(&config_path)?;
    // The checks `huitong config check` makes, so that both say the same, naming the key.
    let problems = crate::config::adapter_problems(&config);
    if !problems.is_empty() {
        anyhow::bail!("cannot start: {}", problems.join("; "));
    }
    let source = huitong_sources::load(&config)
        .with_context(|| format!("loading the sources of {}", config_path.display()))?;
    let tls = huitong_tls::ServerTls::load(config.tls_files())
        .with_context(|| format!("{}: [tls]", config_path.display()))?;
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
