//! Lawful sharing (依法共享): grants, access requests, and the decision taken for each exchange.
//!
//! The rules follow the 2016 interim measures on government information resource sharing and the
//! 2025 regulation on government data sharing:
//!
//! - A resource catalogued as not shared (不予共享) is never served.
//! - An open resource (无条件共享) serves its public and internal fields to any authenticated
//!   department. Its personal and sensitive fields need an active [`Grant`] that lists the field
//!   and names the declared purpose.
//! - A conditional resource (有条件共享) serves only fields that an active grant lists; personal
//!   and sensitive fields also need the declared purpose to be one the grant names.
//! - A grant comes from the provider's approval of an [`AccessRequest`] (or from policy config).
//!   The provider must reply by a deadline counted in working days, and a denial must give a
//!   written reason (说明理由).
//!
//! Nothing here reads the clock: every function that depends on time takes `now`.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::Error;
use crate::calendar::{self, SECONDS_PER_DAY};
use crate::catalogue::{FieldSpec, ResourceSpec, Sensitivity, SharingClass, ValueKind};
use crate::error::ErrorKind;
use crate::ids::{DeptId, FieldName, Purpose, ResourceId, trim_text};
use crate::masking::Mask;

/// Longest grant, in days: three years.
pub const MAX_GRANT_DAYS: u32 = 1095;
/// Longest legal basis of an access request, in characters.
pub const MAX_LEGAL_BASIS_CHARS: usize = 500;
/// Longest reason for a denial or a revocation, in characters.
pub const MAX_REASON_CHARS: usize = 1000;
/// Longest access request or grant id, in bytes.
pub const MAX_RECORD_ID_LEN: usize = 64;
/// Most purposes one access request (or policy-file grant) may name. A grant is for the uses a
/// department actually has; a list of thousands is a way around purpose limitation.
pub const MAX_PURPOSES: usize = 16;

/// The command that files an access request, as quoted in refusals.
const REQUEST_COMMAND: &str = "huitong admin request";

// ---------------------------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------------------------

/// Why the sharing policy refused an exchange. Each message says what is missing and how to get
/// it; none of them contains a key value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyRefusal {
    /// The consumer holds no grant at all for the resource, and the request needs one.
    #[error("{}", no_grant(.consumer, .resource, *.class, .fields, .purpose))]
    NoGrant {
        /// The department that asked.
        consumer: DeptId,
        /// The resource asked for.
        resource: ResourceId,
        /// The resource's sharing class: open or conditional.
        class: SharingClass,
        /// The requested fields that need a grant, with their sensitivity.
        fields: Vec<(FieldName, Sensitivity)>,
        /// The purpose the consumer declared.
        purpose: Purpose,
    },
    /// The consumer has no active grant for the resource, and the latest one has expired.
    #[error(
        "your grant {grant} for {resource} expired on {}; file a new access request ({REQUEST_COMMAND} {resource} ...)",
        calendar::format_date(*.expired_at)
    )]
    GrantExpired {
        /// The grant's id.
        grant: String,
        /// The resource it was for.
        resource: ResourceId,
        /// When it expired.
        expired_at: SystemTime,
    },
    /// The consumer has no active grant for the resource, and the latest one was revoked.
    #[error(
        "your grant {grant} for {resource} was revoked on {} by {}: {}; file a new access request if the reason no longer applies",
        calendar::format_date(.revocation.at), .revocation.by, .revocation.reason
    )]
    GrantRevoked {
        /// The grant's id.
        grant: String,
        /// The resource it was for.
        resource: ResourceId,
        /// When, by whom and why.
        revocation: Revocation,
    },
    /// The closest active grant does not list some of the requested fields.
    #[error(
        "{} outside your grant {grant} (it allows: {}); file an access request for {}",
        fields_are(.fields), join(.allowed, ", "), if .fields.len() == 1 { "it" } else { "them" }
    )]
    FieldsOutsideGrant {
        /// The grant's id.
        grant: String,
        /// The requested fields it does not list.
        fields: Vec<FieldName>,
        /// The fields it lists.
        allowed: Vec<FieldName>,
    },
    /// The closest active grant lists the fields, but some are personal or sensitive and the
    /// grant does not name the declared purpose.
    #[error(
        "{} and your grant {grant} does not name the purpose {:?} (it names: {}); file an access request for this purpose",
        sensitive_fields_are(.fields), .purpose.as_str(), join(.named, ", ")
    )]
    PurposeNotNamed {
        /// The grant's id.
        grant: String,
        /// The requested personal and sensitive fields, with their sensitivity.
        fields: Vec<(FieldName, Sensitivity)>,
        /// The purpose the consumer declared.
        purpose: Purpose,
        /// The purposes the grant names.
        named: Vec<Purpose>,
    },
    /// A filter or key matches on a field the closest grant releases only masked, and the
    /// grant does not allow matching on it: the match would confirm the hidden value.
    #[error(
        "your grant {grant} releases field \"{field}\" only masked ({mask}), so a {kind} on it \
         is refused: matching the full value would confirm what the mask hides; select records \
         by a field the grant releases unmasked, or ask {provider} to allow matching on \
         \"{field}\" (match_fields) when it approves an access request"
    )]
    MatchOnMaskedField {
        /// The grant's id.
        grant: String,
        /// The masked field matched on.
        field: FieldName,
        /// Its mask in the grant.
        mask: Mask,
        /// Whether a filter or the key matched on it.
        kind: MatchKind,
        /// The provider, which decides what may be matched on.
        provider: DeptId,
    },
    /// The grant allows key lookups only, and the query selects records by filters.
    #[error(
        "your grant {grant} allows key lookups only, so a search (a query by filters on {}) is \
         refused: look each record up by its key ({}), or file an access request \
         ({REQUEST_COMMAND} {resource} ...) that {} approves with lookup = \"search\"",
        join(.filters, ", "), join(.key, ", "), .resource.provider()
    )]
    KeyLookupsOnly {
        /// The grant's id.
        grant: String,
        /// The resource.
        resource: ResourceId,
        /// The fields the query filtered on.
        filters: Vec<FieldName>,
        /// The resource's key fields, by which it may look records up.
        key: Vec<FieldName>,
    },
    /// The grant requires a case reference (办件编号) and the request gave none.
    #[error(
        "your grant {grant} requires a case reference (办件编号) with every query and \
         subscription: give the case the data is needed for (case_ref; huitong query --case ...)"
    )]
    CaseRequired {
        /// The grant's id.
        grant: String,
    },
    /// The query would release more records than the grant allows in one answer.
    #[error(
        "your grant {grant} releases at most {cap} records per query, and this query {}; \
         ask for at most {cap} per page (page_size) or narrow the filters, or ask {provider} for \
         a higher max_records_per_query",
        if *.asked { format!("asks for a page of {count}") }
        else { format!("would release {count}, so nothing was released") }
    )]
    TooManyRecords {
        /// The grant's id.
        grant: String,
        /// Its `max_records_per_query`.
        cap: u32,
        /// The page size asked for, or the records the answer held.
        count: u64,
        /// Whether `count` is the page size asked for (refused before anything was fetched).
        asked: bool,
        /// The provider, which sets the cap.
        provider: DeptId,
    },
    /// The answer would take the consumer past the grant's daily number of people.
    #[error(
        "your grant {grant} releases the records of at most {cap} different people per day \
         (UTC), {used} of them today, and this answer would reach {new} more, so nothing was \
         released; try again after 00:00 UTC, or ask {provider} for a higher \
         max_subjects_per_day"
    )]
    SubjectsPerDay {
        /// The grant's id.
        grant: String,
        /// Its `max_subjects_per_day`.
        cap: u32,
        /// Different people already released under it today.
        used: u32,
        /// People in this answer not yet released today.
        new: u32,
        /// The provider, which sets the cap.
        provider: DeptId,
    },
}

