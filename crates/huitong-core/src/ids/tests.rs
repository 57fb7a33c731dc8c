use super::*;

#[test]
fn dept_ids_accept_lowercase_words() {
    assert_eq!(
        DeptId::new("public-security").unwrap().as_str(),
        "public-security"
    );
    assert!(DeptId::new("dept2").is_ok());
}

#[test]
fn dept_ids_reject_what_would_break_paths_and_uris() {
    let long = "a".repeat(64);
    for bad in [
        "", "Public", "2dept", "a_b", "a/b", "a--b", "a-", "公安", &long,
    ] {
        assert!(DeptId::new(bad).is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn resource_ids_split_on_the_slash() {
    let r = ResourceId::parse("civil-affairs/marriage-registrations").unwrap();
    assert_eq!(r.provider().as_str(), "civil-affairs");
    assert_eq!(r.name().as_str(), "marriage-registrations");
    assert_eq!(r.to_string(), "civil-affairs/marriage-registrations");
}

#[test]
fn resource_id_without_slash_says_how_to_write_it() {
    let e = ResourceId::parse("household-register")
        .unwrap_err()
        .to_string();
    assert!(e.contains("<department>/<name>"), "{e}");
}

#[test]
fn field_names_are_snake_case() {
    assert!(FieldName::new("birth_date").is_ok());
    for bad in ["", "Birth", "birth-date", "_x", "x y"] {
        assert!(FieldName::new(bad).is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn purpose_is_required_trimmed_and_bounded() {
    assert_eq!(
        Purpose::new("  marriage registration ").unwrap().as_str(),
        "marriage registration"
    );
    assert!(Purpose::new("婚姻登记").is_ok());
    assert!(Purpose::new("   ").is_err());
    assert!(Purpose::new(&"x".repeat(201)).is_err());
    assert!(Purpose::new("a\nb").is_err());
}
