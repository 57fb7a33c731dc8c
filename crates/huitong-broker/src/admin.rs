//! The `Admin` gRPC service: access requests and grants, for departments' administrators.
//!
//! The caller's department is always the one in its verified certificate: a department files
//! requests as itself, and decides only on requests for its own resources.

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
use huitong_tls::guard::verified_peer;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::error::policy_status;
use crate::policy::Policy;
use crate::providers::Providers;

/// The `Admin` gRPC service.
#[derive(Debug, Clone)]
pub struct AdminService {
    policy: Arc<Policy>,
    providers: Arc<Providers>,
}

impl AdminService {
    pub fn new(policy: Arc<Policy>, providers: Arc<Providers>) -> Self {
        Self { policy, providers }
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

fn caller<T>(request: &Request<T>) -> Result<DeptId, Status> {
    Ok(verified_peer(request)?.dept.clone())
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn file_access_request(
        &self,
        request: Request<FileAccessRequestRequest>,
    ) -> Result<Response<AccessRequest>, Status> {
        let consumer = caller(&request)?;
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
        Ok(Response::new(convert::request_to_wire(
            &filed,
            SystemTime::now(),
        )))
    }

    async fn list_access_requests(
        &self,
        request: Request<ListAccessRequestsRequest>,
    ) -> Result<Response<ListAccessRequestsResponse>, Status> {
        let dept = caller(&request)?;
        let r = request.into_inner();
        let state = AccessRequestState::try_from(r.state).map_err(|_| {
            Status::invalid_argument("state must be PENDING, APPROVED, DENIED or unspecified")
        })?;
        let now = SystemTime::now();
        let requests = self
            .policy
            .requests_of(&dept)
            .map_err(policy_status)?
            .iter()
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
        let by = caller(&request)?;
        let r = request.into_inner();
        let terms = convert::terms_from_wire(&r).map_err(|e| policy_status(e.into()))?;
        let grant = self
            .policy
            .approve(r.id, by, terms)
            .await
            .map_err(policy_status)?;
        info!(grant = grant.id(), consumer = %grant.consumer(), resource = %grant.resource(), "access request approved");
        Ok(Response::new(self.listed(&grant, SystemTime::now())))
    }

    async fn deny_access_request(
        &self,
        request: Request<DenyAccessRequestRequest>,
    ) -> Result<Response<AccessRequest>, Status> {
        let by = caller(&request)?;
        let r = request.into_inner();
        let denied = self
            .policy
            .deny(r.id, by, r.reason)
            .await
            .map_err(policy_status)?;
        info!(request = denied.id(), "access request denied");
        Ok(Response::new(convert::request_to_wire(
            &denied,
            SystemTime::now(),
        )))
    }

    async fn list_grants(
        &self,
        request: Request<ListGrantsRequest>,
    ) -> Result<Response<ListGrantsResponse>, Status> {
        let dept = caller(&request)?;
        let all = request.into_inner().include_inactive;
        let now = SystemTime::now();
        let grants = self
            .policy
            .grants_of(&dept)
            .iter()
            .filter(|g| all || g.is_active(now))
            .map(|g| self.listed(g, now))
            .collect();
        Ok(Response::new(ListGrantsResponse { grants }))
    }

    async fn revoke_grant(
        &self,
        request: Request<RevokeGrantRequest>,
    ) -> Result<Response<Grant>, Status> {
        let by = caller(&request)?;
        let r = request.into_inner();
        let grant = self
            .policy
            .revoke(r.id, by, r.reason)
            .await
            .map_err(policy_status)?;
        info!(grant = grant.id(), "grant revoked");
        Ok(Response::new(convert::grant_to_wire(
            &grant,
            SystemTime::now(),
        )))
    }
}
