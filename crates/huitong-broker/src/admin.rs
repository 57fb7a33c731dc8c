//! The `Admin` gRPC service: access requests and grants, for departments' administrators.
//!
//! The caller's department is always the one in its verified certificate: a department files
//! requests as itself, and decides only on requests for its own resources. Auditor
//! certificates may list every department's requests and grants, and change nothing.
//!
//! Every act is in the exchange log before its answer leaves ([`crate::governance`]).

use std::sync::Arc;
use std::time::SystemTime;

use huitong_core::{DeptId, ResourceId};
use huitong_proto::convert;
use huitong_proto::v1::admin_server::Admin;
use huitong_proto::v1::{
    AccessRequest, AccessRequestState, ApproveAccessRequestRequest, DenyAccessRequestRequest,
    FileAccessRequestRequest, Grant, ListAccessRequestsRequest, ListAccessRequestsResponse,
    ListGrantsRequest, ListGrantsResponse, RevokeGrantRequest,
};
use huitong_tls::Role;
use huitong_tls::guard::verified_peer;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::error::policy_status;
use crate::governance::Governance;
use crate::policy::Policy;
use crate::providers::Providers;

/// The `Admin` gRPC service.
#[derive(Debug, Clone)]
pub struct AdminService {
    policy: Arc<Policy>,
    providers: Arc<Providers>,
    governance: Arc<Governance>,
}

impl AdminService {
    pub fn new(
        policy: Arc<Policy>,
        providers: Arc<Providers>,
        governance: Arc<Governance>,
    ) -> Self {
        Self {
            policy,
            providers,
            governance,
        }
    }

    /// Moves the act's entry into the log before the answer leaves. The act itself is already
    /// in force with its entry queued beside it, so a log that cannot be written now delays
    /// the entry (the recorder retries every second) but cannot lose it.
    async fn record_act(&self) {
        if let Err(e) = self.governance.flush().await {
            warn!(error = %e, "a governance entry stays queued until the exchange log can be written");
        }
    }
}

impl AdminService {
    /// A grant as answered and listed: its lookup as in force, with the resource's default
    /// filled in when the grant leaves it open and the resource is in the catalogue.
    fn listed(&self, g: &huitong_core::Grant, now: SystemTime) -> Grant {
        let mut w = convert::grant_to_wire(g, now);
        if w.lookup.is_empty()
            && let Ok(spec) = self.providers.catalogue().get(g.resource())
        {
            w.lookup = g.lookup_for(spec).as_str().to_owned();
        }
        w
    }
}

/// The department of an administrator who may act: auditors may read but not change.
fn acting_admin<T>(request: &Request<T>, act: &str) -> Result<DeptId, Status> {
    let peer = verified_peer(request)?;
    if peer.role != Role::Admin {
        return Err(Status::permission_denied(format!(
            "only a department's admin certificate may {act}; yours is {} ({peer}), which may list grants and access requests but not change them",
            peer.role.as_str()
        )));
    }
    Ok(peer.dept.clone())
}