impl PolicyRefusal {
    /// What the caller can do about the refusal: most are permission denied; a cap reached is
    /// resource exhausted (later, or a narrower query, succeeds), a missing case reference a
    /// failed precondition (see [`ErrorKind::Precondition`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            PolicyRefusal::TooManyRecords { .. } | PolicyRefusal::SubjectsPerDay { .. } => {
                ErrorKind::Exhausted
            }
            PolicyRefusal::CaseRequired { .. } => ErrorKind::Precondition,
            _ => ErrorKind::PermissionDenied,
        }
    }
}

/// How a query matches records on a field: by an equality filter, or by its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    /// An equality filter.
    Filter,
    /// The record key.
    Key,
}

impl fmt::Display for MatchKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchKind::Filter => "filter",
            MatchKind::Key => "key",
        })
    }
}

fn join<T: fmt::Display>(items: &[T], sep: &str) -> String {
    let items: Vec<String> = items.iter().map(ToString::to_string).collect();
    items.join(sep)
}

fn quoted(fields: &[FieldName]) -> String {
    let items: Vec<String> = fields.iter().map(|f| format!("\"{f}\"")).collect();
    items.join(", ")
}

/// `field "a" is` / `fields "a", "b" are`.
fn fields_are(fields: &[FieldName]) -> String {
    match fields {
        [one] => format!("field \"{one}\" is"),
        _ => format!("fields {} are", quoted(fields)),
    }
}

/// `field "name" is personal` / `fields "name", "address" are personal` /
/// `fields "name", "diagnosis" are personal or sensitive`.
fn sensitive_fields_are(fields: &[(FieldName, Sensitivity)]) -> String {
    let names: Vec<FieldName> = fields.iter().map(|(f, _)| f.clone()).collect();
    let what = match fields {
        [(_, first), rest @ ..] if rest.iter().all(|(_, s)| s == first) => first.as_str(),
        _ => "personal or sensitive",
    };
    format!("{} {what}", fields_are(&names))
}

fn no_grant(
    consumer: &DeptId,
    resource: &ResourceId,
    class: SharingClass,
    fields: &[(FieldName, Sensitivity)],
    purpose: &Purpose,
) -> String {
    let why = if class == SharingClass::Open {
        format!(
            ", and {}, which only a grant releases",
            sensitive_fields_are(fields)
        )
    } else {
        ", which is shared on condition (有条件共享): every field needs a grant".to_owned()
    };
    let names: Vec<&str> = fields.iter().map(|(f, _)| f.as_str()).collect();
    format!(
        "{consumer} has no grant for {resource}{why}; file an access request \
         ({REQUEST_COMMAND} {resource} --fields {} --purpose {:?} --legal-basis ...)",
        names.join(","),
        purpose.as_str()
    )
}

// ---------------------------------------------------------------------------------------------
// Grants
// ---------------------------------------------------------------------------------------------

/// Where a grant came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GrantOrigin {
    /// The provider approved the access request with this id.
    AccessRequest(String),
    /// The exchange's policy configuration.
    PolicyFile,
}

/// The withdrawal of a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// When it was revoked.
    pub at: SystemTime,
    /// Who revoked it: the provider or the consumer.
    pub by: DeptId,
    /// Why, as written by the revoker.
    pub reason: String,
}

/// How a grant lets its consumer select records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lookup {
    /// One record at a time, by its key: the consumer brings the identifier of the person or
    /// company it is dealing with.
    Key,
    /// Also by equality filters, which return lists of records.
    Search,
}

impl Lookup {
    /// The name used in the policy file, on the wire and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Lookup::Key => "key",
            Lookup::Search => "search",
        }
    }

    /// Parses `key` or `search`.
    pub fn parse(s: &str) -> Option<Lookup> {
        match s {
            "key" => Some(Lookup::Key),
            "search" => Some(Lookup::Search),
            _ => None,
        }
    }

    /// The lookup of a grant that does not say: key lookups only if the resource has any
    /// personal or sensitive field. A grant meant for checking one applicant must not become
    /// a way to list everyone who matches a filter; searching a resource about people is
    /// something the provider allows on purpose.
    pub fn default_for(spec: &ResourceSpec) -> Lookup {
        if spec.fields().iter().any(|f| is_personal(f.sensitivity)) {
            Lookup::Key
        } else {
            Lookup::Search
        }
    }
}

impl fmt::Display for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What bounds a grant puts on bulk reads, beyond its fields and purposes. The default bounds
/// nothing except the lookup, which then follows the resource ([`Lookup::default_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bounds {
    /// How records may be selected; `None` for the resource's default.
    pub lookup: Option<Lookup>,
    /// Most records one query may release (one page of a search); at least 1.
    pub max_records_per_query: Option<u32>,
    /// Most different people (subjects) released to the consumer under the grant per UTC day,
    /// queries and deliveries together; at least 1.
    pub max_subjects_per_day: Option<u32>,
    /// Every query and subscription must give a case reference (办件编号).
    pub require_case: bool,
}

