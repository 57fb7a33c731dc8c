//! Failed authentications: counted by reason, and logged once per peer and reason.
//!
//! A stolen or revoked key that keeps trying is what an operator must see, but a client that
//! retries every second must not fill the log: the first failure of a peer for a reason is
//! logged at warn, the next ones for [`LOG_EVERY`] only counted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::AuthError;
use crate::revocation::lock;

/// How long a peer's failures for one reason are counted without another log line.
pub const LOG_EVERY: Duration = Duration::from_secs(600);
/// Peers remembered for rate limiting at most; a flood from more addresses than this is still
/// counted, and logged once per address as the table turns over.
const REMEMBER_MAX: usize = 4096;

/// Why an authentication failed, as counted in `huitong_auth_failures_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// No client certificate at all.
    NoCertificate,
    /// A certificate of another CA or trust domain.
    ForeignCa,
    /// A certificate the exchange CA revoked.
    Revoked,
    /// A certificate past its validity.
    Expired,
    /// A valid certificate in a role (or of an identity) the service does not serve.
    WrongRole,
    /// Anything else: not yet valid, malformed, no identity, unknown revocation status.
    BadCertificate,
}

impl FailureReason {
    pub const ALL: [FailureReason; 6] = [
        FailureReason::NoCertificate,
        FailureReason::ForeignCa,
        FailureReason::Revoked,
        FailureReason::Expired,
        FailureReason::WrongRole,
        FailureReason::BadCertificate,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::NoCertificate => "no_certificate",
            FailureReason::ForeignCa => "foreign_ca",
            FailureReason::Revoked => "revoked",
            FailureReason::Expired => "expired",
            FailureReason::WrongRole => "wrong_role",
            FailureReason::BadCertificate => "bad_certificate",
        }
    }

    fn index(self) -> usize {
        match self {
            FailureReason::NoCertificate => 0,
            FailureReason::ForeignCa => 1,
            FailureReason::Revoked => 2,
            FailureReason::Expired => 3,
            FailureReason::WrongRole => 4,
            FailureReason::BadCertificate => 5,
        }
    }
}

impl From<&AuthError> for FailureReason {
    fn from(e: &AuthError) -> Self {
        match e {
            AuthError::NoCertificate => FailureReason::NoCertificate,
            AuthError::UnknownIssuer | AuthError::WrongTrustDomain { .. } => {
                FailureReason::ForeignCa
            }
            AuthError::Revoked => FailureReason::Revoked,
            AuthError::Expired { .. } => FailureReason::Expired,
            AuthError::NotYetValid { .. } | AuthError::NoIdentity(_) | AuthError::Other(_) => {
                FailureReason::BadCertificate
            }
        }
    }
}

/// A peer as the rate limiter tells peers apart: address, identity claimed, reason.
type PeerReason = (Option<IpAddr>, String, FailureReason);

/// The counts and the rate limiter of one server.
#[derive(Debug, Default)]
pub(crate) struct AuthFailures {
    counts: [AtomicU64; 6],
    /// (address, identity claimed, reason) -> when it was last logged.
    logged: Mutex<HashMap<PeerReason, Instant>>,
}

impl AuthFailures {
    /// Counts one failure, and logs it unless this peer's failures for this reason were logged
    /// within [`LOG_EVERY`]. `claimed` is the identity the certificate names, unverified (it
    /// helps find the key holder; it is never trusted).
    pub(crate) fn record(
        &self,
        peer: Option<IpAddr>,
        claimed: Option<String>,
        reason: FailureReason,
        service: &str,
        detail: &dyn std::fmt::Display,
    ) {
        self.counts[reason.index()].fetch_add(1, Ordering::Relaxed);
        let claimed = claimed.unwrap_or_default();
        let now = Instant::now();
        let log = {
            let mut logged = lock(&self.logged);
            let key = (peer, claimed.clone(), reason);
            match logged.get(&key) {
                Some(at) if now.duration_since(*at) < LOG_EVERY => false,
                _ => {
                    if logged.len() >= REMEMBER_MAX {
                        logged.retain(|_, at| now.duration_since(*at) < LOG_EVERY);
                        if logged.len() >= REMEMBER_MAX {
                            logged.clear();
                        }
                    }
                    logged.insert(key, now);
                    true
                }
            }
        };
        if log {
            let peer = peer.map(|p| p.to_string()).unwrap_or_default();
            tracing::warn!(
                %peer,
                claimed = %claimed,
                reason = reason.as_str(),
                %service,
                detail = %detail,
                repeats_muted_for_s = LOG_EVERY.as_secs(),
                "authentication failed"
            );
        }
    }

    pub(crate) fn counts(&self) -> Vec<(&'static str, u64)> {
        FailureReason::ALL
            .iter()
            .map(|r| (r.as_str(), self.counts[r.index()].load(Ordering::Relaxed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_counted_every_time_and_remembered_per_reason() {
        let f = AuthFailures::default();
        let ip = Some(IpAddr::from([10, 0, 0, 7]));
        for _ in 0..3 {
            f.record(
                ip,
                Some("x".into()),
                FailureReason::Revoked,
                "s",
                &"revoked",
            );
        }
        f.record(
            ip,
            Some("x".into()),
            FailureReason::Expired,
            "s",
            &"expired",
        );
        let counts: HashMap<_, _> = f.counts().into_iter().collect();
        assert_eq!(counts["revoked"], 3);
        assert_eq!(counts["expired"], 1);
        assert_eq!(counts["no_certificate"], 0);
        // One entry per peer and reason: the three revoked attempts were logged once.
        assert_eq!(lock(&f.logged).len(), 2);
    }
}
