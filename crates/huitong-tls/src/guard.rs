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

use crate::{PeerId, Role, ServerTls};

/// An interceptor that authenticates each request with [`ServerTls::authenticate`], refuses
/// roles the service is not for, and leaves the verified identity for [`verified_peer`].
///
/// Refusals are UNAUTHENTICATED (no valid certificate; the message says what is wrong with it)
/// or PERMISSION_DENIED (a valid certificate in a role the service does not serve).
#[derive(Clone)]
pub struct Guard {
    tls: Arc<ServerTls>,
    service: Arc<str>,
    roles: Arc<[Role]>,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("service", &self.service)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// A guard for `service` (named in refusals, e.g. "the Exchange service") that admits peers
/// in any of `roles`.
pub fn require(tls: impl Into<Arc<ServerTls>>, service: &str, roles: &[Role]) -> Guard {
    Guard {
        tls: tls.into(),
        service: service.into(),
        roles: roles.into(),
    }
}

/// The identity [`Guard`] verified, stored in the request's extensions. A private type, so
/// that nothing but the guard can put one there.
#[derive(Clone, Debug)]
struct Verified(PeerId);

impl tonic::service::Interceptor for Guard {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let peer = self.tls.authenticate(&request).map_err(|e| {
            tracing::debug!(service = %self.service, reason = %e, "refused an unauthenticated request");
            Status::from(e)
        })?;
        if !self.roles.contains(&peer.role) {
            tracing::debug!(service = %self.service, %peer, "refused a request from a role the service does not serve");
            return Err(Status::permission_denied(format!(
                "{} serves only {} certificates; yours is {peer}",
                self.service,
                roles_text(&self.roles)
            )));
        }
        request.extensions_mut().insert(Verified(peer));
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

/// The identity the [`Guard`] verified for this request.
///
/// Fails with INTERNAL when the service is not behind a guard: that is a server bug, and
/// answering without an identity would be worse.
pub fn verified_peer<T>(request: &Request<T>) -> Result<&PeerId, Status> {
    match request.extensions().get::<Verified>() {
        Some(Verified(peer)) => Ok(peer),
        None => {
            tracing::error!("a handler asked for the verified peer of a request no guard checked");
            Err(Status::internal(
                "the server did not authenticate this request; this is a server bug",
            ))
        }
    }
}

#[cfg(test)]
mod tests;
