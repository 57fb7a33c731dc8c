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
        #[arg(long, required_unless_present = "serial", conflicts_with = "serial")]
        cert: Option<PathBuf>,
        /// Or its serial number (hex, as `pki list` prints it), e.g. when the PEM was replaced.
        #[arg(long)]
        serial: Option<String>,
        /// Why, for the record.
        #[arg(long)]
        reason: String,
    },
    /// List the certificates in DIR: identity, serial, expiry, revoked; soonest expiry first.
    List {
        #[arg(long)]
        dir: PathBuf,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
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
        Command::Revoke {
            dir,
            cert,
            serial,
            reason,
        } => match (cert, serial) {
            (Some(cert), _) => {
                pki::revoke(&dir, &cert, &reason)?;
                outln!("revoked {}; crl.pem rewritten", cert.display())?;
            }
            (None, Some(serial)) => {
                pki::revoke_serial(&dir, &serial, &reason)?;
                outln!("revoked serial {serial}; crl.pem rewritten")?;
            }
            // clap requires one of the two.
            (None, None) => anyhow::bail!("give --cert FILE or --serial HEX"),
        },
        Command::List { dir, json } => list(&dir, json)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Soonest expiry first: the rows that need action are on top.
fn list(dir: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let mut certs = pki::list(dir)?;
    certs.sort_by_key(|c| (c.revoked, c.not_after));
    let now = jiff::Timestamp::now().as_second();
    let day = 86_400;
    for c in &certs {
        let id = c.id.as_ref().map(|i| i.uri()).unwrap_or_else(|| "-".into());
        let role = c.id.as_ref().map_or("-", |i| i.role.as_str());
        let file = c
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let not_after = jiff::Timestamp::from_second(c.not_after)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| c.not_after.to_string());
        let days_left = (c.not_after - now).div_euclid(day);
        let state = if c.revoked {
            "revoked"
        } else if !c.issued_by_ca {
            "not-this-ca"
        } else if c.not_after <= now {
            "expired"
        } else if days_left < 30 {
            "expires-soon"
        } else {
            "valid"
        };
        if json {
            outln!(
                "{}",
                serde_json::json!({
                    "file": file, "id": id, "role": role, "serial": c.serial,
                    "not_after": not_after, "days_left": days_left, "revoked": c.revoked,
                    "state": state,
                })
            )?;
        } else {
            outln!(
                "{state:<12} {days_left:>5}d  {not_after}  {role:<8} {id}  serial {}  {file}",
                c.serial
            )?;
        }
    }
    if !json && certs.is_empty() {
        outln!("no certificates in {}", dir.display())?;
    }
    Ok(())
}
