use super::*;
use crate::ids::{DeptId, ResourceName};

fn field(name: &str, ty: FieldType) -> FieldSpec {
    FieldSpec {
        name: FieldName::new(name).unwrap(),
        ty,
        sensitivity: Sensitivity::Personal,
        description: String::new(),
    }
}

fn register() -> ResourceSpec {
    ResourceSpec::new(ResourceSpecParts {
        id: ResourceId::parse("public-security/household-register").unwrap(),
        title: "Household register".into(),
        description: String::new(),
        fields: vec![
            field("id_number", FieldType::String),
            field("name", FieldType::String),
            field("birth_date", FieldType::Date),
        ],
        key_fields: vec![FieldName::new("id_number").unwrap()],
        sharing_class: SharingClass::Conditional,
        legal_basis: String::new(),
        update_cycle: "real-time".into(),
        max_cache_age_seconds: 60,
        stale_if_error_seconds: 0,
    })
    .unwrap()
}

#[test]
fn unknown_field_names_the_field_and_lists_the_known_ones() {
    let e = register()
        .check_requested_fields(["name", "salary"])
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("\"salary\""), "{msg}");
    assert!(msg.contains("id_number, name, birth_date"), "{msg}");
}

#[test]
fn no_fields_is_refused_for_minimisation() {
    assert_eq!(
        register().check_requested_fields([]).unwrap_err(),
        Error::NoFieldsRequested
    );
}

#[test]
fn duplicate_requested_field_is_refused() {
    assert!(matches!(
        register().check_requested_fields(["name", "name"]),
        Err(Error::DuplicateField(_))
    ));
}

#[test]
fn key_must_cover_exactly_the_key_fields_with_values() {
    let r = register();
    assert!(
        r.check_key([("id_number", ValueKind::String, false)])
            .is_ok()
    );
    assert!(r.check_key([]).is_err());
    assert!(
        r.check_key([("id_number", ValueKind::String, true)])
            .is_err()
    );
    assert!(
        r.check_key([("id_number", ValueKind::Null, false)])
            .is_err()
    );
    assert!(r.check_key([("name", ValueKind::String, false)]).is_err());
    let e = r
        .check_key([("id_number", ValueKind::Int, false)])
        .unwrap_err();
    assert!(matches!(e, Error::WrongValueType { .. }), "{e}");
}

#[test]
fn filters_check_field_and_type() {
    let r = register();
    assert!(r.check_filter("birth_date", ValueKind::Date).is_ok());
    assert!(r.check_filter("birth_date", ValueKind::String).is_err());
    assert!(r.check_filter("nope", ValueKind::String).is_err());
}

#[test]
fn inconsistent_descriptions_are_refused() {
    let mut p = ResourceSpecParts {
        id: ResourceId::parse("a/b").unwrap(),
        title: String::new(),
        description: String::new(),
        fields: vec![field("x", FieldType::Int)],
        key_fields: vec![FieldName::new("y").unwrap()],
        sharing_class: SharingClass::Open,
        legal_basis: String::new(),
        update_cycle: String::new(),
        max_cache_age_seconds: 0,
        stale_if_error_seconds: 0,
    };
    assert!(ResourceSpec::new(p.clone()).is_err());
    p.key_fields.clear();
    assert!(ResourceSpec::new(p.clone()).is_err());
    p.key_fields = vec![FieldName::new("x").unwrap()];
    p.fields.push(field("x", FieldType::Int));
    assert!(ResourceSpec::new(p).is_err());
}

#[test]
fn not_shared_is_refused_with_its_basis() {
    let mut r = register();
    assert!(r.check_shared().is_ok());
    r.sharing_class = SharingClass::NotShared;
    r.legal_basis = "刑事诉讼法".into();
    let e = r.check_shared().unwrap_err();
    assert!(e.to_string().contains("刑事诉讼法"));
}

#[test]
fn a_provider_cannot_describe_another_departments_resource() {
    let cat = Catalogue::default();
    let other = DeptId::new("civil-affairs").unwrap();
    assert!(cat.with_provider(&other, vec![register()]).is_err());
    let own = DeptId::new("public-security").unwrap();
    let cat = cat.with_provider(&own, vec![register()]).unwrap();
    assert_eq!(cat.len(), 1);
    let id = ResourceId::new(
        own.clone(),
        ResourceName::new("household-register").unwrap(),
    );
    assert!(cat.get(&id).is_ok());
    let cat = cat.with_provider(&own, vec![]).unwrap();
    assert!(cat.is_empty());
}
