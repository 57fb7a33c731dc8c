use super::*;
use crate::calendar::{WorkCalendar, date};
use crate::catalogue::{FieldType, ResourceSpecParts};
use crate::error::ErrorKind;

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

fn dept(s: &str) -> DeptId {
    DeptId::new(s).unwrap()
}

fn field(s: &str) -> FieldName {
    FieldName::new(s).unwrap()
}

fn fields(names: &[&str]) -> Vec<FieldName> {
    names.iter().map(|n| field(n)).collect()
}

fn purpose(s: &str) -> Purpose {
    Purpose::new(s).unwrap()
}

fn spec(id: &str, class: SharingClass, fields: &[(&str, FieldType, Sensitivity)]) -> ResourceSpec {
    ResourceSpec::new(ResourceSpecParts {
        id: ResourceId::parse(id).unwrap(),
        title: String::new(),
        description: String::new(),
        fields: fields
            .iter()
            .map(|(name, ty, sensitivity)| FieldSpec {
                name: FieldName::new(name).unwrap(),
                ty: *ty,
                sensitivity: *sensitivity,
                description: String::new(),
            })
            .collect(),
        key_fields: vec![FieldName::new(fields[0].0).unwrap()],
        sharing_class: class,
        legal_basis: "《居民身份证法》".into(),
        update_cycle: "real-time".into(),
        max_cache_age_seconds: 0,
        stale_if_error_seconds: 0,
    })
    .unwrap()
}

/// A conditional resource (有条件共享).
fn register() -> ResourceSpec {
    use FieldType::*;
    use Sensitivity::*;
    spec(
        "public-security/household-register",
        SharingClass::Conditional,
        &[
            ("id_number", String, Personal),
            ("name", String, Personal),
            ("birth_date", Date, Personal),
            ("address", String, Personal),
            ("household_type", String, Internal),
            ("police_station", String, Public),
        ],
    )
}

/// An open resource (无条件共享) with some personal and sensitive fields.
fn licences() -> ResourceSpec {
    use FieldType::*;
    use Sensitivity::*;
    spec(
        "market-regulation/business-licences",
        SharingClass::Open,
        &[
            ("credit_code", String, Public),
            ("company_name", String, Public),
            ("inspection_notes", String, Internal),
            ("legal_rep_name", String, Personal),
            ("legal_rep_phone", String, Personal),
            ("penalties", String, Sensitive),
        ],
    )
}

fn civil() -> DeptId {
    dept("civil-affairs")
}

fn police() -> DeptId {
    dept("public-security")
}

fn marriage() -> Purpose {
    purpose("marriage registration")
}

/// 2026-06-03 (a Wednesday), 10:00 UTC.
fn t0() -> SystemTime {
    date(2026, 6, 3) + Duration::from_secs(10 * 3600)
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * SECONDS_PER_DAY)
}

fn grant_parts(id: &str, consumer: DeptId, resource: &ResourceSpec, f: &[&str]) -> GrantParts {
    GrantParts {
        id: id.into(),
        consumer,
        resource: resource.id().clone(),
        fields: fields(f),
        purposes: vec![marriage()],
        masks: vec![],
        match_fields: vec![],
        granted_at: t0(),
        expires_at: t0() + days(365),
        revoked: None,
        origin: GrantOrigin::PolicyFile,
        bounds: Bounds::default(),
    }
}

fn grant(id: &str, resource: &ResourceSpec, f: &[&str]) -> Grant {
    Grant::new(grant_parts(id, civil(), resource, f)).unwrap()
}

fn ask(
    resource: &ResourceSpec,
    f: &[&str],
    p: &Purpose,
    grants: &[Grant],
    now: SystemTime,
) -> Result<Decision, Error> {
    decide(
        resource,
        &civil(),
        &fields(f),
        Selection::NONE,
        p,
        grants,
        now,
    )
}

fn refusal(r: Result<Decision, Error>) -> PolicyRefusal {
    match r {
        Err(Error::Policy(refusal)) => refusal,
        other => panic!("expected a policy refusal, got {other:?}"),
    }
}

fn form(f: &[&str]) -> AccessRequestForm {
    AccessRequestForm {
        id: "AR-3".into(),
        consumer: civil(),
        fields: f.iter().map(|s| s.to_string()).collect(),
        purposes: vec!["marriage registration".into()],
        legal_basis: "《婚姻登记条例》第七条".into(),
        duration_days: 365,
    }
}

