//! Conversions between wire messages and `huitong-core` domain types.
//!
//! Wire enums arrive as raw integers; an unknown or unspecified value is refused here, so the
//! domain never sees one.

use huitong_core::{
    DeptId, Error, FieldName, FieldSpec, FieldType, ResourceId, ResourceName, ResourceSpec,
    ResourceSpecParts, Sensitivity, SharingClass,
};

use crate::v1;

use std::time::SystemTime;

use huitong_core::{
    AccessRequest, AccessRequestParts, Bounds, Grant, GrantOrigin, GrantParts, Lookup, Mask,
    Purpose, RequestState, Revocation, Terms,
};

use crate::value::timestamp_to_system_time;

fn bad(resource: &str, problem: String) -> Error {
    Error::InvalidResource {
        resource: resource.to_owned(),
        problem,
    }
}

impl From<FieldType> for v1::FieldType {
    fn from(t: FieldType) -> Self {
        match t {
            FieldType::String => v1::FieldType::String,
            FieldType::Int => v1::FieldType::Int,
            FieldType::Double => v1::FieldType::Double,
            FieldType::Bool => v1::FieldType::Bool,
            FieldType::Bytes => v1::FieldType::Bytes,
            FieldType::Date => v1::FieldType::Date,
            FieldType::Timestamp => v1::FieldType::Timestamp,
        }
    }
}

impl From<Sensitivity> for v1::Sensitivity {
    fn from(s: Sensitivity) -> Self {
        match s {
            Sensitivity::Public => v1::Sensitivity::Public,
            Sensitivity::Internal => v1::Sensitivity::Internal,
            Sensitivity::Personal => v1::Sensitivity::Personal,
            Sensitivity::Sensitive => v1::Sensitivity::Sensitive,
        }
    }
}

impl From<SharingClass> for v1::SharingClass {
    fn from(s: SharingClass) -> Self {
        match s {
            SharingClass::Open => v1::SharingClass::Open,
            SharingClass::Conditional => v1::SharingClass::Conditional,
            SharingClass::NotShared => v1::SharingClass::NotShared,
        }
    }
}

fn field_type(raw: i32) -> Option<FieldType> {
    Some(match v1::FieldType::try_from(raw).ok()? {
        v1::FieldType::Unspecified => return None,
        v1::FieldType::String => FieldType::String,
        v1::FieldType::Int => FieldType::Int,
        v1::FieldType::Double => FieldType::Double,
        v1::FieldType::Bool => FieldType::Bool,
        v1::FieldType::Bytes => FieldType::Bytes,
        v1::FieldType::Date => FieldType::Date,
        v1::FieldType::Timestamp => FieldType::Timestamp,
    })
}

fn sensitivity(raw: i32) -> Option<Sensitivity> {
    Some(match v1::Sensitivity::try_from(raw).ok()? {
        v1::Sensitivity::Unspecified => return None,
        v1::Sensitivity::Public => Sensitivity::Public,
        v1::Sensitivity::Internal => Sensitivity::Internal,
        v1::Sensitivity::Personal => Sensitivity::Personal,
        v1::Sensitivity::Sensitive => Sensitivity::Sensitive,
    })
}

fn sharing_class(raw: i32) -> Option<SharingClass> {
    Some(match v1::SharingClass::try_from(raw).ok()? {
        v1::SharingClass::Unspecified => return None,
        v1::SharingClass::Open => SharingClass::Open,
        v1::SharingClass::Conditional => SharingClass::Conditional,
        v1::SharingClass::NotShared => SharingClass::NotShared,
    })
}