/// Whose requests and grants the caller may list: its own department's, or (an auditor)
/// every department's.
fn reader<T>(request: &Request<T>) -> Result<Option<DeptId>, Status> {
    let peer = verified_peer(request)?;
    Ok((peer.role != Role::Auditor).then(|| peer.dept.clone()))
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn file_access_request(
        &self,
        request: Request<FileAccessRequestRequest>,
    ) -> Result<Response<AccessRequest>, Status> {
        let consumer = acting_admin(&request, "file an access request")?;
        let r = request.into_inner();
        let resource = ResourceId::parse(&r.resource).map_err(|e| policy_status(e.into()))?;
        let catalogue = self.providers.catalogue();
        let spec = Arc::clone(
            catalogue
                .get(&resource)
                .map_err(|e| policy_status(e.into()))?,
        );
        let filed = self
            .policy
            .file_request(
                consumer,
                spec,
                r.fields,
                r.purposes,
                r.legal_basis,
                r.duration_days,
            )
            .await
            .map_err(policy_status)?;
        info!(request = filed.id(), consumer = %filed.consumer(), resource = %filed.resource(), "access request filed");
        self.record_act().await;
        Ok(Response::new(convert::request_to_wire(
            &filed,
            SystemTime::now(),
        )))
    }

    async fn list_access_requests(
        &self,
        request: Request<ListAccessRequestsRequest>,
    ) -> Result<Response<ListAccessRequestsResponse>, Status> {
        let dept = reader(&request)?;
        let r = request.into_inner();
        let state = AccessRequestState::try_from(r.state).map_err(|_| {
            Status::invalid_argument("state must be PENDING, APPROVED, DENIED or unspecified")
        })?;
        let now = SystemTime::now();
        let requests = self
            .policy
            .requests_of(dept.as_ref())
            .map_err(policy_status)?
            .iter()
            .filter(|a| r.consumer.is_empty() || a.consumer().as_str() == r.consumer)
            .filter(|a| r.resource.is_empty() || a.resource().to_string() == r.resource)
            .map(|a| convert::request_to_wire(a, now))
            .filter(|w| !r.overdue_only || w.overdue)
            .filter(|w| state == AccessRequestState::Unspecified || w.state == state as i32)
            .collect();
        Ok(Response::new(ListAccessRequestsResponse { requests }))
    }

    async fn approve_access_request(
        &self,
        request: Request<ApproveAccessRequestRequest>,
    ) -> Result<Response<Grant>, Status> {
        let by = acting_admin(&request, "approve an access request")?;
        let r = request.into_inner();
        let terms = convert::terms_from_wire(&r).map_err(|e| policy_status(e.into()))?;
        let grant = self
            .policy
            .approve(r.id, by, terms)
            .await
            .map_err(policy_status)?;
        info!(grant = grant.id(), consumer = %grant.consumer(), resource = %grant.resource(), "access request approved");
        self.record_act().await;
        Ok(Response::new(self.listed(&grant, SystemTime::now())))
    }

    async fn deny_access_request(
        &self,
        request: Request<DenyAccessRequestRequest>,
    ) -> Result<Response<AccessRequest>, Status> {
        let by = acting_admin(&request, "deny an access request")?;
        let r = request.into_inner();
        let denied = self
            .policy
            .deny(r.id, by, r.reason)
            .await
            .map_err(policy_status)?;
        info!(request = denied.id(), "access request denied");
        self.record_act().await;
        Ok(Response::new(convert::request_to_wire(
            &denied,
            SystemTime::now(),
        )))
    }

    async fn list_grants(
        &self,
        request: Request<ListGrantsRequest>,
    ) -> Result<Response<ListGrantsResponse>, Status> {
        let dept = reader(&request)?;
        let r = request.into_inner();
        let at = match &r.in_force_at {
            Some(t) => Some(huitong_proto::value::timestamp_to_system_time(t).ok_or_else(|| {
                Status::invalid_argument(
                    "in_force_at is before 1970 or has a negative fraction; give a time from 1970 on",
                )
            })?),
            None => None,
        };
        let now = SystemTime::now();
        let grants = self
            .policy
            .grants_of(dept.as_ref())
            .iter()
            .filter(|g| match at {
                Some(t) => was_in_force(g, t),
                None => r.include_inactive || g.is_active(now),
            })
            .filter(|g| r.consumer.is_empty() || g.consumer().as_str() == r.consumer)
            .filter(|g| r.resource.is_empty() || g.resource().to_string() == r.resource)
            .map(|g| self.listed(g, now))
            .collect();
        Ok(Response::new(ListGrantsResponse { grants }))
    }

    async fn revoke_grant(
        &self,
        request: Request<RevokeGrantRequest>,
    ) -> Result<Response<Grant>, Status> {
        let by = acting_admin(&request, "revoke a grant")?;
        let r = request.into_inner();
        let grant = self
            .policy
            .revoke(r.id, by, r.reason)
            .await
            .map_err(policy_status)?;
        info!(grant = grant.id(), "grant revoked");
        self.record_act().await;
        Ok(Response::new(convert::grant_to_wire(
            &grant,
            SystemTime::now(),
        )))
    }
}

/// Whether `g` was in force at `t`: granted by then, not yet expired, not yet revoked.
fn was_in_force(g: &huitong_core::Grant, t: SystemTime) -> bool {
    g.granted_at() <= t && t < g.expires_at() && g.revocation().is_none_or(|r| t < r.at)
}
