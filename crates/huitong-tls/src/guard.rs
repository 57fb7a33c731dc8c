//! Guarding a tonic service: authenticate every request and admit only some roles.
//!
//! ```
//! use huitong_tls::{Role, ServerTls, guard};
//!
//! // Wrap a generated server: `ExchangeServer::with_interceptor(exchange, exchange_guard(tls))`.
//! fn exchange_guard(tls: ServerTls) -> guard::Guard {
//!     guard::require(tls, "the Exchange service", &[Role::Consumer])
//! }
//!
//! // In a handler of the guarded service:
//! fn consumer_dept(request: &tonic::Request<()>) -> Result<String, tonic::Status> {
//!     Ok(guard::verified_peer(request)?.dept.to_string())
//! }
//! ```

use std::fmt;
use std::sync::Arc;

use tonic::{Request, Status};

use crate::{CertWatch, FailureReason, PeerId, Role, ServerTls};

/// An interceptor that authenticates each request with [`ServerTls::authenticate`], refuses
/// roles the service is not for, and leaves the verified identity for [`verified_peer`].
///
/// Refusals are UNAUTHENTICATED (no valid certificate; the message says what is wrong with it)
/// or PERMISSION_DENIED (a valid certificate in a role the service does not serve).
#[derive(Clone)]
pub struct Guard {
    tls: Arc<ServerTls>,
    service: Arc<str>,
    admits: Admits,
}

/// Whom a guard admits.
#[derive(Clone, Debug)]
enum Admits {
    /// Any identity in one of these roles.
    Roles(Arc<[Role]>),
    /// Exactly these identities; `setting` names where they are configured, for the refusal.
    Ids {
        ids: Arc<[PeerId]>,
        setting: Arc<str>,
    },
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("service", &self.service)
            .field("admits", &self.admits)
            .finish_non_exhaustive()
    }
}

/// A guard for `service` (named in refusals, e.g. "the Exchange service") that admits peers
/// in any of `roles`.
pub fn require(tls: impl Into<Arc<ServerTls>>, service: &str, roles: &[Role]) -> Guard {
    Guard {
        tls: tls.into(),
        service: service.into(),
        admits: Admits::Roles(roles.into()),
    }
}

/// A guard for `service` that admits exactly the identities `ids`, for a service that trusts
/// particular parties rather than a role: an adapter serves the exchange's broker, not any
/// certificate that says `broker`. A refusal names the identity presented and `setting`, the
/// configuration key that lists the admitted ones.
pub fn require_ids(
    tls: impl Into<Arc<ServerTls>>,
    service: &str,
    ids: &[PeerId],
    setting: &str,
) -> Guard {
    Guard {
        tls: tls.into(),
        service: service.into(),
        admits: Admits::Ids {
            ids: ids.into(),
            setting: setting.into(),
        },
    }
}

/// The identity [`Guard`] verified, stored in the request's extensions with the server that
/// verified it. A private type, so that nothing but the guard can put one there.
#[derive(Clone)]
struct Verified(PeerId, Arc<ServerTls>);

impl tonic::service::Interceptor for Guard {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let peer = match self.tls.authenticate(&request) {
            Ok(peer) => peer,
            Err(e) => {
                self.tls
                    .record_failure(&request, FailureReason::from(&e), &self.service, &e);
                return Err(Status::from(e));
            }
        };
        match &self.admits {
            Admits::Roles(roles) if !roles.contains(&peer.role) => {
                self.tls.record_failure(
                    &request,
                    FailureReason::WrongRole,
                    &self.service,
                    &format_args!("{} is not served to {peer}", self.service),
                );
                return Err(Status::permission_denied(format!(
                    "{} serves only {} certificates; yours is {peer}",
                    self.service,
                    roles_text(roles)
                )));
            }
            Admits::Ids { ids, setting } if !ids.contains(&peer) => {
                self.tls.record_failure(
                    &request,
                    FailureReason::WrongRole,
                    &self.service,
                    &format_args!("{peer} is not in `{setting}`"),
                );
                return Err(Status::permission_denied(format!(
                    "{} serves only {}; yours is {peer}. If {peer} is a broker of this \
                     exchange, add it to `{setting}` in this server's configuration",
                    self.service,
                    ids_text(ids)
                )));
            }
            _ => {}
        }
        request
            .extensions_mut()
            .insert(Verified(peer, Arc::clone(&self.tls)));
        Ok(request)
    }
}

fn roles_text(roles: &[Role]) -> String {
    match roles {
        [] => "no".into(),
        [one] => one.as_str().into(),
        [init @ .., last] => {
            let init: Vec<&str> = init.iter().map(|r| r.as_str()).collect();
            format!("{} or {last}", init.join(", "))
        }
    }
}

fn ids_text(ids: &[PeerId]) -> String {
    match ids {
        [] => "no one".into(),
        [one] => one.to_string(),
        [init @ .., last] => {
            let init: Vec<String> = init.iter().map(ToString::to_string).collect();
            format!("{} or {last}", init.join(", "))
        }
    }
}

/// The identity the [`Guard`] verified for this request.
///
/// Fails with INTERNAL when the service is not behind a guard: that is a server bug, and
/// answering without an identity would be worse.
pub fn verified_peer<T>(request: &Request<T>) -> Result<&PeerId, Status> {
    match request.extensions().get::<Verified>() {
        Some(Verified(peer, _)) => Ok(peer),
        None => Err(unguarded()),
    }
}

/// A watch on the certificate of the peer the [`Guard`] verified, for a handler whose answer
/// stays open (a stream): it must end when that certificate is revoked or expires.
///
/// UNAUTHENTICATED if the certificate stopped being valid since the guard looked; INTERNAL
/// when the service is not behind a guard.
pub fn cert_watch<T>(request: &Request<T>) -> Result<CertWatch, Status> {
    let Some(Verified(_, tls)) = request.extensions().get::<Verified>() else {
        return Err(unguarded());
    };
    let chain = request.peer_certs().ok_or_else(unguarded)?;
    Ok(tls.watch(&chain)?)
}

fn unguarded() -> Status {
    tracing::error!("a handler asked for the verified peer of a request no guard checked");
    Status::internal("the server did not authenticate this request; this is a server bug")
}

#[cfg(test)]
mod tests;