impl Bounds {
    fn check(&self, grant: &str) -> Result<(), Error> {
        for (name, cap) in [
            ("max_records_per_query", self.max_records_per_query),
            ("max_subjects_per_day", self.max_subjects_per_day),
        ] {
            if cap == Some(0) {
                return Err(Error::InvalidGrant(format!(
                    "{name} of grant {grant} is 0, which would release nothing; give at least 1, \
                     or leave it out for no cap"
                )));
            }
        }
        Ok(())
    }
}

/// The parts of a [`Grant`] before its consistency checks, e.g. as read back from storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantParts {
    /// The grant's id, e.g. `G-12`.
    pub id: String,
    /// The department that may receive the data.
    pub consumer: DeptId,
    /// The resource it covers.
    pub resource: ResourceId,
    /// The fields it releases.
    pub fields: Vec<FieldName>,
    /// The purposes it names, for personal and sensitive fields.
    pub purposes: Vec<Purpose>,
    /// At most one mask per field, only on listed fields.
    pub masks: Vec<(FieldName, Mask)>,
    /// Listed fields that a filter or key may match on although the grant masks them
    /// (`match_fields`); see [`decide`].
    pub match_fields: Vec<FieldName>,
    /// When it was granted.
    pub granted_at: SystemTime,
    /// When it expires: it is active strictly before this moment.
    pub expires_at: SystemTime,
    /// Set once it is revoked.
    pub revoked: Option<Revocation>,
    /// Where it came from.
    pub origin: GrantOrigin,
    /// How records may be selected and how many may be released.
    pub bounds: Bounds,
}

/// A consumer's permission to receive some fields of one resource, for named purposes, until it
/// expires or is revoked. Built only through its checks ([`Grant::new`],
/// [`AccessRequest::approve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    id: String,
    consumer: DeptId,
    resource: ResourceId,
    fields: Vec<FieldName>,
    purposes: Vec<Purpose>,
    masks: Vec<(FieldName, Mask)>,
    match_fields: Vec<FieldName>,
    granted_at: SystemTime,
    expires_at: SystemTime,
    revoked: Option<Revocation>,
    origin: GrantOrigin,
    bounds: Bounds,
}