/// Reads a provider's description of one of its resources.
pub fn resource_spec(
    provider: &DeptId,
    d: &v1::ResourceDescription,
) -> Result<ResourceSpec, Error> {
    let name = ResourceName::new(&d.name)?;
    let id = ResourceId::new(provider.clone(), name);
    let rid = id.to_string();
    let mut fields = Vec::with_capacity(d.fields.len());
    for f in &d.fields {
        let name = FieldName::new(&f.name)?;
        let ty = field_type(f.r#type)
            .ok_or_else(|| bad(&rid, format!("field {name} has no valid type")))?;
        let sensitivity = sensitivity(f.sensitivity)
            .ok_or_else(|| bad(&rid, format!("field {name} has no valid sensitivity")))?;
        fields.push(FieldSpec {
            name,
            ty,
            sensitivity,
            description: f.description.clone(),
        });
    }
    let key_fields = d
        .key_fields
        .iter()
        .map(|k| FieldName::new(k))
        .collect::<Result<Vec<_>, _>>()?;
    let sharing_class = sharing_class(d.sharing_class)
        .ok_or_else(|| bad(&rid, "it has no valid sharing class".into()))?;
    ResourceSpec::new(ResourceSpecParts {
        id,
        title: d.title.clone(),
        description: d.description.clone(),
        fields,
        key_fields,
        sharing_class,
        legal_basis: d.legal_basis.clone(),
        update_cycle: d.update_cycle.clone(),
        max_cache_age_seconds: d.max_cache_age_seconds,
        stale_if_error_seconds: d.stale_if_error_seconds,
    })
}

/// The wire description of a resource.
pub fn resource_description(s: &ResourceSpec) -> v1::ResourceDescription {
    v1::ResourceDescription {
        name: s.id().name().to_string(),
        title: s.title.clone(),
        description: s.description.clone(),
        fields: s
            .fields()
            .iter()
            .map(|f| v1::FieldSpec {
                name: f.name.to_string(),
                r#type: v1::FieldType::from(f.ty) as i32,
                sensitivity: v1::Sensitivity::from(f.sensitivity) as i32,
                description: f.description.clone(),
            })
            .collect(),
        key_fields: s.key_fields().iter().map(|k| k.to_string()).collect(),
        sharing_class: v1::SharingClass::from(s.sharing_class) as i32,
        legal_basis: s.legal_basis.clone(),
        update_cycle: s.update_cycle.clone(),
        max_cache_age_seconds: s.max_cache_age_seconds,
        stale_if_error_seconds: s.stale_if_error_seconds,
    }
}

// ---------------------------------------------------------------------------------------------
// Grants and access requests. The wire form doubles as the stored form; `active` and `overdue`
// are derived on the way out and ignored on the way in.
// ---------------------------------------------------------------------------------------------

/// Why a stored grant or request could not be read back.
fn stored(what: &str, problem: impl std::fmt::Display) -> Error {
    Error::InvalidResource {
        resource: what.to_owned(),
        problem: problem.to_string(),
    }
}

fn ts(t: SystemTime) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp::from(t))
}

fn time_of(what: &str, t: &Option<prost_types::Timestamp>) -> Result<SystemTime, Error> {
    t.as_ref()
        .and_then(timestamp_to_system_time)
        .ok_or_else(|| stored(what, "a timestamp is missing"))
}

fn field_names(v: &[String]) -> Result<Vec<FieldName>, Error> {
    v.iter().map(|f| FieldName::new(f)).collect()
}

fn purposes(v: &[String]) -> Result<Vec<Purpose>, Error> {
    v.iter().map(|p| Purpose::new(p)).collect()
}

/// Field -> mask name, as on the wire.
pub fn masks_to_wire(masks: &[(FieldName, Mask)]) -> std::collections::HashMap<String, String> {
    masks
        .iter()
        .map(|(f, m)| (f.to_string(), m.to_string()))
        .collect()
}

