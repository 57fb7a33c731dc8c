//! `huitong pki`: the exchange CA and its certificates.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::out::outln;
use anyhow::Context;
use huitong_core::DeptId;
use huitong_tls::{Role, pki};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create the exchange CA in DIR (ca.pem, ca.key, an empty crl.pem, brokers).
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// The SPIFFE trust domain of the exchange, e.g. gov.example.
        #[arg(long)]
        trust_domain: String,
        /// The department that runs the exchange's broker; repeat for a cluster whose brokers
        /// have identities of their own. Only these get broker certificates.
        #[arg(long = "broker", default_value = pki::DEFAULT_BROKER_DEPT)]
        brokers: Vec<String>,
    },
    /// Issue a key and certificate for a department in a role.
    Issue {
        #[arg(long)]
        dir: PathBuf,
        /// The department, e.g. civil-affairs.
        #[arg(long)]
        dept: String,
        /// adapter, consumer, admin, auditor or broker.
        #[arg(long)]
        role: String,
        /// Validity in days.
        #[arg(long, default_value_t = 397)]
        days: u32,
        /// A DNS name or IP address the holder serves on (broker and adapter roles); repeat.
        /// Default for servers: localhost and 127.0.0.1.
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Replace an existing certificate and key for this identity; the old pair is kept as
        /// <dept>-<role>.old.pem and .old.key, so that it can still be revoked.
        #[arg(long)]
        force: bool,
    },
    /// Revoke a certificate; brokers and adapters reload the revocation list without restart.
    Revoke {
        #[arg(long)]
        dir: PathBuf,
        /// The certificate to revoke (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// Why, for the record.
        #[arg(long)]
        reason: String,
    },
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Init {
            dir,
            trust_domain,
            brokers,
        } => {
            let brokers = brokers
                .iter()
                .map(|b| DeptId::new(b).with_context(|| format!("--broker {b:?}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            pki::init_with_brokers(&dir, &trust_domain, &brokers)?;
            outln!(
                "created the exchange CA for {trust_domain} in {}",
                dir.display()
            )?;
        }
        Command::Issue {
            dir,
            dept,
            role,
            days,
            hosts,
            force,
        } => {
            let dept = DeptId::new(&dept).context("--dept")?;
            let role = Role::parse(&role).with_context(|| {
                format!("--role {role:?}: use adapter, consumer, admin, auditor or broker")
            })?;
            let issued = pki::issue(
                &dir,
                &pki::IssueOptions {
                    dept,
                    role,
                    valid_days: days,
                    hosts,
                    not_before_days_ago: 0,
                    replace: force,
                },
            )?;
            outln!(
                "issued {} : {} (key {})",
                issued.id,
                issued.cert.display(),
                issued.key.display()
            )?;
        }
        Command::Revoke { dir, cert, reason } => {
            pki::revoke(&dir, &cert, &reason)?;
            outln!("revoked {}; crl.pem rewritten", cert.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