/// Checks an access request or grant id: 1 to 64 bytes of ASCII letters, digits, `-`, `_`, `.`.
fn check_record_id(what: &'static str, id: &str) -> Result<(), Error> {
    let bad = |reason| {
        Err(Error::InvalidId {
            what,
            value: id.chars().take(80).collect(),
            reason,
        })
    };
    if id.is_empty() {
        return bad("it is empty");
    }
    if id.len() > MAX_RECORD_ID_LEN {
        return bad("it is longer than 64 bytes");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return bad("use only ASCII letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

fn check_unique_fields(fields: &[FieldName]) -> Result<(), Error> {
    for (i, f) in fields.iter().enumerate() {
        if fields[..i].contains(f) {
            return Err(Error::DuplicateField(f.to_string()));
        }
    }
    Ok(())
}

/// Refuses more than [`MAX_PURPOSES`] purposes, before any is parsed. Checked where purposes
/// come in (filing, the policy file), not when stored records are read back.
pub fn check_purpose_count(count: usize) -> Result<(), Error> {
    if count > MAX_PURPOSES {
        return Err(Error::TooManyPurposes { count });
    }
    Ok(())
}

fn check_purposes(purposes: &[Purpose]) -> Result<(), Error> {
    if purposes.is_empty() {
        return Err(Error::InvalidPurpose(
            "name at least one purpose: say what the data will be used for, e.g. \"marriage registration\"",
        ));
    }
    for (i, p) in purposes.iter().enumerate() {
        if purposes[..i].contains(p) {
            return Err(Error::DuplicatePurpose(p.to_string()));
        }
    }
    Ok(())
}

fn check_reason(reason: &str, missing: &'static str) -> Result<String, Error> {
    let reason = trim_text(reason);
    if reason.is_empty() {
        return Err(Error::InvalidReason(missing));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(Error::InvalidReason(
            "the reason is longer than 1000 characters; state it briefly",
        ));
    }
    if reason.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::InvalidReason(
            "the reason contains control characters; use plain text (line breaks are fine)",
        ));
    }
    Ok(reason.to_owned())
}

fn after_days(t: SystemTime, days: u32) -> SystemTime {
    t + Duration::from_secs(u64::from(days) * SECONDS_PER_DAY)
}

impl Grant {
    /// Checks the parts: a well-formed id, at least one field and purpose and none twice, masks
    /// only on listed fields and at most one per field, an expiry after the grant, and a consumer
    /// other than the provider.
    pub fn new(p: GrantParts) -> Result<Grant, Error> {
        check_record_id("grant id", &p.id)?;
        if &p.consumer == p.resource.provider() {
            return Err(Error::OwnResource {
                dept: p.consumer,
                resource: p.resource,
            });
        }
        if p.fields.is_empty() {
            return Err(Error::InvalidGrant(format!(
                "grant {} lists no fields; a grant releases named fields only",
                p.id
            )));
        }
        check_unique_fields(&p.fields)?;
        check_purposes(&p.purposes)?;
        for (i, (field, _)) in p.masks.iter().enumerate() {
            if !p.fields.contains(field) {
                return Err(Error::InvalidGrant(format!(
                    "a mask is set on field \"{field}\", which grant {} does not list (it lists: {}); \
                     set masks only on granted fields",
                    p.id,
                    join(&p.fields, ", ")
                )));
            }
            if p.masks[..i].iter().any(|(f, _)| f == field) {
                return Err(Error::InvalidGrant(format!(
                    "field \"{field}\" has two masks in grant {}; set one",
                    p.id
                )));
            }
        }
        for (i, field) in p.match_fields.iter().enumerate() {
            if !p.fields.contains(field) {
                return Err(Error::InvalidGrant(format!(
                    "match_fields names field \"{field}\", which grant {} does not list (it lists: {}); \
                     matching is allowed only on granted fields",
                    p.id,
                    join(&p.fields, ", ")
                )));
            }
            if p.match_fields[..i].contains(field) {
                return Err(Error::InvalidGrant(format!(
                    "match_fields names field \"{field}\" twice in grant {}",
                    p.id
                )));
            }
        }
        if p.expires_at <= p.granted_at {
            return Err(Error::InvalidGrant(format!(
                "grant {} expires ({}) before it is granted ({})",
                p.id,
                calendar::format_date(p.expires_at),
                calendar::format_date(p.granted_at)
            )));
        }
        if let Some(r) = &p.revoked {
            check_reason(&r.reason, "a revocation needs a written reason")?;
        }
        p.bounds.check(&p.id)?;
        Ok(Grant {
            id: p.id,
            consumer: p.consumer,
            resource: p.resource,
            fields: p.fields,
            purposes: p.purposes,
            masks: p.masks,
            match_fields: p.match_fields,
            granted_at: p.granted_at,
            expires_at: p.expires_at,
            revoked: p.revoked,
            origin: p.origin,
            bounds: p.bounds,
        })
    }

    /// The parts, e.g. for storage; [`Grant::new`] takes them back.
    pub fn into_parts(self) -> GrantParts {
        GrantParts {
            id: self.id,
            consumer: self.consumer,
            resource: self.resource,
            fields: self.fields,
            purposes: self.purposes,
            masks: self.masks,
            match_fields: self.match_fields,
            granted_at: self.granted_at,
            expires_at: self.expires_at,
            revoked: self.revoked,
            origin: self.origin,
            bounds: self.bounds,
        }
    }

    /// Checks the grant against the resource's current catalogue entry: the same resource, one
    /// that may be shared, every listed field declared, every mask applicable to its field's
    /// type. For grants from a policy file, and for re-checking grants after the catalogue
    /// changed.
    pub fn check_against(&self, spec: &ResourceSpec) -> Result<(), Error> {
        if spec.id() != &self.resource {
            return Err(Error::InvalidGrant(format!(
                "grant {} is for {}, not {}",
                self.id,
                self.resource,
                spec.id()
            )));
        }
        spec.check_shared()?;
        spec.check_requested_fields(self.fields.iter().map(FieldName::as_str))?;
        for (field, mask) in &self.masks {
            if let Some(f) = spec.field(field.as_str())
                && !mask.fits(f.ty)
            {
                return Err(Error::InvalidGrant(format!(
                    "mask {mask} cannot be applied to field \"{field}\", which holds {} values; \
                     use redact",
                    f.ty
                )));
            }
        }
        Ok(())
    }

    /// The grant's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The department that may receive the data.
    pub fn consumer(&self) -> &DeptId {
        &self.consumer
    }

    /// The resource it covers.
    pub fn resource(&self) -> &ResourceId {
        &self.resource
    }

    /// The fields it releases.
    pub fn fields(&self) -> &[FieldName] {
        &self.fields
    }

    /// The purposes it names.
    pub fn purposes(&self) -> &[Purpose] {
        &self.purposes
    }

    /// The masks on its fields.
    pub fn masks(&self) -> &[(FieldName, Mask)] {
        &self.masks
    }

    /// The masked fields a filter or key may nevertheless match on.
    pub fn match_fields(&self) -> &[FieldName] {
        &self.match_fields
    }

    /// Whether a filter or key may match on `field`: always, unless the grant masks it and
    /// does not name it in `match_fields`. An equality match on a masked field would confirm
    /// the value the mask hides.
    pub fn allows_match(&self, field: &FieldName) -> bool {
        self.mask_for(field).is_none() || self.match_fields.contains(field)
    }

    /// When it was granted.
    pub fn granted_at(&self) -> SystemTime {
        self.granted_at
    }

    /// When it expires.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// The revocation, once revoked.
    pub fn revocation(&self) -> Option<&Revocation> {
        self.revoked.as_ref()
    }

    /// Where it came from.
    pub fn origin(&self) -> &GrantOrigin {
        &self.origin
    }

    /// Its bounds on bulk reads, as given (the lookup may be left to the resource's default).
    pub fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    /// How it lets records of `spec`'s resource be selected: as given, or the resource's
    /// default. Resolved when deciding, not when granting: a policy-file grant is loaded before
    /// the catalogue, and a resource that gains a personal field tightens at once.
    pub fn lookup_for(&self, spec: &ResourceSpec) -> Lookup {
        self.bounds
            .lookup
            .unwrap_or_else(|| Lookup::default_for(spec))
    }

    /// Not revoked, and `now` is before the expiry.
    pub fn is_active(&self, now: SystemTime) -> bool {
        self.revoked.is_none() && now < self.expires_at
    }

    /// Its caps, for a [`Decision`] on `spec`'s resource; `None` if it has none.
    fn caps(&self, spec: &ResourceSpec) -> Option<Caps> {
        let b = &self.bounds;
        (b.max_records_per_query.is_some() || b.max_subjects_per_day.is_some()).then(|| Caps {
            provider: spec.id().provider().clone(),
            max_records_per_query: b.max_records_per_query,
            max_subjects_per_day: b.max_subjects_per_day,
        })
    }

    /// Whether the grant lists `field`.
    pub fn allows_field(&self, field: &FieldName) -> bool {
        self.fields.contains(field)
    }

    /// Whether the grant names `purpose` (exactly; purposes are trimmed when parsed).
    pub fn names_purpose(&self, purpose: &Purpose) -> bool {
        self.purposes.contains(purpose)
    }

    /// The mask on `field`, if any.
    pub fn mask_for(&self, field: &FieldName) -> Option<Mask> {
        self.masks
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, mask)| *mask)
    }

    /// Withdraws the grant. The provider of the resource or the consumer itself may revoke it,
    /// with a written reason (trimmed, at most 1000 characters). Revoking twice is a
    /// [`Error::AlreadyRevoked`] conflict; an expired grant may still be revoked.
    pub fn revoke(&mut self, by: &DeptId, now: SystemTime, reason: &str) -> Result<(), Error> {
        if by != self.resource.provider() && by != &self.consumer {
            return Err(Error::NotPartyToGrant {
                grant: self.id.clone(),
                resource: self.resource.clone(),
                consumer: self.consumer.clone(),
                by: by.clone(),
            });
        }
        if let Some(r) = &self.revoked {
            return Err(Error::AlreadyRevoked {
                grant: self.id.clone(),
                revocation: r.clone(),
            });
        }
        let reason = check_reason(
            reason,
            "a revocation needs a written reason: say why, so that the other department knows \
             what changed",
        )?;
        self.revoked = Some(Revocation {
            at: now,
            by: by.clone(),
            reason,
        });
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Access requests
// ---------------------------------------------------------------------------------------------

/// What a provider approves an access request on ([`AccessRequest::approve`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Terms {
    /// Narrows the grant to these of the requested fields; `None` grants them all.
    pub fields: Option<Vec<FieldName>>,
    /// Masks, on granted fields only.
    pub masks: Vec<(FieldName, Mask)>,
    /// Masked granted fields a filter or key may still match on (see [`decide`]).
    pub match_fields: Vec<FieldName>,
    /// How records may be selected, and how many released.
    pub bounds: Bounds,
}