/// Reads field -> mask name pairs; an unknown mask name is refused with the accepted ones, a
/// malformed `keep:N:M` with what to write.
pub fn masks_from_wire(
    masks: &std::collections::HashMap<String, String>,
) -> Result<Vec<(FieldName, Mask)>, Error> {
    let mut out: Vec<(FieldName, Mask)> = masks
        .iter()
        .map(|(f, m)| {
            let field = FieldName::new(f)?;
            let mask =
                Mask::parse(m).map_err(|e| Error::InvalidGrant(format!("field {field}: {e}")))?;
            Ok((field, mask))
        })
        .collect::<Result<_, Error>>()?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

pub fn grant_to_wire(g: &Grant, now: SystemTime) -> v1::Grant {
    let (revoked_at, revoked_by, revocation_reason) = match g.revocation() {
        Some(r) => (ts(r.at), r.by.to_string(), r.reason.clone()),
        None => (None, String::new(), String::new()),
    };
    v1::Grant {
        id: g.id().to_owned(),
        consumer: g.consumer().to_string(),
        resource: g.resource().to_string(),
        fields: g.fields().iter().map(|f| f.to_string()).collect(),
        purposes: g.purposes().iter().map(|p| p.to_string()).collect(),
        masks: masks_to_wire(g.masks()),
        match_fields: g.match_fields().iter().map(|f| f.to_string()).collect(),
        granted_at: ts(g.granted_at()),
        expires_at: ts(g.expires_at()),
        revoked_at,
        revoked_by,
        revocation_reason,
        origin: match g.origin() {
            GrantOrigin::AccessRequest(id) => format!("access-request {id}"),
            GrantOrigin::PolicyFile => "policy-file".to_owned(),
        },
        active: g.is_active(now),
        lookup: g
            .bounds()
            .lookup
            .map(|l| l.as_str().to_owned())
            .unwrap_or_default(),
        max_records_per_query: g.bounds().max_records_per_query.unwrap_or(0),
        max_subjects_per_day: g.bounds().max_subjects_per_day.unwrap_or(0),
        require_case: g.bounds().require_case,
    }
}

/// Reads a grant's bounds as the wire carries them: an empty lookup is the resource's
/// default, a cap of 0 is no cap. A grant stored before the bounds existed reads back with
/// the defaults.
pub fn bounds_from_wire(
    lookup: &str,
    max_records_per_query: u32,
    max_subjects_per_day: u32,
    require_case: bool,
) -> Result<Bounds, Error> {
    let lookup = match lookup.trim() {
        "" => None,
        l => Some(Lookup::parse(l).ok_or_else(|| {
            Error::InvalidGrant(format!(
                "lookup {:?} is not \"key\" or \"search\" (or empty, for the resource's \
                 default: key if it has personal or sensitive fields)",
                l.chars().take(40).collect::<String>()
            ))
        })?),
    };
    let cap = |n: u32| (n > 0).then_some(n);
    Ok(Bounds {
        lookup,
        max_records_per_query: cap(max_records_per_query),
        max_subjects_per_day: cap(max_subjects_per_day),
        require_case,
    })
}

/// The terms of an approval as the wire carries them.
pub fn terms_from_wire(r: &v1::ApproveAccessRequestRequest) -> Result<Terms, Error> {
    Ok(Terms {
        fields: if r.fields.is_empty() {
            None
        } else {
            Some(field_names(&r.fields)?)
        },
        masks: masks_from_wire(&r.masks)?,
        match_fields: field_names(&r.match_fields)?,
        bounds: bounds_from_wire(
            &r.lookup,
            r.max_records_per_query,
            r.max_subjects_per_day,
            r.require_case,
        )?,
    })
}

pub fn grant_from_wire(w: &v1::Grant) -> Result<Grant, Error> {
    let what = format!("grant {}", w.id);
    let revoked = match &w.revoked_at {
        None => None,
        Some(_) => Some(Revocation {
            at: time_of(&what, &w.revoked_at)?,
            by: DeptId::new(&w.revoked_by)?,
            reason: w.revocation_reason.clone(),
        }),
    };
    let origin = match w.origin.strip_prefix("access-request ") {
        Some(id) => GrantOrigin::AccessRequest(id.to_owned()),
        None if w.origin == "policy-file" => GrantOrigin::PolicyFile,
        None => return Err(stored(&what, format!("unknown origin {:?}", w.origin))),
    };
    Grant::new(GrantParts {
        id: w.id.clone(),
        consumer: DeptId::new(&w.consumer)?,
        resource: ResourceId::parse(&w.resource)?,
        fields: field_names(&w.fields)?,
        purposes: purposes(&w.purposes)?,
        masks: masks_from_wire(&w.masks)?,
        match_fields: field_names(&w.match_fields)?,
        granted_at: time_of(&what, &w.granted_at)?,
        expires_at: time_of(&what, &w.expires_at)?,
        revoked,
        origin,
        bounds: bounds_from_wire(
            &w.lookup,
            w.max_records_per_query,
            w.max_subjects_per_day,
            w.require_case,
        )?,
    })
}

pub fn request_to_wire(r: &AccessRequest, now: SystemTime) -> v1::AccessRequest {
    let mut w = v1::AccessRequest {
        id: r.id().to_owned(),
        consumer: r.consumer().to_string(),
        resource: r.resource().to_string(),
        fields: r.fields().iter().map(|f| f.to_string()).collect(),
        purposes: r.purposes().iter().map(|p| p.to_string()).collect(),
        legal_basis: r.legal_basis().to_owned(),
        duration_days: r.duration_days(),
        filed_at: ts(r.filed_at()),
        reply_due: ts(r.reply_due()),
        overdue: r.is_overdue(now),
        ..Default::default()
    };
    match r.state() {
        RequestState::Pending => w.state = v1::AccessRequestState::Pending as i32,
        RequestState::Approved { at, by, grant_id } => {
            w.state = v1::AccessRequestState::Approved as i32;
            w.decided_at = ts(*at);
            w.decided_by = by.to_string();
            w.grant_id = grant_id.clone();
        }
        RequestState::Denied { at, by, reason } => {
            w.state = v1::AccessRequestState::Denied as i32;
            w.decided_at = ts(*at);
            w.decided_by = by.to_string();
            w.denial_reason = reason.clone();
        }
    }
    w
}

pub fn request_from_wire(w: &v1::AccessRequest) -> Result<AccessRequest, Error> {
    let what = format!("access request {}", w.id);
    let state = match v1::AccessRequestState::try_from(w.state) {
        Ok(v1::AccessRequestState::Pending) => RequestState::Pending,
        Ok(v1::AccessRequestState::Approved) => RequestState::Approved {
            at: time_of(&what, &w.decided_at)?,
            by: DeptId::new(&w.decided_by)?,
            grant_id: w.grant_id.clone(),
        },
        Ok(v1::AccessRequestState::Denied) => RequestState::Denied {
            at: time_of(&what, &w.decided_at)?,
            by: DeptId::new(&w.decided_by)?,
            reason: w.denial_reason.clone(),
        },
        _ => return Err(stored(&what, "no valid state")),
    };
    AccessRequest::from_parts(AccessRequestParts {
        id: w.id.clone(),
        consumer: DeptId::new(&w.consumer)?,
        resource: ResourceId::parse(&w.resource)?,
        fields: field_names(&w.fields)?,
        purposes: purposes(&w.purposes)?,
        legal_basis: w.legal_basis.clone(),
        duration_days: w.duration_days,
        filed_at: time_of(&what, &w.filed_at)?,
        reply_due: time_of(&what, &w.reply_due)?,
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_round_trip() {
        let dept = DeptId::new("market-regulation").unwrap();
        let d = v1::ResourceDescription {
            name: "business-licences".into(),
            title: "Business licences".into(),
            fields: vec![v1::FieldSpec {
                name: "credit_code".into(),
                r#type: v1::FieldType::String as i32,
                sensitivity: v1::Sensitivity::Public as i32,
                description: String::new(),
            }],
            key_fields: vec!["credit_code".into()],
            sharing_class: v1::SharingClass::Open as i32,
            max_cache_age_seconds: 300,
            ..Default::default()
        };
        let spec = resource_spec(&dept, &d).unwrap();
        assert_eq!(spec.id().to_string(), "market-regulation/business-licences");
        assert_eq!(resource_description(&spec), d);
    }

    #[test]
    fn grant_bounds_round_trip_and_old_grants_read_with_the_defaults() {
        let now = SystemTime::now();
        let parts = GrantParts {
            id: "G-3".into(),
            consumer: DeptId::new("civil-affairs").unwrap(),
            resource: ResourceId::parse("public-security/household-register").unwrap(),
            fields: vec![FieldName::new("name").unwrap()],
            purposes: vec![Purpose::new("marriage registration").unwrap()],
            masks: vec![],
            match_fields: vec![],
            granted_at: now,
            expires_at: now + std::time::Duration::from_secs(86_400),
            revoked: None,
            origin: GrantOrigin::AccessRequest("AR-1".into()),
            bounds: Bounds {
                lookup: Some(Lookup::Search),
                max_records_per_query: Some(20),
                max_subjects_per_day: Some(100),
                require_case: true,
            },
        };
        let g = Grant::new(parts.clone()).unwrap();
        let w = grant_to_wire(&g, now);
        assert_eq!(
            (
                w.lookup.as_str(),
                w.max_records_per_query,
                w.max_subjects_per_day,
                w.require_case
            ),
            ("search", 20, 100, true)
        );
        assert_eq!(grant_from_wire(&w).unwrap(), g);
        // A grant stored before the fields existed has none of them set.
        let old = v1::Grant {
            lookup: String::new(),
            max_records_per_query: 0,
            max_subjects_per_day: 0,
            require_case: false,
            ..w.clone()
        };
        assert_eq!(*grant_from_wire(&old).unwrap().bounds(), Bounds::default());
        let bad = v1::Grant {
            lookup: "bulk".into(),
            ..w
        };
        let e = grant_from_wire(&bad).unwrap_err().to_string();
        assert!(
            e.contains("lookup \"bulk\" is not \"key\" or \"search\""),
            "{e}"
        );
    }

    #[test]
    fn unspecified_enums_are_refused() {
        let dept = DeptId::new("a").unwrap();
        let d = v1::ResourceDescription {
            name: "r".into(),
            fields: vec![v1::FieldSpec {
                name: "k".into(),
                r#type: 0,
                sensitivity: 1,
                description: String::new(),
            }],
            key_fields: vec!["k".into()],
            sharing_class: 1,
            ..Default::default()
        };
        let e = resource_spec(&dept, &d).unwrap_err().to_string();
        assert!(e.contains("no valid type"), "{e}");
    }
}