fn filed(f: &[&str]) -> AccessRequest {
    AccessRequest::file(form(f), &register(), t0(), 10, &WorkCalendar::default()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The decision: sharing classes
// ---------------------------------------------------------------------------------------------

#[test]
fn not_shared_is_refused_even_with_a_grant_and_even_to_the_provider() {
    let mut r = register();
    let g = grant("G-1", &r, &["name"]);
    r.sharing_class = SharingClass::NotShared;
    let e = ask(&r, &["name"], &marriage(), &[g], t0()).unwrap_err();
    assert!(matches!(e, Error::NotShared { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    let e = decide(
        &r,
        &police(),
        &fields(&["name"]),
        Selection::NONE,
        &marriage(),
        [],
        t0(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::NotShared { .. }), "{e}");
}

#[test]
fn open_public_and_internal_fields_need_no_grant() {
    let d = ask(
        &licences(),
        &["credit_code", "company_name", "inspection_notes"],
        &purpose("anything at all"),
        &[],
        t0(),
    )
    .unwrap();
    assert_eq!(d, Decision::default());
}

#[test]
fn open_personal_field_without_a_grant_is_refused_with_the_way_to_ask() {
    let e = ask(
        &licences(),
        &["company_name", "legal_rep_name"],
        &purpose("tax audit"),
        &[],
        t0(),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert_eq!(
        e.to_string(),
        "civil-affairs has no grant for market-regulation/business-licences, and field \
         \"legal_rep_name\" is personal, which only a grant releases; file an access request \
         (huitong admin request market-regulation/business-licences --fields legal_rep_name \
         --purpose \"tax audit\" --legal-basis ...)"
    );
}

#[test]
fn open_personal_and_sensitive_fields_are_named_together() {
    let e = ask(
        &licences(),
        &["legal_rep_name", "penalties"],
        &purpose("tax audit"),
        &[],
        t0(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("fields \"legal_rep_name\", \"penalties\" are personal or sensitive"),
        "{e}"
    );
    assert!(e.contains("--fields legal_rep_name,penalties"), "{e}");
}

#[test]
fn open_personal_field_with_a_grant_naming_the_purpose_is_allowed() {
    let r = licences();
    let mut p = grant_parts("G-7", civil(), &r, &["legal_rep_name", "legal_rep_phone"]);
    p.masks = vec![(field("legal_rep_phone"), Mask::Phone)];
    let g = Grant::new(p).unwrap();
    let d = ask(
        &r,
        &["company_name", "legal_rep_phone"],
        &marriage(),
        &[g],
        t0(),
    )
    .unwrap();
    assert_eq!(d.grant_id.as_deref(), Some("G-7"));
    assert_eq!(d.masks, vec![(field("legal_rep_phone"), Mask::Phone)]);
    assert_eq!(d.mask_for(&field("legal_rep_phone")), Some(Mask::Phone));
    assert_eq!(d.mask_for(&field("company_name")), None);
}

#[test]
fn open_personal_field_with_a_grant_for_another_purpose_is_refused() {
    let r = licences();
    let g = grant("G-7", &r, &["legal_rep_name"]);
    let e = ask(&r, &["legal_rep_name"], &purpose("tax audit"), &[g], t0()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "field \"legal_rep_name\" is personal and your grant G-7 does not name the purpose \
         \"tax audit\" (it names: marriage registration); file an access request for this purpose"
    );
}

#[test]
fn open_public_fields_are_not_masked_by_a_grant_that_is_not_needed() {
    let r = licences();
    let mut p = grant_parts("G-7", civil(), &r, &["company_name", "legal_rep_name"]);
    p.masks = vec![(field("company_name"), Mask::Redact)];
    let g = Grant::new(p).unwrap();
    let d = ask(&r, &["company_name"], &marriage(), &[g], t0()).unwrap();
    assert_eq!(d, Decision::default());
}

#[test]
fn conditional_every_field_needs_a_grant() {
    let e = ask(&register(), &["police_station"], &marriage(), &[], t0()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "civil-affairs has no grant for public-security/household-register, which is shared on \
         condition (有条件共享): every field needs a grant; file an access request \
         (huitong admin request public-security/household-register --fields police_station \
         --purpose \"marriage registration\" --legal-basis ...)"
    );
    assert!(matches!(refusal(Err(e)), PolicyRefusal::NoGrant { .. }));
}

#[test]
fn conditional_public_and_internal_fields_accept_any_purpose() {
    let r = register();
    let g = grant("G-1", &r, &["household_type", "police_station"]);
    let d = ask(
        &r,
        &["household_type", "police_station"],
        &purpose("statistics"),
        &[g],
        t0(),
    )
    .unwrap();
    assert_eq!(d.grant_id.as_deref(), Some("G-1"));
}

#[test]
fn conditional_personal_fields_need_the_purpose() {
    let r = register();
    let g = grant("G-12", &r, &["name", "birth_date"]);
    assert!(ask(&r, &["name"], &marriage(), std::slice::from_ref(&g), t0()).is_ok());
    let e = ask(
        &r,
        &["name", "birth_date"],
        &purpose("tax audit"),
        &[g],
        t0(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "fields \"name\", \"birth_date\" are personal and your grant G-12 does not name the \
         purpose \"tax audit\" (it names: marriage registration); file an access request for \
         this purpose"
    );
}

#[test]
fn purposes_match_exactly_after_trimming_and_case_sensitively() {
    let r = register();
    let g = grant("G-12", &r, &["name"]);
    let padded = purpose("  marriage registration\t");
    assert!(ask(&r, &["name"], &padded, std::slice::from_ref(&g), t0()).is_ok());
    let shouting = purpose("Marriage registration");
    assert!(matches!(
        refusal(ask(
            &r,
            &["name"],
            &shouting,
            std::slice::from_ref(&g),
            t0()
        )),
        PolicyRefusal::PurposeNotNamed { .. }
    ));
    let longer = purpose("marriage registration review");
    assert!(ask(&r, &["name"], &longer, &[g], t0()).is_err());
}

#[test]
fn a_grant_may_name_several_purposes() {
    let r = register();
    let mut p = grant_parts("G-12", civil(), &r, &["name"]);
    p.purposes = vec![marriage(), purpose("婚姻登记")];
    let g = Grant::new(p).unwrap();
    assert!(
        ask(
            &r,
            &["name"],
            &purpose("婚姻登记"),
            std::slice::from_ref(&g),
            t0()
        )
        .is_ok()
    );
    let e = ask(&r, &["name"], &purpose("tax audit"), &[g], t0())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("(it names: marriage registration, 婚姻登记)"),
        "{e}"
    );
}

#[test]
fn fields_outside_the_grant_are_named_with_what_it_allows() {
    let r = register();
    let g = grant("G-12", &r, &["name", "birth_date"]);
    let e = ask(
        &r,
        &["name", "address"],
        &marriage(),
        std::slice::from_ref(&g),
        t0(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "field \"address\" is outside your grant G-12 (it allows: name, birth_date); file an \
         access request for it"
    );
    let e = ask(&r, &["address", "police_station"], &marriage(), &[g], t0()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "fields \"address\", \"police_station\" are outside your grant G-12 (it allows: name, \
         birth_date); file an access request for them"
    );
}

// ---------------------------------------------------------------------------------------------
// The decision: which grant
// ---------------------------------------------------------------------------------------------

#[test]
fn a_grant_is_active_strictly_before_its_expiry() {
    let r = register();
    let g = grant("G-12", &r, &["name"]);
    let end = g.expires_at();
    assert!(g.is_active(end - Duration::from_nanos(1)));
    assert!(!g.is_active(end));
    assert!(
        ask(
            &r,
            &["name"],
            &marriage(),
            std::slice::from_ref(&g),
            end - Duration::from_nanos(1)
        )
        .is_ok()
    );
    assert!(ask(&r, &["name"], &marriage(), &[g], end).is_err());
}

#[test]
fn an_expired_grant_says_when_and_what_to_do() {
    let r = register();
    let mut p = grant_parts("G-12", civil(), &r, &["name"]);
    p.expires_at = date(2026, 10, 1);
    let g = Grant::new(p).unwrap();
    let e = ask(&r, &["name"], &marriage(), &[g], date(2026, 10, 2)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "your grant G-12 for public-security/household-register expired on 2026-10-01; file a \
         new access request (huitong admin request public-security/household-register ...)"
    );
}

#[test]
fn a_revoked_grant_says_when_by_whom_and_why() {
    let r = register();
    let mut g = grant("G-12", &r, &["name"]);
    g.revoke(
        &police(),
        date(2026, 10, 1) + Duration::from_secs(3600),
        "  audit found queries outside the stated purpose ",
    )
    .unwrap();
    let e = ask(&r, &["name"], &marriage(), &[g], date(2026, 10, 2)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "your grant G-12 for public-security/household-register was revoked on 2026-10-01 by \
         public-security: audit found queries outside the stated purpose; file a new access \
         request if the reason no longer applies"
    );
}

#[test]
fn the_latest_inactive_grant_is_reported() {
    let r = register();
    let mut old = grant_parts("G-1", civil(), &r, &["name"]);
    old.granted_at = t0() - days(800);
    old.expires_at = t0() - days(400);
    let old = Grant::new(old).unwrap();
    let mut newer = grant("G-2", &r, &["name"]);
    newer.revoke(&civil(), t0(), "no longer needed").unwrap();
    let later = t0() + days(1);
    for grants in [[old.clone(), newer.clone()], [newer, old]] {
        match refusal(ask(&r, &["name"], &marriage(), &grants, later)) {
            PolicyRefusal::GrantRevoked { grant, .. } => assert_eq!(grant, "G-2"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn an_active_grant_is_reported_before_an_inactive_one() {
    let r = register();
    let mut expired = grant_parts("G-1", civil(), &r, &["name", "address"]);
    expired.expires_at = t0() + days(1);
    let expired = Grant::new(expired).unwrap();
    let narrow = grant("G-2", &r, &["name"]);
    let e = refusal(ask(
        &r,
        &["name", "address"],
        &marriage(),
        &[expired, narrow],
        t0() + days(2),
    ));
    assert!(
        matches!(&e, PolicyRefusal::FieldsOutsideGrant { grant, .. } if grant == "G-2"),
        "{e}"
    );
}

#[test]
fn grants_are_not_combined() {
    let r = register();
    let names = grant("G-1", &r, &["name"]);
    let addresses = grant("G-2", &r, &["address"]);
    let grants = [names, addresses];
    assert_eq!(
        ask(&r, &["address"], &marriage(), &grants, t0())
            .unwrap()
            .grant_id
            .as_deref(),
        Some("G-2")
    );
    assert!(matches!(
        refusal(ask(&r, &["name", "address"], &marriage(), &grants, t0())),
        PolicyRefusal::FieldsOutsideGrant { .. }
    ));
}

#[test]
fn the_first_covering_grant_is_used() {
    let r = register();
    let mut a = grant_parts("G-1", civil(), &r, &["name", "address"]);
    a.masks = vec![(field("address"), Mask::Address)];
    let a = Grant::new(a).unwrap();
    let b = grant("G-2", &r, &["name", "address"]);
    let d = ask(&r, &["address"], &marriage(), &[a.clone(), b.clone()], t0()).unwrap();
    assert_eq!(d.grant_id.as_deref(), Some("G-1"));
    assert_eq!(d.masks, vec![(field("address"), Mask::Address)]);
    let d = ask(&r, &["address"], &marriage(), &[b, a], t0()).unwrap();
    assert_eq!(d.grant_id.as_deref(), Some("G-2"));
    assert!(d.masks.is_empty());
}

#[test]
fn the_closest_grant_explains_the_refusal() {
    let r = register();
    let far = grant("G-1", &r, &["police_station"]);
    let near = grant("G-2", &r, &["name", "birth_date"]);
    let e = refusal(ask(
        &r,
        &["name", "birth_date", "address"],
        &marriage(),
        &[far, near],
        t0(),
    ));
    match e {
        PolicyRefusal::FieldsOutsideGrant { grant, fields, .. } => {
            assert_eq!(grant, "G-2");
            assert_eq!(fields, vec![field("address")]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn on_a_tie_the_first_grant_explains_the_refusal() {
    let r = register();
    let wrong_purpose = {
        let mut p = grant_parts("G-1", civil(), &r, &["name"]);
        p.purposes = vec![purpose("pension review")];
        Grant::new(p).unwrap()
    };
    let wrong_field = grant("G-2", &r, &["birth_date"]);
    let e = refusal(ask(
        &r,
        &["name"],
        &marriage(),
        &[wrong_purpose, wrong_field],
        t0(),
    ));
    assert!(
        matches!(&e, PolicyRefusal::PurposeNotNamed { grant, .. } if grant == "G-1"),
        "{e}"
    );
}

#[test]
fn other_consumers_and_resources_grants_are_ignored() {
    let r = register();
    let theirs = Grant::new(grant_parts("G-1", dept("tax"), &r, &["name"])).unwrap();
    let elsewhere = grant("G-2", &licences(), &["legal_rep_name"]);
    assert!(matches!(
        refusal(ask(&r, &["name"], &marriage(), &[theirs, elsewhere], t0())),
        PolicyRefusal::NoGrant { .. }
    ));
}

#[test]
fn masks_follow_the_requested_fields_in_request_order() {
    let r = register();
    let mut p = grant_parts("G-1", civil(), &r, &["id_number", "name", "address"]);
    p.masks = vec![
        (field("address"), Mask::Address),
        (field("id_number"), Mask::IdNumber),
        (field("name"), Mask::Name),
    ];
    let g = Grant::new(p).unwrap();
    let d = ask(&r, &["name", "id_number"], &marriage(), &[g], t0()).unwrap();
    assert_eq!(
        d.masks,
        vec![
            (field("name"), Mask::Name),
            (field("id_number"), Mask::IdNumber)
        ]
    );
}

#[test]
fn the_provider_reads_its_own_resource_without_a_grant() {
    let d = decide(
        &register(),
        &police(),
        &fields(&["id_number", "address"]),
        Selection::NONE,
        &purpose("data quality check"),
        [],
        t0(),
    )
    .unwrap();
    assert_eq!(d, Decision::default());
}

#[test]
fn requested_fields_are_checked_against_the_catalogue() {
    let r = register();
    let g = grant("G-1", &r, &["name"]);
    let e = ask(&r, &["salary"], &marriage(), std::slice::from_ref(&g), t0()).unwrap_err();
    assert!(matches!(e, Error::UnknownField { .. }), "{e}");
    let e = ask(
        &r,
        &["name", "name"],
        &marriage(),
        std::slice::from_ref(&g),
        t0(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::DuplicateField(_)), "{e}");
    let e = ask(&r, &[], &marriage(), &[g], t0()).unwrap_err();
    assert_eq!(e, Error::NoFieldsRequested);
}

// ---------------------------------------------------------------------------------------------
// Grants
// ---------------------------------------------------------------------------------------------

#[test]
fn grant_accessors_and_helpers() {
    let r = register();
    let mut p = grant_parts("G-1", civil(), &r, &["name", "address"]);
    p.masks = vec![(field("address"), Mask::Address)];
    let g = Grant::new(p.clone()).unwrap();
    assert_eq!(g.id(), "G-1");
    assert_eq!(g.consumer(), &civil());
    assert_eq!(g.resource(), r.id());
    assert_eq!(g.fields(), &fields(&["name", "address"])[..]);
    assert_eq!(g.purposes(), &[marriage()]);
    assert_eq!(g.granted_at(), t0());
    assert_eq!(g.expires_at(), t0() + days(365));
    assert_eq!(g.origin(), &GrantOrigin::PolicyFile);
    assert!(g.revocation().is_none());
    assert!(g.allows_field(&field("name")));
    assert!(!g.allows_field(&field("birth_date")));
    assert!(g.names_purpose(&marriage()));
    assert!(!g.names_purpose(&purpose("tax audit")));
    assert_eq!(g.mask_for(&field("address")), Some(Mask::Address));
    assert_eq!(g.mask_for(&field("name")), None);
    assert_eq!(g.into_parts(), p);
}

#[test]
fn grant_parts_are_checked() {
    let r = register();
    let ok = grant_parts("G-1", civil(), &r, &["name", "address"]);
    assert!(Grant::new(ok.clone()).is_ok());

    let mut p = ok.clone();
    p.masks = vec![(field("birth_date"), Mask::Redact)];
    let e = Grant::new(p).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    assert!(
        e.to_string()
            .contains("a mask is set on field \"birth_date\", which grant G-1 does not list"),
        "{e}"
    );

    let mut p = ok.clone();
    p.masks = vec![(field("name"), Mask::Name), (field("name"), Mask::Redact)];
    assert!(matches!(Grant::new(p), Err(Error::InvalidGrant(_))));

    let mut p = ok.clone();
    p.fields.clear();
    assert!(matches!(Grant::new(p), Err(Error::InvalidGrant(_))));

    let mut p = ok.clone();
    p.fields.push(field("name"));
    assert!(matches!(Grant::new(p), Err(Error::DuplicateField(_))));

    let mut p = ok.clone();
    p.purposes.clear();
    assert!(matches!(Grant::new(p), Err(Error::InvalidPurpose(_))));

    let mut p = ok.clone();
    p.purposes.push(marriage());
    assert!(matches!(Grant::new(p), Err(Error::DuplicatePurpose(_))));

    let mut p = ok.clone();
    p.expires_at = p.granted_at;
    assert!(matches!(Grant::new(p), Err(Error::InvalidGrant(_))));

    let mut p = ok.clone();
    p.consumer = police();
    assert!(matches!(Grant::new(p), Err(Error::OwnResource { .. })));

    for bad in ["", "G 1", "G/1", "授权1", &"G".repeat(65)] {
        let mut p = ok.clone();
        p.id = bad.to_string();
        assert!(
            matches!(Grant::new(p), Err(Error::InvalidId { .. })),
            "{bad:?} was accepted"
        );
    }
}

#[test]
fn grants_are_checked_against_the_catalogue() {
    let r = register();
    let g = grant("G-1", &r, &["name", "birth_date"]);
    assert!(g.check_against(&r).is_ok());
    assert!(matches!(
        g.check_against(&licences()),
        Err(Error::InvalidGrant(_))
    ));

    let mut p = grant_parts("G-1", civil(), &r, &["birth_date"]);
    p.masks = vec![(field("birth_date"), Mask::Name)];
    let e = Grant::new(p).unwrap().check_against(&r).unwrap_err();
    assert!(
        e.to_string().contains("holds date values; use redact"),
        "{e}"
    );

    let mut p = grant_parts("G-1", civil(), &r, &["birth_date"]);
    p.masks = vec![(field("birth_date"), Mask::Redact)];
    assert!(Grant::new(p).unwrap().check_against(&r).is_ok());

    let ghost = grant("G-1", &r, &["nickname"]);
    assert!(matches!(
        ghost.check_against(&r),
        Err(Error::UnknownField { .. })
    ));

    let mut hidden = r.clone();
    hidden.sharing_class = SharingClass::NotShared;
    assert!(matches!(
        g.check_against(&hidden),
        Err(Error::NotShared { .. })
    ));
}

#[test]
fn provider_or_consumer_may_revoke_with_a_reason() {
    let r = register();
    for by in [police(), civil()] {
        let mut g = grant("G-1", &r, &["name"]);
        g.revoke(&by, t0(), "purpose fulfilled").unwrap();
        let rev = g.revocation().unwrap();
        assert_eq!(rev.by, by);
        assert_eq!(rev.at, t0());
        assert_eq!(rev.reason, "purpose fulfilled");
        assert!(!g.is_active(t0()));
    }
}

#[test]
fn a_third_department_cannot_revoke() {
    let mut g = grant("G-1", &register(), &["name"]);
    let e = g.revoke(&dept("tax"), t0(), "why not").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert_eq!(
        e.to_string(),
        "only public-security (the provider of public-security/household-register) or \
         civil-affairs (the holder) can revoke grant G-1; you are tax"
    );
    assert!(g.revocation().is_none());
}

#[test]
fn revoking_needs_a_reason_and_happens_once() {
    let mut g = grant("G-1", &register(), &["name"]);
    let e = g.revoke(&police(), t0(), "   ").unwrap_err();
    assert!(matches!(e, Error::InvalidReason(_)), "{e}");
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    assert!(g.revocation().is_none());

    g.revoke(&police(), date(2026, 10, 1), "data breach at the consumer")
        .unwrap();
    let e = g.revoke(&civil(), date(2026, 10, 2), "again").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert_eq!(
        e.to_string(),
        "grant G-1 was already revoked on 2026-10-01 by public-security: data breach at the \
         consumer"
    );
    assert_eq!(g.revocation().unwrap().by, police());
}

#[test]
fn an_expired_grant_can_still_be_revoked() {
    let mut g = grant("G-1", &register(), &["name"]);
    let later = g.expires_at() + days(10);
    assert!(g.revoke(&police(), later, "tidying up").is_ok());
}

// ---------------------------------------------------------------------------------------------
// Access requests: filing
// ---------------------------------------------------------------------------------------------

#[test]
fn filing_checks_and_sets_the_reply_deadline() {
    let mut f = form(&["name", "birth_date"]);
    f.purposes = vec!["  marriage registration ".into(), "婚姻登记".into()];
    f.legal_basis = "  《婚姻登记条例》第七条 ".into();
    let req = AccessRequest::file(f, &register(), t0(), 10, &WorkCalendar::default()).unwrap();
    assert_eq!(req.id(), "AR-3");
    assert_eq!(req.consumer(), &civil());
    assert_eq!(req.resource(), register().id());
    assert_eq!(req.fields(), &fields(&["name", "birth_date"])[..]);
    assert_eq!(req.purposes(), &[marriage(), purpose("婚姻登记")]);
    assert_eq!(req.legal_basis(), "《婚姻登记条例》第七条");
    assert_eq!(req.duration_days(), 365);
    assert_eq!(req.filed_at(), t0());
    // Wednesday 2026-06-03 10:00 + 10 working days = Wednesday 2026-06-17 10:00.
    assert_eq!(
        req.reply_due(),
        date(2026, 6, 17) + Duration::from_secs(10 * 3600)
    );
    assert_eq!(req.state(), &RequestState::Pending);
    assert!(req.is_pending());
}

#[test]
fn filing_for_ones_own_resource_is_refused() {
    let mut f = form(&["name"]);
    f.consumer = police();
    let e = AccessRequest::file(f, &register(), t0(), 10, &WorkCalendar::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    assert_eq!(
        e.to_string(),
        "public-security provides public-security/household-register itself and already holds \
         its data; no access request or grant is needed"
    );
}

#[test]
fn filing_for_a_not_shared_resource_is_refused_with_the_basis() {
    let mut r = register();
    r.sharing_class = SharingClass::NotShared;
    let e =
        AccessRequest::file(form(&["name"]), &r, t0(), 10, &WorkCalendar::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert!(e.to_string().contains("《居民身份证法》"), "{e}");
}

#[test]
fn filing_checks_fields() {
    let r = register();
    let e =
        AccessRequest::file(form(&["salary"]), &r, t0(), 10, &WorkCalendar::default()).unwrap_err();
    assert!(matches!(e, Error::UnknownField { .. }), "{e}");
    let e = AccessRequest::file(
        form(&["name", "name"]),
        &r,
        t0(),
        10,
        &WorkCalendar::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::DuplicateField(_)), "{e}");
    let e = AccessRequest::file(form(&[]), &r, t0(), 10, &WorkCalendar::default()).unwrap_err();
    assert_eq!(e, Error::NoFieldsRequested);
}

#[test]
fn filing_checks_purposes() {
    let r = register();
    let with = |purposes: &[&str]| {
        let mut f = form(&["name"]);
        f.purposes = purposes.iter().map(|s| s.to_string()).collect();
        AccessRequest::file(f, &r, t0(), 10, &WorkCalendar::default())
    };
    let e = with(&[]).unwrap_err();
    assert!(matches!(e, Error::InvalidPurpose(_)), "{e}");
    assert!(e.to_string().contains("at least one purpose"), "{e}");
    assert!(matches!(with(&["  "]), Err(Error::InvalidPurpose(_))));
    assert!(matches!(with(&["a\u{7}b"]), Err(Error::InvalidPurpose(_))));
    let e = with(&["tax audit", " tax audit"]).unwrap_err();
    assert_eq!(e, Error::DuplicatePurpose("tax audit".into()));
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
}

#[test]
fn filing_checks_the_legal_basis() {
    let r = register();
    let with = |basis: &str| {
        let mut f = form(&["name"]);
        f.legal_basis = basis.into();
        AccessRequest::file(f, &r, t0(), 10, &WorkCalendar::default())
    };
    let e = with("   ").unwrap_err();
    assert!(matches!(e, Error::InvalidLegalBasis(_)), "{e}");
    assert!(e.to_string().contains("法律依据"), "{e}");
    assert!(with(&"法".repeat(500)).is_ok());
    assert!(matches!(
        with(&"法".repeat(501)),
        Err(Error::InvalidLegalBasis(_))
    ));
    assert!(matches!(
        with("第七条\n第八条"),
        Err(Error::InvalidLegalBasis(_))
    ));
}

#[test]
fn filing_checks_the_duration() {
    let r = register();
    let with = |d: u32| {
        let mut f = form(&["name"]);
        f.duration_days = d;
        AccessRequest::file(f, &r, t0(), 10, &WorkCalendar::default())
    };
    assert!(with(1).is_ok());
    assert!(with(1095).is_ok());
    let e = with(0).unwrap_err();
    assert_eq!(e, Error::InvalidDuration { days: 0 });
    assert_eq!(
        e.to_string(),
        "a grant lasts 1 to 1095 days (three years); 0 days were asked for"
    );
    assert!(matches!(with(1096), Err(Error::InvalidDuration { .. })));
}

#[test]
fn filing_checks_the_id() {
    let mut f = form(&["name"]);
    f.id = "AR 3".into();
    let e = AccessRequest::file(f, &register(), t0(), 10, &WorkCalendar::default()).unwrap_err();
    assert!(matches!(e, Error::InvalidId { .. }), "{e}");
}

#[test]
fn a_request_filed_on_saturday_is_due_counting_from_monday() {
    let saturday = date(2026, 6, 6) + Duration::from_secs(9 * 3600);
    let req = AccessRequest::file(
        form(&["name"]),
        &register(),
        saturday,
        10,
        &WorkCalendar::default(),
    )
    .unwrap();
    assert_eq!(
        req.reply_due(),
        date(2026, 6, 22) + Duration::from_secs(9 * 3600)
    );
}

#[test]
fn overdue_means_pending_past_the_deadline() {
    let mut req = filed(&["name"]);
    let due = req.reply_due();
    assert!(!req.is_overdue(t0()));
    assert!(!req.is_overdue(due));
    assert!(req.is_overdue(due + Duration::from_secs(1)));
    req.deny(&police(), due + days(1), "no legal basis for birth dates")
        .unwrap();
    assert!(!req.is_overdue(due + days(2)));
}

// ---------------------------------------------------------------------------------------------
// Access requests: deciding
// ---------------------------------------------------------------------------------------------

#[test]
fn the_provider_approves_and_a_grant_is_created() {
    let mut req = filed(&["name", "address"]);
    let now = t0() + days(3);
    let g = req
        .approve(
            &police(),
            now,
            "G-12".into(),
            Terms {
                fields: None,
                masks: vec![(field("address"), Mask::Address)],
                match_fields: vec![],
                ..Terms::default()
            },
        )
        .unwrap();
    assert_eq!(g.id(), "G-12");
    assert_eq!(g.consumer(), &civil());
    assert_eq!(g.resource(), register().id());
    assert_eq!(g.fields(), &fields(&["name", "address"])[..]);
    assert_eq!(g.purposes(), &[marriage()]);
    assert_eq!(g.masks(), &[(field("address"), Mask::Address)]);
    assert_eq!(g.granted_at(), now);
    assert_eq!(g.expires_at(), now + days(365));
    assert_eq!(g.origin(), &GrantOrigin::AccessRequest("AR-3".into()));
    assert_eq!(
        req.state(),
        &RequestState::Approved {
            at: now,
            by: police(),
            grant_id: "G-12".into()
        }
    );
    assert_eq!(req.state().as_str(), "approved");
}

#[test]
fn only_the_provider_decides() {
    let mut req = filed(&["name"]);
    let e = req
        .approve(
            &civil(),
            t0(),
            "G-1".into(),
            Terms {
                fields: None,
                masks: vec![],
                match_fields: vec![],
                ..Terms::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert_eq!(
        e.to_string(),
        "only public-security, the provider of public-security/household-register, can approve \
         access request AR-3; you are civil-affairs"
    );
    let e = req.deny(&dept("tax"), t0(), "no").unwrap_err();
    assert!(
        e.to_string()
            .contains("can deny access request AR-3; you are tax"),
        "{e}"
    );
    assert!(req.is_pending());
}

#[test]
fn a_decided_request_cannot_be_decided_again() {
    let mut req = filed(&["name"]);
    req.approve(
        &police(),
        date(2026, 6, 5),
        "G-12".into(),
        Terms {
            fields: None,
            masks: vec![],
            match_fields: vec![],
            ..Terms::default()
        },
    )
    .unwrap();
    let e = req
        .approve(
            &police(),
            date(2026, 6, 6),
            "G-13".into(),
            Terms {
                fields: None,
                masks: vec![],
                match_fields: vec![],
                ..Terms::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert_eq!(
        e.to_string(),
        "request AR-3 was already approved on 2026-06-05 by public-security (grant G-12); to \
         withdraw access, revoke the grant"
    );
    let e = req
        .deny(&police(), date(2026, 6, 6), "changed our mind")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);

    let mut req = filed(&["name"]);
    req.deny(
        &police(),
        date(2026, 6, 5),
        "the register does not serve this purpose",
    )
    .unwrap();
    let e = req
        .approve(
            &police(),
            date(2026, 6, 6),
            "G-13".into(),
            Terms {
                fields: None,
                masks: vec![],
                match_fields: vec![],
                ..Terms::default()
            },
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "request AR-3 was already denied on 2026-06-05 by public-security: the register does \
         not serve this purpose; the consumer can file a new access request"
    );
    // Permission is checked before state: others learn nothing about the request.
    let e = req.deny(&civil(), t0(), "x").unwrap_err();
    assert!(matches!(e, Error::NotProvider { .. }), "{e}");
}

#[test]
fn an_approval_may_narrow_the_fields() {
    let mut req = filed(&["name", "birth_date", "address"]);
    let g = req
        .approve(
            &police(),
            t0(),
            "G-12".into(),
            Terms {
                fields: Some(fields(&["address", "name"])),
                masks: vec![(field("address"), Mask::Address)],
                match_fields: vec![],
                ..Terms::default()
            },
        )
        .unwrap();
    assert_eq!(g.fields(), &fields(&["address", "name"])[..]);
}

#[test]
fn an_approval_cannot_widen_or_empty_the_fields() {
    let mut req = filed(&["name"]);
    let e = req
        .approve(
            &police(),
            t0(),
            "G-12".into(),
            Terms {
                fields: Some(fields(&["name", "address"])),
                masks: vec![],
                match_fields: vec![],
                ..Terms::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    assert_eq!(
        e.to_string(),
        "field \"address\" was not asked for in request AR-3 (it asks for: name); an approval \
         can only narrow a request"
    );
    let e = req
        .approve(
            &police(),
            t0(),
            "G-12".into(),
            Terms {
                fields: Some(vec![]),
                masks: vec![],
                match_fields: vec![],
                ..Terms::default()
            },
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("deny the request with a reason"),
        "{e}"
    );
    let e = req
        .approve(
            &police(),
            t0(),
            "G-12".into(),
            Terms {
                fields: Some(fields(&["name", "name"])),
                masks: vec![],
                match_fields: vec![],
                ..Terms::default()
            },
        )
        .unwrap_err();
    assert!(matches!(e, Error::DuplicateField(_)), "{e}");
    assert!(req.is_pending());
}

#[test]
fn masks_go_only_on_granted_fields() {
    let mut req = filed(&["name", "address"]);
    let e = req
        .approve(
            &police(),
            t0(),
            "G-12".into(),
            Terms {
                fields: Some(fields(&["name"])),
                masks: vec![(field("address"), Mask::Address)],
                match_fields: vec![],
                ..Terms::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    assert!(
        e.to_string().contains(
            "a mask is set on field \"address\", which grant G-12 does not list (it lists: name)"
        ),
        "{e}"
    );
    assert!(
        req.is_pending(),
        "a failed approval leaves the request pending"
    );
}

#[test]
fn an_approval_checks_the_grant_id() {
    let mut req = filed(&["name"]);
    let e = req
        .approve(
            &police(),
            t0(),
            String::new(),
            Terms {
                fields: None,
                masks: vec![],
                match_fields: vec![],
                ..Terms::default()
            },
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidId {
                what: "grant id",
                ..
            }
        ),
        "{e}"
    );
    assert!(req.is_pending());
}

#[test]
fn a_denial_needs_a_written_reason() {
    let mut req = filed(&["name"]);
    for blank in ["", "   ", "\n\t"] {
        let e = req.deny(&police(), t0(), blank).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        assert_eq!(
            e.to_string(),
            "a denial needs a written reason (说明理由): say why, so the consumer can address it"
        );
    }
    assert!(matches!(
        req.deny(&police(), t0(), &"理".repeat(1001)),
        Err(Error::InvalidReason(_))
    ));
    assert!(matches!(
        req.deny(&police(), t0(), "a\u{0}b"),
        Err(Error::InvalidReason(_))
    ));
    assert!(req.is_pending());
    req.deny(
        &police(),
        t0(),
        "  《婚姻登记条例》does not cover birth dates;\nask for name only  ",
    )
    .unwrap();
    match req.state() {
        RequestState::Denied { at, by, reason } => {
            assert_eq!(*at, t0());
            assert_eq!(by, &police());
            assert_eq!(
                reason,
                "《婚姻登记条例》does not cover birth dates;\nask for name only"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(req.state().as_str(), "denied");
}

#[test]
fn requests_round_trip_through_their_parts() {
    let mut req = filed(&["name", "address"]);
    let pending = AccessRequest::from_parts(req.clone().into_parts()).unwrap();
    assert_eq!(pending, req);
    req.approve(
        &police(),
        t0(),
        "G-12".into(),
        Terms {
            fields: None,
            masks: vec![],
            match_fields: vec![],
            ..Terms::default()
        },
    )
    .unwrap();
    assert_eq!(
        AccessRequest::from_parts(req.clone().into_parts()).unwrap(),
        req
    );

    let mut p = req.into_parts();
    p.purposes.clear();
    assert!(AccessRequest::from_parts(p.clone()).is_err());
    p.purposes = vec![marriage()];
    p.fields.clear();
    assert_eq!(
        AccessRequest::from_parts(p.clone()),
        Err(Error::NoFieldsRequested)
    );
    p.fields = fields(&["name"]);
    p.state = RequestState::Denied {
        at: t0(),
        by: police(),
        reason: " ".into(),
    };
    assert!(matches!(
        AccessRequest::from_parts(p),
        Err(Error::InvalidReason(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// End to end
// ---------------------------------------------------------------------------------------------

#[test]
fn request_approve_query_revoke() {
    let r = register();
    let mut req = AccessRequest::file(
        form(&["name", "address", "police_station"]),
        &r,
        t0(),
        15,
        &WorkCalendar::default(),
    )
    .unwrap();
    let mut g = req
        .approve(
            &police(),
            t0() + days(2),
            "G-12".into(),
            Terms {
                fields: Some(fields(&["name", "address"])),
                masks: vec![
                    (field("name"), Mask::Name),
                    (field("address"), Mask::Address),
                ],
                match_fields: vec![],
                ..Terms::default()
            },
        )
        .unwrap();

    let now = t0() + days(5);
    let d = ask(&r, &["address"], &marriage(), std::slice::from_ref(&g), now).unwrap();
    assert_eq!(d.grant_id.as_deref(), Some("G-12"));
    assert_eq!(d.masks, vec![(field("address"), Mask::Address)]);
    assert!(matches!(
        refusal(ask(
            &r,
            &["police_station"],
            &marriage(),
            std::slice::from_ref(&g),
            now
        )),
        PolicyRefusal::FieldsOutsideGrant { .. }
    ));

    g.revoke(&police(), now, "consumer left the exchange")
        .unwrap();
    assert!(matches!(
        refusal(ask(&r, &["address"], &marriage(), &[g], now)),
        PolicyRefusal::GrantRevoked { .. }
    ));
}

#[test]
fn error_kinds() {
    let refusal: Error = PolicyRefusal::FieldsOutsideGrant {
        grant: "G-1".into(),
        fields: fields(&["a"]),
        allowed: fields(&["b"]),
    }
    .into();
    assert_eq!(refusal.kind(), ErrorKind::PermissionDenied);
    let cases = [
        (
            Error::NotProvider {
                action: "approve",
                request: "AR-1".into(),
                resource: register().id().clone(),
                by: civil(),
            },
            ErrorKind::PermissionDenied,
        ),
        (
            Error::NotPartyToGrant {
                grant: "G-1".into(),
                resource: register().id().clone(),
                consumer: civil(),
                by: dept("tax"),
            },
            ErrorKind::PermissionDenied,
        ),
        (
            Error::OwnResource {
                dept: police(),
                resource: register().id().clone(),
            },
            ErrorKind::InvalidRequest,
        ),
        (
            Error::DuplicatePurpose("x".into()),
            ErrorKind::InvalidRequest,
        ),
        (Error::InvalidLegalBasis("x"), ErrorKind::InvalidRequest),
        (
            Error::InvalidDuration { days: 0 },
            ErrorKind::InvalidRequest,
        ),
        (Error::InvalidReason("x"), ErrorKind::InvalidRequest),
        (Error::InvalidGrant("x".into()), ErrorKind::InvalidRequest),
        (
            Error::AlreadyDecided {
                request: "AR-1".into(),
                state: RequestState::Denied {
                    at: t0(),
                    by: police(),
                    reason: "x".into(),
                },
            },
            ErrorKind::Conflict,
        ),
        (
            Error::AlreadyRevoked {
                grant: "G-1".into(),
                revocation: Revocation {
                    at: t0(),
                    by: police(),
                    reason: "x".into(),
                },
            },
            ErrorKind::Conflict,
        ),
    ];
    for (e, kind) in cases {
        assert_eq!(e.kind(), kind, "{e}");
    }
}

#[test]
fn releasable_fields_are_the_union_of_active_grants_and_for_open_resources_the_unguarded_fields() {
    let reg = register();
    // Nobody may receive anything of a conditional resource without a grant.
    assert!(releasable_fields(&reg, &[], t0()).is_empty());
    let a = grant("G-1", &reg, &["name", "birth_date"]);
    let mut b = Grant::new(grant_parts(
        "G-2",
        dept("health"),
        &reg,
        &["address", "name"],
    ))
    .unwrap();
    let other = grant("G-3", &licences(), &["legal_rep_name"]);
    let all = [a.clone(), b.clone(), other.clone()];
    // In catalogue order, each field once, other resources' grants left out.
    assert_eq!(
        releasable_fields(&reg, &all, t0()),
        fields(&["name", "birth_date", "address"])
    );
    // Expired and revoked grants release nothing.
    assert_eq!(
        releasable_fields(&reg, &all, t0() + days(400)),
        Vec::<FieldName>::new()
    );
    b.revoke(&dept("health"), t0(), "done").unwrap();
    assert_eq!(
        releasable_fields(&reg, &[a, b, other.clone()], t0()),
        fields(&["name", "birth_date"])
    );
    // An open resource: public and internal fields for anyone, personal ones by grant only.
    assert_eq!(
        releasable_fields(&licences(), &[], t0()),
        fields(&["credit_code", "company_name", "inspection_notes"])
    );
    assert_eq!(
        releasable_fields(&licences(), &[other], t0()),
        fields(&[
            "credit_code",
            "company_name",
            "inspection_notes",
            "legal_rep_name"
        ])
    );
    // A not-shared resource: nothing, whatever grants say.
    let closed = spec(
        "public-security/criminal-records",
        SharingClass::NotShared,
        &[("id_number", FieldType::String, Sensitivity::Personal)],
    );
    let g = Grant::new(grant_parts("G-9", civil(), &closed, &["id_number"])).unwrap();
    assert!(releasable_fields(&closed, &[g], t0()).is_empty());
}
// ---------------------------------------------------------------------------------------------
// Matching on masked fields
// ---------------------------------------------------------------------------------------------

/// Civil affairs' grant: name and address, the address masked to the district; it may search.
fn district_grant(match_fields: &[&str]) -> Grant {
    let mut p = grant_parts(
        "G-7",
        civil(),
        &register(),
        &["name", "address", "id_number"],
    );
    p.masks = vec![
        (field("address"), Mask::Address),
        (field("id_number"), Mask::IdNumber),
    ];
    p.match_fields = fields(match_fields);
    p.bounds.lookup = Some(Lookup::Search);
    Grant::new(p).unwrap()
}

fn ask_selecting(
    f: &[&str],
    filters: &[&str],
    key: &[&str],
    grants: &[Grant],
) -> Result<Decision, Error> {
    let (filters, key) = (fields(filters), fields(key));
    decide(
        &register(),
        &civil(),
        &fields(f),
        Selection {
            filters: &filters,
            key: &key,
        },
        &marriage(),
        grants,
        t0(),
    )
}

#[test]
fn a_filter_on_a_masked_field_is_refused_naming_the_grant_the_field_and_what_to_ask() {
    let e = ask_selecting(&["name"], &["address"], &[], &[district_grant(&[])]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert_eq!(
        e.to_string(),
        "your grant G-7 releases field \"address\" only masked (address), so a filter on it is \
         refused: matching the full value would confirm what the mask hides; select records by a \
         field the grant releases unmasked, or ask public-security to allow matching on \
         \"address\" (match_fields) when it approves an access request"
    );
}

#[test]
fn a_key_on_a_masked_field_is_refused() {
    let e = ask_selecting(&["name"], &[], &["id_number"], &[district_grant(&[])]).unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Policy(PolicyRefusal::MatchOnMaskedField { field: f, kind: MatchKind::Key, .. })
                if f.as_str() == "id_number"
        ),
        "{e}"
    );
}

#[test]
fn match_fields_allow_matching_on_a_masked_field_and_it_stays_masked() {
    let g = district_grant(&["id_number"]);
    let d = ask_selecting(
        &["name", "id_number"],
        &[],
        &["id_number"],
        std::slice::from_ref(&g),
    )
    .unwrap();
    assert_eq!(d.grant_id.as_deref(), Some("G-7"));
    assert_eq!(d.masks, vec![(field("id_number"), Mask::IdNumber)]);
    // Allowing one field allows no other.
    let e = ask_selecting(&["name"], &["address"], &[], &[g]).unwrap_err();
    assert!(matches!(
        e,
        Error::Policy(PolicyRefusal::MatchOnMaskedField { .. })
    ));
}

#[test]
fn a_filter_on_a_field_released_unmasked_works() {
    let d = ask_selecting(&["address"], &["name"], &[], &[district_grant(&[])]).unwrap();
    assert_eq!(d.grant_id.as_deref(), Some("G-7"));
    assert_eq!(d.masks, vec![(field("address"), Mask::Address)]);
}

#[test]
fn a_key_on_a_field_the_grant_does_not_list_works_but_a_filter_does_not() {
    // The consumer brings the key; it learns nothing about a field it is not given.
    let g = grant("G-1", &register(), &["name"]);
    let d = ask_selecting(&["name"], &[], &["id_number"], std::slice::from_ref(&g)).unwrap();
    assert_eq!(d.grant_id.as_deref(), Some("G-1"));
    let e = ask_selecting(&["name"], &["birth_date"], &[], &[g]).unwrap_err();
    assert_eq!(
        refusal(Err(e)),
        PolicyRefusal::FieldsOutsideGrant {
            grant: "G-1".into(),
            fields: fields(&["birth_date"]),
            allowed: fields(&["name"]),
        }
    );
}

#[test]
fn a_grant_that_allows_the_match_is_chosen_over_one_that_masks() {
    let masked = district_grant(&[]);
    let mut p = grant_parts("G-8", civil(), &register(), &["name", "address"]);
    p.masks = vec![(field("address"), Mask::Address)];
    p.match_fields = fields(&["address"]);
    p.bounds.lookup = Some(Lookup::Search);
    let matching = Grant::new(p).unwrap();
    let d = ask_selecting(&["name"], &["address"], &[], &[masked, matching]).unwrap();
    assert_eq!(d.grant_id.as_deref(), Some("G-8"));
}

#[test]
fn the_provider_and_open_fields_match_freely() {
    let (filters, key) = (fields(&["address"]), fields(&[]));
    let sel = Selection {
        filters: &filters,
        key: &key,
    };
    let d = decide(
        &register(),
        &police(),
        &fields(&["name"]),
        sel,
        &marriage(),
        [&district_grant(&[])],
        t0(),
    )
    .unwrap();
    assert_eq!(d, Decision::default());
    // An open resource's public fields need no grant, so nothing is masked to probe.
    let cc = fields(&["credit_code"]);
    let d = decide(
        &licences(),
        &civil(),
        &fields(&["company_name"]),
        Selection {
            filters: &cc,
            key: &[],
        },
        &marriage(),
        [],
        t0(),
    )
    .unwrap();
    assert_eq!(d, Decision::default());
}

#[test]
fn a_filter_on_an_unknown_field_is_refused() {
    let e = ask_selecting(&["name"], &["shoe_size"], &[], &[district_grant(&[])]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
}

#[test]
fn match_fields_are_checked() {
    let mut p = grant_parts("G-9", civil(), &register(), &["name"]);
    p.match_fields = fields(&["address"]);
    let e = Grant::new(p.clone()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "match_fields names field \"address\", which grant G-9 does not list (it lists: name); \
         matching is allowed only on granted fields"
    );
    p.match_fields = fields(&["name", "name"]);
    let e = Grant::new(p).unwrap_err();
    assert_eq!(
        e.to_string(),
        "match_fields names field \"name\" twice in grant G-9"
    );
}

#[test]
fn an_approval_may_allow_matching_on_granted_fields_only() {
    let mut req = filed(&["name", "address"]);
    let g = req
        .approve(
            &police(),
            t0(),
            "G-12".into(),
            Terms {
                fields: Some(fields(&["name", "address"])),
                masks: vec![(field("address"), Mask::Address)],
                match_fields: fields(&["address"]),
                ..Terms::default()
            },
        )
        .unwrap();
    assert_eq!(g.match_fields(), fields(&["address"]).as_slice());
    assert!(g.allows_match(&field("address")));
    let mut req = filed(&["name", "address"]);
    let e = req
        .approve(
            &police(),
            t0(),
            "G-13".into(),
            Terms {
                fields: Some(fields(&["name"])),
                masks: vec![],
                match_fields: fields(&["address"]),
                ..Terms::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    assert!(req.is_pending());
}

// ---------------------------------------------------------------------------------------------
// Written text and purpose bounds
// ---------------------------------------------------------------------------------------------

#[test]
fn a_denial_reason_of_invisible_text_is_refused() {
    for reason in [
        "\u{200B}",
        " \u{200B}\u{FEFF} ",
        "\u{2060}\u{200D}",
        "\u{3000}",
        "\u{00AD}",
    ] {
        let mut req = filed(&["name"]);
        let e = req.deny(&police(), t0(), reason).unwrap_err();
        assert!(
            matches!(e, Error::InvalidReason(_)),
            "{reason:?} was accepted: {e}"
        );
        assert!(req.is_pending());
    }
    let mut req = filed(&["name"]);
    req.deny(&police(), t0(), "\u{200B}not a lawful use\u{200B}")
        .unwrap();
    assert!(
        matches!(req.state(), RequestState::Denied { reason, .. } if reason == "not a lawful use")
    );
}

#[test]
fn purposes_are_trimmed_of_invisible_characters_and_must_show_something() {
    assert_eq!(
        purpose("marriage registration \u{200B}"),
        purpose("marriage registration")
    );
    assert!(Purpose::new("\u{200B}\u{FEFF}").is_err());
    let g = grant("G-1", &register(), &["name"]);
    assert!(
        ask(
            &register(),
            &["name"],
            &purpose(" marriage registration\t"),
            &[g],
            t0()
        )
        .is_ok()
    );
}

#[test]
fn an_access_request_names_at_most_16_purposes() {
    let mut f = form(&["name"]);
    f.purposes = (0..10_000).map(|i| format!("purpose {i}")).collect();
    let e = AccessRequest::file(f, &register(), t0(), 10, &WorkCalendar::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    assert_eq!(
        e.to_string(),
        "10000 purposes were named; at most 16 are allowed: name the uses your department actually has"
    );
    let mut f = form(&["name"]);
    f.purposes = (0..16).map(|i| format!("purpose {i}")).collect();
    AccessRequest::file(f, &register(), t0(), 10, &WorkCalendar::default()).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Bounds on bulk reads: lookup, caps, case
// ---------------------------------------------------------------------------------------------

fn bounded(id: &str, resource: &ResourceSpec, f: &[&str], bounds: Bounds) -> Grant {
    let mut p = grant_parts(id, civil(), resource, f);
    p.bounds = bounds;
    Grant::new(p).unwrap()
}

fn search_on(
    resource: &ResourceSpec,
    f: &[&str],
    filters: &[&str],
    grants: &[Grant],
    has_case: bool,
) -> Result<Decision, Error> {
    let filters = fields(filters);
    decide(
        resource,
        &civil(),
        &fields(f),
        Selection {
            filters: &filters,
            key: &[],
        },
        Why {
            purpose: &marriage(),
            has_case,
        },
        grants,
        t0(),
    )
}

#[test]
fn the_default_lookup_is_key_for_a_resource_about_people_and_search_otherwise() {
    assert_eq!(Lookup::default_for(&register()), Lookup::Key);
    assert_eq!(Lookup::default_for(&licences()), Lookup::Key);
    let plain = spec(
        "market-regulation/registry-offices",
        SharingClass::Conditional,
        &[
            ("office_code", FieldType::String, Sensitivity::Public),
            ("city", FieldType::String, Sensitivity::Internal),
        ],
    );
    assert_eq!(Lookup::default_for(&plain), Lookup::Search);
    let g = grant("G-1", &plain, &["city"]);
    assert_eq!(g.lookup_for(&plain), Lookup::Search);
    search_on(&plain, &["city"], &["city"], &[g], false).unwrap();
}

#[test]
fn a_search_under_a_key_grant_is_refused_naming_the_grant_and_how_to_search() {
    let g = grant("G-1", &register(), &["name", "birth_date"]);
    let e = search_on(&register(), &["name"], &["birth_date"], &[g], false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert_eq!(
        e.to_string(),
        "your grant G-1 allows key lookups only, so a search (a query by filters on birth_date) \
         is refused: look each record up by its key (id_number), or file an access request \
         (huitong admin request public-security/household-register ...) that public-security \
         approves with lookup = \"search\""
    );
    // The same grant serves a key lookup.
    let g = grant("G-1", &register(), &["name", "birth_date"]);
    let key = fields(&["id_number"]);
    let d = decide(
        &register(),
        &civil(),
        &fields(&["name"]),
        Selection {
            filters: &[],
            key: &key,
        },
        &marriage(),
        [&g],
        t0(),
    )
    .unwrap();
    assert_eq!(d.grant_id.as_deref(), Some("G-1"));
}

#[test]
fn a_search_grant_is_chosen_over_a_key_grant() {
    let key_only = grant("G-1", &register(), &["name", "birth_date"]);
    let search = bounded(
        "G-2",
        &register(),
        &["name", "birth_date"],
        Bounds {
            lookup: Some(Lookup::Search),
            ..Bounds::default()
        },
    );
    let d = search_on(
        &register(),
        &["name"],
        &["birth_date"],
        &[key_only, search],
        false,
    )
    .unwrap();
    assert_eq!(d.grant_id.as_deref(), Some("G-2"));
}

#[test]
fn a_filter_outside_a_search_grant_is_refused_as_a_field_outside_it() {
    // No inference through filters: a search grant does not open the fields it does not list.
    let g = bounded(
        "G-2",
        &register(),
        &["name"],
        Bounds {
            lookup: Some(Lookup::Search),
            ..Bounds::default()
        },
    );
    let e = search_on(&register(), &["name"], &["birth_date"], &[g], false).unwrap_err();
    assert_eq!(
        refusal(Err(e)),
        PolicyRefusal::FieldsOutsideGrant {
            grant: "G-2".into(),
            fields: fields(&["birth_date"]),
            allowed: fields(&["name"]),
        }
    );
}

#[test]
fn a_grant_requiring_a_case_refuses_a_request_without_one() {
    let g = bounded(
        "G-3",
        &register(),
        &["name"],
        Bounds {
            require_case: true,
            ..Bounds::default()
        },
    );
    let e = ask(
        &register(),
        &["name"],
        &marriage(),
        std::slice::from_ref(&g),
        t0(),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Precondition);
    assert_eq!(
        e.to_string(),
        "your grant G-3 requires a case reference (办件编号) with every query and subscription: \
         give the case the data is needed for (case_ref; huitong query --case ...)"
    );
    let d = decide(
        &register(),
        &civil(),
        &fields(&["name"]),
        Selection::NONE,
        Why {
            purpose: &marriage(),
            has_case: true,
        },
        [&g],
        t0(),
    )
    .unwrap();
    assert_eq!(d.grant_id.as_deref(), Some("G-3"));
    // Another grant that needs no case serves the request without one.
    let plain = grant("G-4", &register(), &["name"]);
    let d = ask(&register(), &["name"], &marriage(), &[g, plain], t0()).unwrap();
    assert_eq!(d.grant_id.as_deref(), Some("G-4"));
}

#[test]
fn the_closest_grant_reports_fields_before_lookup_before_case() {
    let g = bounded(
        "G-5",
        &register(),
        &["name"],
        Bounds {
            require_case: true,
            ..Bounds::default()
        },
    );
    let e = search_on(
        &register(),
        &["name", "address"],
        &["name"],
        std::slice::from_ref(&g),
        false,
    )
    .unwrap_err();
    assert!(matches!(
        refusal(Err(e)),
        PolicyRefusal::FieldsOutsideGrant { .. }
    ));
    let e = search_on(
        &register(),
        &["name"],
        &["name"],
        std::slice::from_ref(&g),
        false,
    )
    .unwrap_err();
    assert!(matches!(
        refusal(Err(e)),
        PolicyRefusal::KeyLookupsOnly { .. }
    ));
}

#[test]
fn caps_travel_with_the_decision_and_refuse_beyond_them() {
    let g = bounded(
        "G-6",
        &register(),
        &["name"],
        Bounds {
            lookup: Some(Lookup::Search),
            max_records_per_query: Some(10),
            max_subjects_per_day: Some(50),
            require_case: false,
        },
    );
    let d = search_on(&register(), &["name"], &["name"], &[g], false).unwrap();
    assert_eq!(d.max_subjects_per_day(), Some(50));
    // Pages: the default lowered to the cap, a page up to the cap as asked, beyond it refused.
    assert_eq!(d.page_size(0, 100).unwrap(), 10);
    assert_eq!(d.page_size(0, 5).unwrap(), 5);
    assert_eq!(d.page_size(7, 100).unwrap(), 7);
    let e = d.page_size(11, 100).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Exhausted);
    assert_eq!(
        e.to_string(),
        "your grant G-6 releases at most 10 records per query, and this query asks for a page of \
         11; ask for at most 10 per page (page_size) or narrow the filters, or ask \
         public-security for a higher max_records_per_query"
    );
    // What the provider answered: up to the cap leaves, beyond it nothing does.
    d.check_released(10).unwrap();
    let e = d.check_released(11).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Exhausted);
    assert!(
        e.to_string()
            .contains("would release 11, so nothing was released"),
        "{e}"
    );
    // People per day: up to the cap, counting those already released today.
    assert!(d.over_subjects_per_day(40, 10).is_none());
    // Nobody new: never refused, even over a cap lowered since.
    assert!(d.over_subjects_per_day(80, 0).is_none());
    let e = d.over_subjects_per_day(45, 6).unwrap();
    assert_eq!(e.kind(), ErrorKind::Exhausted);
    assert_eq!(
        e.to_string(),
        "your grant G-6 releases the records of at most 50 different people per day (UTC), 45 of \
         them today, and this answer would reach 6 more, so nothing was released; try again \
         after 00:00 UTC, or ask public-security for a higher max_subjects_per_day"
    );
}

#[test]
fn without_caps_nothing_is_capped() {
    let g = bounded(
        "G-7",
        &register(),
        &["name"],
        Bounds {
            lookup: Some(Lookup::Search),
            ..Bounds::default()
        },
    );
    let d = search_on(&register(), &["name"], &["name"], &[g], false).unwrap();
    assert_eq!(d.caps, None);
    assert_eq!(d.page_size(0, 100).unwrap(), 100);
    assert_eq!(d.page_size(5000, 100).unwrap(), 5000);
    d.check_released(1_000_000).unwrap();
    assert!(d.over_subjects_per_day(u32::MAX, u32::MAX).is_none());
    // Nor when no grant is needed, whatever grants the consumer holds.
    let d = ask(&licences(), &["credit_code"], &marriage(), &[], t0()).unwrap();
    assert_eq!(d.caps, None);
}

#[test]
fn a_cap_of_zero_is_refused_with_what_to_write_instead() {
    for bounds in [
        Bounds {
            max_records_per_query: Some(0),
            ..Bounds::default()
        },
        Bounds {
            max_subjects_per_day: Some(0),
            ..Bounds::default()
        },
    ] {
        let mut p = grant_parts("G-8", civil(), &register(), &["name"]);
        p.bounds = bounds;
        let e = Grant::new(p).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        assert!(
            e.to_string().contains(
                "is 0, which would release nothing; give at least 1, or leave it out for no cap"
            ),
            "{e}"
        );
    }
}

#[test]
fn an_approval_sets_the_bounds_of_its_grant() {
    let mut req = filed(&["name", "address"]);
    let bounds = Bounds {
        lookup: Some(Lookup::Search),
        max_records_per_query: Some(20),
        max_subjects_per_day: Some(200),
        require_case: true,
    };
    let g = req
        .approve(
            &police(),
            t0(),
            "G-12".into(),
            Terms {
                bounds,
                ..Terms::default()
            },
        )
        .unwrap();
    assert_eq!(*g.bounds(), bounds);
    assert_eq!(Grant::new(g.clone().into_parts()).unwrap(), g);
}