/// What happened to an access request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestState {
    /// Waiting for the provider's reply.
    Pending,
    /// The provider approved it and created a grant.
    Approved {
        /// When.
        at: SystemTime,
        /// The provider department.
        by: DeptId,
        /// The grant created.
        grant_id: String,
    },
    /// The provider refused it, with a written reason.
    Denied {
        /// When.
        at: SystemTime,
        /// The provider department.
        by: DeptId,
        /// Why, as written by the provider.
        reason: String,
    },
}

impl RequestState {
    /// `pending`, `approved` or `denied`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved { .. } => "approved",
            RequestState::Denied { .. } => "denied",
        }
    }
}

/// What a consumer files to ask for access: the raw text of the form, checked by
/// [`AccessRequest::file`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequestForm {
    /// The id the store assigned, e.g. `AR-3`.
    pub id: String,
    /// The department asking; from its verified certificate, never from the request body.
    pub consumer: DeptId,
    /// The fields asked for: at least one, each a field of the resource, none twice.
    pub fields: Vec<String>,
    /// What the data will be used for: at least one purpose, none twice.
    pub purposes: Vec<String>,
    /// The law, regulation or document that requires the data (法律依据).
    pub legal_basis: String,
    /// How long the grant should last, 1..=1095 days.
    pub duration_days: u32,
}

/// The parts of an [`AccessRequest`], e.g. as read back from storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequestParts {
    /// The request's id, e.g. `AR-3`.
    pub id: String,
    /// The department asking.
    pub consumer: DeptId,
    /// The resource asked for.
    pub resource: ResourceId,
    /// The fields asked for.
    pub fields: Vec<FieldName>,
    /// The purposes declared.
    pub purposes: Vec<Purpose>,
    /// The legal basis cited.
    pub legal_basis: String,
    /// How long the grant should last.
    pub duration_days: u32,
    /// When it was filed.
    pub filed_at: SystemTime,
    /// When the provider's reply is due.
    pub reply_due: SystemTime,
    /// Pending, approved or denied.
    pub state: RequestState,
}

/// A consumer's request for access to a resource (共享申请), and the provider's reply.
///
/// A state machine: filed [`Pending`](RequestState::Pending), then either
/// [`approve`](AccessRequest::approve)d, which creates a [`Grant`], or
/// [`deny`](AccessRequest::deny)d with a reason. Only the provider decides, and only once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    id: String,
    consumer: DeptId,
    resource: ResourceId,
    fields: Vec<FieldName>,
    purposes: Vec<Purpose>,
    legal_basis: String,
    duration_days: u32,
    filed_at: SystemTime,
    reply_due: SystemTime,
    state: RequestState,
}

fn check_legal_basis(basis: &str) -> Result<String, Error> {
    let basis = trim_text(basis);
    if basis.is_empty() {
        return Err(Error::InvalidLegalBasis(
            "cite the legal basis (法律依据): the law, regulation or document under which your \
             department needs the data",
        ));
    }
    if basis.chars().count() > MAX_LEGAL_BASIS_CHARS {
        return Err(Error::InvalidLegalBasis(
            "the legal basis is longer than 500 characters; cite it briefly",
        ));
    }
    if basis.chars().any(char::is_control) {
        return Err(Error::InvalidLegalBasis(
            "the legal basis contains control characters; use plain text",
        ));
    }
    Ok(basis.to_owned())
}

fn check_duration(days: u32) -> Result<(), Error> {
    if days == 0 || days > MAX_GRANT_DAYS {
        return Err(Error::InvalidDuration { days });
    }
    Ok(())
}

impl AccessRequest {
    /// Files a request for `spec`'s resource at `now`, with the provider's reply due
    /// `reply_working_days` working days later on `calendar`
    /// ([`WorkCalendar::add_working_days`](calendar::WorkCalendar::add_working_days)).
    ///
    /// Refused: a malformed id; a request for the consumer's own resource (it already holds the
    /// data); a resource that is not shared; fields that are missing, unknown or named twice;
    /// missing, malformed or repeated purposes; a missing or overlong legal basis; a duration
    /// outside 1..=1095 days.
    pub fn file(
        form: AccessRequestForm,
        spec: &ResourceSpec,
        now: SystemTime,
        reply_working_days: u32,
        calendar: &calendar::WorkCalendar,
    ) -> Result<AccessRequest, Error> {
        check_record_id("access request id", &form.id)?;
        if &form.consumer == spec.id().provider() {
            return Err(Error::OwnResource {
                dept: form.consumer,
                resource: spec.id().clone(),
            });
        }
        spec.check_shared()?;
        let fields = spec.check_requested_fields(form.fields.iter().map(String::as_str))?;
        check_purpose_count(form.purposes.len())?;
        let purposes = form
            .purposes
            .iter()
            .map(|p| Purpose::new(p))
            .collect::<Result<Vec<_>, _>>()?;
        check_purposes(&purposes)?;
        let legal_basis = check_legal_basis(&form.legal_basis)?;
        check_duration(form.duration_days)?;
        Ok(AccessRequest {
            id: form.id,
            consumer: form.consumer,
            resource: spec.id().clone(),
            fields,
            purposes,
            legal_basis,
            duration_days: form.duration_days,
            filed_at: now,
            reply_due: calendar.add_working_days(now, reply_working_days),
            state: RequestState::Pending,
        })
    }

