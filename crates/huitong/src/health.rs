//! `huitong health`: the gRPC health check over mutual TLS, for probes (Kubernetes exec probes,
//! systemd watchdogs, load balancers) and people. Exits 0 only when the service is SERVING.

use std::process::ExitCode;

use huitong_tls::{ClientTls, Expect, Role};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::identity::IdentityArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The broker to check, e.g. https://127.0.0.1:7400.
    #[arg(long, env = "HUITONG_BROKER", default_value = crate::query::DEFAULT_BROKER)]
    broker: String,
    /// Check this adapter instead of the broker, e.g. https://127.0.0.1:7401.
    #[arg(long)]
    adapter: Option<String>,
    /// Before `--broker` and `--adapter`: the server's address, with `--server-role`. Kept so
    /// that existing probes keep working.
    #[arg(long, hide = true)]
    addr: Option<String>,
    #[arg(long, hide = true, default_value = "broker")]
    server_role: String,
    /// Verify the server's certificate for this name instead of the host dialled: for a
    /// probe that dials 127.0.0.1 or a pod address while clients use a DNS name.
    #[arg(long)]
    server_name: Option<String>,
    /// The service to ask about; empty for the server as a whole.
    #[arg(long, default_value = "")]
    service: String,
    #[command(flatten)]
    identity: IdentityArgs,
    /// Give up after this long.
    #[arg(long, default_value = "3s", value_parser = crate::query::duration)]
    timeout: std::time::Duration,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (addr, role) = match (&args.adapter, &args.addr) {
        (Some(adapter), _) => (adapter.clone(), Role::Adapter),
        (None, Some(addr)) => match args.server_role.as_str() {
            "broker" => (addr.clone(), Role::Broker),
            "adapter" => (addr.clone(), Role::Adapter),
            other => anyhow::bail!("--server-role {other:?}: use broker or adapter"),
        },
        (None, None) => (args.broker.clone(), Role::Broker),
    };
    let tls = ClientTls::load(&args.identity.files())?;
    let mut connector = tls.connector(Expect::Role(role));
    if let Some(name) = &args.server_name {
        connector = connector
            .with_server_name(name)
            .map_err(|e| anyhow::anyhow!("--server-name: {e}"))?;
    }
    let check = async {
        let channel = huitong_tls::endpoint(&addr)?
            .connect_with_connector(connector)
            .await?;
        let status = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: args.service.clone(),
            })
            .await?
            .into_inner()
            .status();
        anyhow::Ok(status)
    };
    let status = tokio::time::timeout(args.timeout, check)
        .await
        .map_err(|_| anyhow::anyhow!("{addr} did not answer within {:?}", args.timeout))??;
    // The exit code carries the answer, so a reader that went away (`| head -c0`) changes
    // nothing; any other write error is reported.
    if let Err(e) = crate::out::outln!("{}", status.as_str_name())
        && !crate::out::is_closed(&e)
    {
        return Err(e);
    }
    Ok(
        if status == tonic_health::pb::health_check_response::ServingStatus::Serving {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}
