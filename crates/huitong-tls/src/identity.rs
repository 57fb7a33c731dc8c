//! Identities: roles, SPIFFE IDs and the identity in a certificate.

use std::fmt;
use std::str::FromStr;

use huitong_core::DeptId;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::Error;

/// What a party does in the exchange; the last segment of its SPIFFE ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Serves a department's records to the broker.
    Adapter,
    /// A department system that asks the broker for records.
    Consumer,
    /// Manages departments, grants and access requests.
    Admin,
    /// Reads and verifies the exchange log.
    Auditor,
    /// The exchange's broker.
    Broker,
}

impl Role {
    /// All roles, in the order they are documented.
    pub const ALL: [Role; 5] = [
        Role::Adapter,
        Role::Consumer,
        Role::Admin,
        Role::Auditor,
        Role::Broker,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Adapter => "adapter",
            Role::Consumer => "consumer",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Broker => "broker",
        }
    }

    /// The role named exactly `s` (lowercase), if any.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether parties in this role accept connections, so that their certificates need the
    /// server-authentication usage and DNS/IP names.
    pub fn serves(self) -> bool {
        matches!(self, Role::Adapter | Role::Broker)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Role::parse(s).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{:?} is not a role; use one of adapter, consumer, admin, auditor, broker",
                s.chars().take(40).collect::<String>()
            ))
        })
    }
}

/// A verified party: `spiffe://<trust_domain>/dept/<dept>/<role>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerId {
    pub trust_domain: String,
    pub dept: DeptId,
    pub role: Role,
}

const SCHEME: &str = "spiffe://";
/// SPIFFE limits the trust domain to 255 bytes.
const MAX_TRUST_DOMAIN: usize = 255;
/// Longer URIs are cut in error messages, which may be shown to the peer.
const SHOWN_URI_CHARS: usize = 120;

impl PeerId {
    /// An identity from its parts; the trust domain is checked as in [`PeerId::parse_uri`].
    pub fn new(trust_domain: &str, dept: DeptId, role: Role) -> Result<PeerId, Error> {
        check_trust_domain(trust_domain).map_err(|reason| Error::InvalidPeerId {
            uri: format!("{SCHEME}{trust_domain}/dept/{dept}/{role}"),
            reason,
        })?;
        Ok(PeerId {
            trust_domain: trust_domain.to_owned(),
            dept,
            role,
        })
    }

    /// Parses `spiffe://<trust-domain>/dept/<dept_id>/<role>`, strictly: no port, user, query,
    /// fragment, trailing '/', or uppercase, because the URI is compared as a whole elsewhere
    /// (CRLs, logs) and two spellings of one identity would be two identities.
    pub fn parse_uri(s: &str) -> Result<PeerId, Error> {
        let bad = |reason: &str| Error::InvalidPeerId {
            uri: s.chars().take(SHOWN_URI_CHARS).collect(),
            reason: reason.to_owned(),
        };
        let rest = s
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad("it must start with spiffe://"))?;
        let (domain, path) = rest.split_once('/').ok_or_else(|| {
            bad("it has no path; write spiffe://<trust-domain>/dept/<dept>/<role>")
        })?;
        check_trust_domain(domain).map_err(|r| bad(&r))?;
        let mut parts = path.split('/');
        let (Some("dept"), Some(dept), Some(role), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad(
                "its path must be /dept/<dept>/<role>, e.g. /dept/public-security/adapter",
            ));
        };
        let dept = DeptId::new(dept).map_err(|e| bad(&e.to_string()))?;
        let role = Role::parse(role)
            .ok_or_else(|| bad("its role must be adapter, consumer, admin, auditor or broker"))?;
        Ok(PeerId {
            trust_domain: domain.to_owned(),
            dept,
            role,
        })
    }

    /// The SPIFFE URI, as written into certificates.
    pub fn uri(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}/dept/{}/{}",
            self.trust_domain, self.dept, self.role
        )
    }
}

impl FromStr for PeerId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        PeerId::parse_uri(s)
    }
}

/// The SPIFFE rules for a trust domain: lowercase letters, digits, '.', '-' and '_'.
pub(crate) fn check_trust_domain(d: &str) -> Result<(), String> {
    if d.is_empty() {
        return Err("the trust domain is empty".into());
    }
    if d.len() > MAX_TRUST_DOMAIN {
        return Err("the trust domain is longer than 255 bytes".into());
    }
    if !d
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(
            "the trust domain may hold only lowercase letters, digits, '.', '-' and '_' \
             (no port, no user)"
                .into(),
        );
    }
    Ok(())
}

/// The identity in a DER certificate's URI name.
///
/// The certificate must carry exactly one URI name and it must be a Huitong SPIFFE ID. This
/// does not verify the certificate; only call it on a certificate that has been verified, or
/// to read what an unverified one claims.
pub fn peer_id_of(cert_der: &[u8]) -> Result<PeerId, Error> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|_| Error::NoIdentity("the certificate cannot be parsed".into()))?;
    peer_id_of_parsed(&cert)
}

pub(crate) fn peer_id_of_parsed(cert: &X509Certificate<'_>) -> Result<PeerId, Error> {
    let san = cert
        .subject_alternative_name()
        .map_err(|_| Error::NoIdentity("its subject alternative names cannot be parsed".into()))?
        .ok_or_else(|| Error::NoIdentity("it has no subject alternative names".into()))?;
    let mut uris = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(u) => Some(*u),
        _ => None,
    });
    let (Some(uri), None) = (uris.next(), uris.next()) else {
        return Err(Error::NoIdentity(
            "it must carry exactly one URI name, spiffe://<trust-domain>/dept/<dept>/<role>".into(),
        ));
    };
    PeerId::parse_uri(uri).map_err(|e| Error::NoIdentity(e.to_string()))
}

#[cfg(test)]
mod tests;