    /// Rebuilds a request from its parts, with the checks that do not need the catalogue.
    pub fn from_parts(p: AccessRequestParts) -> Result<AccessRequest, Error> {
        check_record_id("access request id", &p.id)?;
        if &p.consumer == p.resource.provider() {
            return Err(Error::OwnResource {
                dept: p.consumer,
                resource: p.resource,
            });
        }
        if p.fields.is_empty() {
            return Err(Error::NoFieldsRequested);
        }
        check_unique_fields(&p.fields)?;
        check_purposes(&p.purposes)?;
        let legal_basis = check_legal_basis(&p.legal_basis)?;
        check_duration(p.duration_days)?;
        match &p.state {
            RequestState::Pending => {}
            RequestState::Approved { grant_id, .. } => check_record_id("grant id", grant_id)?,
            RequestState::Denied { reason, .. } => {
                check_reason(reason, "a denial needs a written reason")?;
            }
        }
        Ok(AccessRequest {
            id: p.id,
            consumer: p.consumer,
            resource: p.resource,
            fields: p.fields,
            purposes: p.purposes,
            legal_basis,
            duration_days: p.duration_days,
            filed_at: p.filed_at,
            reply_due: p.reply_due,
            state: p.state,
        })
    }

    /// The parts, e.g. for storage; [`AccessRequest::from_parts`] takes them back.
    pub fn into_parts(self) -> AccessRequestParts {
        AccessRequestParts {
            id: self.id,
            consumer: self.consumer,
            resource: self.resource,
            fields: self.fields,
            purposes: self.purposes,
            legal_basis: self.legal_basis,
            duration_days: self.duration_days,
            filed_at: self.filed_at,
            reply_due: self.reply_due,
            state: self.state,
        }
    }

    /// The request's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The department asking.
    pub fn consumer(&self) -> &DeptId {
        &self.consumer
    }

    /// The resource asked for; its provider decides.
    pub fn resource(&self) -> &ResourceId {
        &self.resource
    }

    /// The fields asked for.
    pub fn fields(&self) -> &[FieldName] {
        &self.fields
    }

    /// The purposes declared.
    pub fn purposes(&self) -> &[Purpose] {
        &self.purposes
    }

    /// The legal basis cited.
    pub fn legal_basis(&self) -> &str {
        &self.legal_basis
    }

    /// How long the grant should last, in days.
    pub fn duration_days(&self) -> u32 {
        self.duration_days
    }

    /// When it was filed.
    pub fn filed_at(&self) -> SystemTime {
        self.filed_at
    }

    /// When the provider's reply is due.
    pub fn reply_due(&self) -> SystemTime {
        self.reply_due
    }

    /// Pending, approved or denied.
    pub fn state(&self) -> &RequestState {
        &self.state
    }

    /// Whether the provider has yet to reply.
    pub fn is_pending(&self) -> bool {
        self.state == RequestState::Pending
    }

    /// Pending, and `now` is past the reply deadline.
    pub fn is_overdue(&self, now: SystemTime) -> bool {
        self.is_pending() && now > self.reply_due
    }

    fn check_decider(&self, action: &'static str, by: &DeptId) -> Result<(), Error> {
        if by != self.resource.provider() {
            return Err(Error::NotProvider {
                action,
                request: self.id.clone(),
                resource: self.resource.clone(),
                by: by.clone(),
            });
        }
        if !self.is_pending() {
            return Err(Error::AlreadyDecided {
                request: self.id.clone(),
                state: self.state.clone(),
            });
        }
        Ok(())
    }

    /// Approves the request and returns the grant it creates, which the caller stores.
    ///
    /// Only the provider may approve, and only a pending request, on the [`Terms`] it sets.
    /// The grant names the request's purposes and expires `duration_days` days after `now`.
    pub fn approve(
        &mut self,
        by: &DeptId,
        now: SystemTime,
        grant_id: String,
        terms: Terms,
    ) -> Result<Grant, Error> {
        self.check_decider("approve", by)?;
        let Terms {
            fields,
            masks,
            match_fields,
            bounds,
        } = terms;
        let fields = match fields {
            None => self.fields.clone(),
            Some(narrowed) => {
                if narrowed.is_empty() {
                    return Err(Error::InvalidGrant(format!(
                        "an approval of request {} must grant at least one field; to refuse, \
                         deny the request with a reason",
                        self.id
                    )));
                }
                if let Some(f) = narrowed.iter().find(|f| !self.fields.contains(f)) {
                    return Err(Error::InvalidGrant(format!(
                        "field \"{f}\" was not asked for in request {} (it asks for: {}); an \
                         approval can only narrow a request",
                        self.id,
                        join(&self.fields, ", ")
                    )));
                }
                check_unique_fields(&narrowed)?;
                narrowed
            }
        };
        let grant = Grant::new(GrantParts {
            id: grant_id,
            consumer: self.consumer.clone(),
            resource: self.resource.clone(),
            fields,
            purposes: self.purposes.clone(),
            masks,
            match_fields,
            granted_at: now,
            expires_at: after_days(now, self.duration_days),
            revoked: None,
            origin: GrantOrigin::AccessRequest(self.id.clone()),
            bounds,
        })?;
        self.state = RequestState::Approved {
            at: now,
            by: by.clone(),
            grant_id: grant.id.clone(),
        };
        Ok(grant)
    }

    /// Denies the request. Only the provider may deny, only a pending request, and only with a
    /// written reason (说明理由; trimmed, at most 1000 characters).
    pub fn deny(&mut self, by: &DeptId, now: SystemTime, reason: &str) -> Result<(), Error> {
        self.check_decider("deny", by)?;
        let reason = check_reason(
            reason,
            "a denial needs a written reason (说明理由): say why, so the consumer can address it",
        )?;
        self.state = RequestState::Denied {
            at: now,
            by: by.clone(),
            reason,
        };
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The decision
// ---------------------------------------------------------------------------------------------

/// What the policy allows for one exchange: the grant it rests on, the masks to apply, and the
/// grant's caps on how much may be released.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// The grant that allows the exchange; `None` when no grant was needed (open fields, or the
    /// provider reading its own resource). Written to the exchange log.
    pub grant_id: Option<String>,
    /// The masks to apply to requested fields, in the order the fields were requested.
    pub masks: Vec<(FieldName, Mask)>,
    /// The grant's caps on what is released, if it has any; the caller enforces them (they
    /// depend on what the provider answers) with the methods below.
    pub caps: Option<Caps>,
}

/// A grant's caps on bulk reads, as a [`Decision`] carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps {
    /// The provider of the resource, which sets them (named in refusals).
    pub provider: DeptId,
    /// Most records one query may release.
    pub max_records_per_query: Option<u32>,
    /// Most different people released under the grant per UTC day.
    pub max_subjects_per_day: Option<u32>,
}

impl Decision {
    /// The mask to apply to `field`, if any.
    pub fn mask_for(&self, field: &FieldName) -> Option<Mask> {
        self.masks
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, mask)| *mask)
    }

    fn grant(&self) -> String {
        self.grant_id.clone().unwrap_or_default()
    }

    fn records_cap(&self) -> Option<(u32, &DeptId)> {
        let c = self.caps.as_ref()?;
        Some((c.max_records_per_query?, &c.provider))
    }

    /// The grant's `max_subjects_per_day`, if any: the caller counts the people released under
    /// `grant_id` today and asks [`Decision::over_subjects_per_day`].
    pub fn max_subjects_per_day(&self) -> Option<u32> {
        self.caps.as_ref()?.max_subjects_per_day
    }

    /// The page size to ask the provider for, given the page size the consumer `asked` for (0
    /// for the exchange's default, `default`). Under a cap on records per query, a page asked
    /// for beyond it is refused before anything is fetched, so that the consumer learns the
    /// grant's terms rather than receiving a silently shorter page; the default page is lowered
    /// to the cap.
    pub fn page_size(&self, asked: u32, default: u32) -> Result<u32, Error> {
        match self.records_cap() {
            Some((cap, provider)) if asked > cap => {
                Err(self.too_many(cap, provider, u64::from(asked), true))
            }
            Some((cap, _)) if asked == 0 => Ok(default.min(cap)),
            _ => Ok(if asked == 0 { default } else { asked }),
        }
    }

    /// Refuses an answer of `count` records beyond the cap on records per query: an adapter
    /// may return more than the page size it was asked for, and nothing beyond the cap leaves.
    pub fn check_released(&self, count: usize) -> Result<(), Error> {
        match self.records_cap() {
            Some((cap, provider)) if count as u64 > u64::from(cap) => {
                Err(self.too_many(cap, provider, count as u64, false))
            }
            _ => Ok(()),
        }
    }

    fn too_many(&self, cap: u32, provider: &DeptId, count: u64, asked: bool) -> Error {
        PolicyRefusal::TooManyRecords {
            grant: self.grant(),
            cap,
            count,
            asked,
            provider: provider.clone(),
        }
        .into()
    }

    /// The refusal of an answer that would reach `new` people not yet released today, with
    /// `used` already released under the grant today, if that goes beyond its
    /// `max_subjects_per_day`. An answer that reaches nobody new is never refused, even when a
    /// lowered cap is below the day's count: it takes the consumer no further. The caller keeps
    /// the day's count; the rule and its wording are here.
    pub fn over_subjects_per_day(&self, used: u32, new: u32) -> Option<Error> {
        let c = self.caps.as_ref()?;
        let cap = c.max_subjects_per_day?;
        (new > 0 && u64::from(used) + u64::from(new) > u64::from(cap)).then(|| {
            PolicyRefusal::SubjectsPerDay {
                grant: self.grant(),
                cap,
                used,
                new,
                provider: c.provider.clone(),
            }
            .into()
        })
    }
}

fn is_personal(s: Sensitivity) -> bool {
    matches!(s, Sensitivity::Personal | Sensitivity::Sensitive)
}

/// What a query selects records by, for [`decide`]: the fields its equality filters name and
/// the fields of its key. Subscriptions select nothing ([`Selection::NONE`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Selection<'a> {
    /// Fields filtered on. They count as released: a match reveals the value as surely as
    /// releasing it does. Any filter makes the query a search, which a grant with
    /// [`Lookup::Key`] refuses.
    pub filters: &'a [FieldName],
    /// Key fields. The consumer brings the key (it holds the person's id number already), so
    /// the grant need not list them; but a key on a field the grant masks confirms the hidden
    /// value like a filter does.
    pub key: &'a [FieldName],
}

impl Selection<'_> {
    /// Selects nothing: a subscription, or a test.
    pub const NONE: Selection<'static> = Selection {
        filters: &[],
        key: &[],
    };
}

/// Why a request is made, for [`decide`]: the declared purpose, and whether it gives a case
/// reference (a grant may require one). `&Purpose` converts to a `Why` without a case.
#[derive(Debug, Clone, Copy)]
pub struct Why<'a> {
    /// The purpose declared.
    pub purpose: &'a Purpose,
    /// Whether the request names the case (办件编号) it is for.
    pub has_case: bool,
}

impl<'a> From<&'a Purpose> for Why<'a> {
    fn from(purpose: &'a Purpose) -> Self {
        Why {
            purpose,
            has_case: false,
        }
    }
}

/// Decides whether `consumer` may receive `fields` of `spec`'s resource for the purpose in
/// `why` at `now`, selecting records by `selection`, given the grants the exchange holds
/// (`grants` may include other consumers' and other resources' grants; they are skipped).
///
/// 1. A not-shared resource is refused ([`Error::NotShared`]), whoever asks.
/// 2. The fields are checked against the catalogue: at least one, each declared, none twice.
/// 3. The provider reading its own resource needs no grant, and nothing is masked.
/// 4. Open resource: public and internal fields need no grant; personal and sensitive fields
///    need an active grant that lists them and names the purpose.
///    Conditional resource: every field needs an active grant that lists it; personal and
///    sensitive fields also need the grant to name the purpose.
///    Fields filtered on count as requested: the grant must release them.
/// 5. A filter or key on a field the grant masks is refused unless the grant names the field
///    in its `match_fields` ([`PolicyRefusal::MatchOnMaskedField`]): `address == <a full street
///    address>` would otherwise list who lives there to a consumer allowed only the district.
/// 6. A search (any filter) needs a grant whose lookup is [`Lookup::Search`]
///    ([`PolicyRefusal::KeyLookupsOnly`]; the default for a resource with personal or
///    sensitive fields is [`Lookup::Key`]), and a grant that requires a case reference needs
///    one ([`PolicyRefusal::CaseRequired`]).
/// 7. Grants are not combined: the first active grant that covers the whole request is used,
///    and its masks on the requested fields and its caps are returned (the caller enforces the
///    caps, which depend on what the provider answers). If none does, the refusal describes
///    the active grant that comes closest (reporting, of its gaps, fields before purpose
///    before masked matches before lookup before case); with no active grant, the most
///    recently granted expired or revoked one; with none at all, [`PolicyRefusal::NoGrant`].
///
/// When no grant is needed, no masks or caps are returned, even if the consumer holds a grant
/// with masks, and so nothing is masked that a filter could probe.
pub fn decide<'g, 'w>(
    spec: &ResourceSpec,
    consumer: &DeptId,
    fields: &[FieldName],
    selection: Selection<'_>,
    why: impl Into<Why<'w>>,
    grants: impl IntoIterator<Item = &'g Grant>,
    now: SystemTime,
) -> Result<Decision, Error> {
    let why = why.into();
    let purpose = why.purpose;
    spec.check_shared()?;
    spec.check_requested_fields(fields.iter().map(FieldName::as_str))?;
    for f in selection.filters.iter().chain(selection.key) {
        spec.check_filter(f.as_str(), ValueKind::Null)?;
    }
    if consumer == spec.id().provider() {
        return Ok(Decision::default());
    }
    let class = spec.sharing_class;
    let requested: Vec<&FieldSpec> = fields
        .iter()
        .chain(selection.filters.iter().filter(|f| !fields.contains(f)))
        .filter_map(|f| spec.field(f.as_str()))
        .collect();
    let need_grant: Vec<&FieldSpec> = requested
        .into_iter()
        .filter(|f| class == SharingClass::Conditional || is_personal(f.sensitivity))
        .collect();
    if need_grant.is_empty() {
        return Ok(Decision::default());
    }
    let need_purpose: Vec<(FieldName, Sensitivity)> = need_grant
        .iter()
        .filter(|f| is_personal(f.sensitivity))
        .map(|f| (f.name.clone(), f.sensitivity))
        .collect();
    let searching = !selection.filters.is_empty();

    let mine: Vec<&Grant> = grants
        .into_iter()
        .filter(|g| &g.consumer == consumer && &g.resource == spec.id())
        .collect();
    let mut closest: Option<(usize, PolicyRefusal)> = None;
    for g in mine.iter().filter(|g| g.is_active(now)) {
        let missing: Vec<FieldName> = need_grant
            .iter()
            .filter(|f| !g.allows_field(&f.name))
            .map(|f| f.name.clone())
            .collect();
        let purpose_ok = need_purpose.is_empty() || g.names_purpose(purpose);
        let unmatchable: Vec<(FieldName, MatchKind)> = selection
            .filters
            .iter()
            .map(|f| (f, MatchKind::Filter))
            .chain(selection.key.iter().map(|f| (f, MatchKind::Key)))
            .filter(|(f, _)| !g.allows_match(f))
            .map(|(f, kind)| (f.clone(), kind))
            .collect();
        let lookup_ok = !searching || g.lookup_for(spec) == Lookup::Search;
        let case_ok = why.has_case || !g.bounds.require_case;
        if missing.is_empty() && purpose_ok && unmatchable.is_empty() && lookup_ok && case_ok {
            let masks = fields
                .iter()
                .filter_map(|f| g.mask_for(f).map(|m| (f.clone(), m)))
                .collect();
            return Ok(Decision {
                grant_id: Some(g.id.clone()),
                masks,
                caps: g.caps(spec),
            });
        }
        let gaps = missing.len()
            + usize::from(!purpose_ok)
            + unmatchable.len()
            + usize::from(!lookup_ok)
            + usize::from(!case_ok);
        if closest.as_ref().is_some_and(|(best, _)| *best <= gaps) {
            continue;
        }
        let refusal = if !missing.is_empty() {
            PolicyRefusal::FieldsOutsideGrant {
                grant: g.id.clone(),
                fields: missing,
                allowed: g.fields.clone(),
            }
        } else if !purpose_ok {
            PolicyRefusal::PurposeNotNamed {
                grant: g.id.clone(),
                fields: need_purpose.clone(),
                purpose: purpose.clone(),
                named: g.purposes.clone(),
            }
        } else if let Some((field, kind)) = unmatchable.first() {
            PolicyRefusal::MatchOnMaskedField {
                grant: g.id.clone(),
                mask: g.mask_for(field).unwrap_or(Mask::Redact),
                field: field.clone(),
                kind: *kind,
                provider: spec.id().provider().clone(),
            }
        } else if !lookup_ok {
            PolicyRefusal::KeyLookupsOnly {
                grant: g.id.clone(),
                resource: spec.id().clone(),
                filters: selection.filters.to_vec(),
                key: spec.key_fields().to_vec(),
            }
        } else {
            PolicyRefusal::CaseRequired {
                grant: g.id.clone(),
            }
        };
        closest = Some((gaps, refusal));
    }
    if let Some((_, refusal)) = closest {
        return Err(refusal.into());
    }
    // No active grant: report the latest inactive one, if any.
    let latest = mine
        .iter()
        .copied()
        .reduce(|a, b| if b.granted_at >= a.granted_at { b } else { a });
    let refusal = match latest {
        None => PolicyRefusal::NoGrant {
            consumer: consumer.clone(),
            resource: spec.id().clone(),
            class,
            fields: need_grant
                .iter()
                .map(|f| (f.name.clone(), f.sensitivity))
                .collect(),
            purpose: purpose.clone(),
        },
        Some(g) => match &g.revoked {
            Some(r) => PolicyRefusal::GrantRevoked {
                grant: g.id.clone(),
                resource: g.resource.clone(),
                revocation: r.clone(),
            },
            None => PolicyRefusal::GrantExpired {
                grant: g.id.clone(),
                resource: g.resource.clone(),
                expired_at: g.expires_at,
            },
        },
    };
    Err(refusal.into())
}

/// The fields of `spec`'s resource that some department other than its provider may receive
/// at `now`: for an open resource its public and internal fields, which need no grant, and
/// the fields of every active grant for the resource (`grants` may include other resources'
/// grants; they are skipped). None for a not-shared resource. In catalogue order.
///
/// This bounds what the broker keeps of a change for subscribers: a field outside it cannot be
/// delivered to anyone, so it is not stored. (The provider may read its own resource whole,
/// but it holds the records already.)
pub fn releasable_fields<'g>(
    spec: &ResourceSpec,
    grants: impl IntoIterator<Item = &'g Grant>,
    now: SystemTime,
) -> Vec<FieldName> {
    if spec.check_shared().is_err() {
        return Vec::new();
    }
    let active: Vec<&Grant> = grants
        .into_iter()
        .filter(|g| &g.resource == spec.id() && g.is_active(now))
        .collect();
    spec.fields()
        .iter()
        .filter(|f| {
            (spec.sharing_class == SharingClass::Open && !is_personal(f.sensitivity))
                || active.iter().any(|g| g.allows_field(&f.name))
        })
        .map(|f| f.name.clone())
        .collect()
}

#[cfg(test)]
mod tests;
