use super::*;

fn dept(s: &str) -> DeptId {
    DeptId::new(s).unwrap()
}

#[test]
fn parses_and_prints_a_spiffe_id() {
    let uri = "spiffe://gov.example/dept/public-security/adapter";
    let id = PeerId::parse_uri(uri).unwrap();
    assert_eq!(id.trust_domain, "gov.example");
    assert_eq!(id.dept, dept("public-security"));
    assert_eq!(id.role, Role::Adapter);
    assert_eq!(id.uri(), uri);
    assert_eq!(id.to_string(), uri);
    assert_eq!(uri.parse::<PeerId>().unwrap(), id);
}

#[test]
fn refuses_malformed_ids() {
    for bad in [
        "",
        "https://gov.example/dept/a/adapter",
        "SPIFFE://gov.example/dept/a/adapter",
        "spiffe://",
        "spiffe://gov.example",
        "spiffe://gov.example/",
        "spiffe:///dept/a/adapter",
        "spiffe://Gov.example/dept/a/adapter",
        "spiffe://gov.example:443/dept/a/adapter",
        "spiffe://user@gov.example/dept/a/adapter",
        "spiffe://gov.example/dept/a",
        "spiffe://gov.example/dept/a/adapter/",
        "spiffe://gov.example/dept/a/adapter/x",
        "spiffe://gov.example/depts/a/adapter",
        "spiffe://gov.example/dept//adapter",
        "spiffe://gov.example/dept/A/adapter",
        "spiffe://gov.example/dept/a/Adapter",
        "spiffe://gov.example/dept/a/root",
        "spiffe://gov.example/dept/a/adapter?x=1",
        "spiffe://gov.example/dept/a/adapter#f",
        "spiffe://gov.example//dept/a/adapter",
    ] {
        assert!(PeerId::parse_uri(bad).is_err(), "accepted {bad:?}");
    }
    let long = format!("spiffe://{}/dept/a/adapter", "a".repeat(256));
    assert!(PeerId::parse_uri(&long).is_err());
}

#[test]
fn error_names_the_problem() {
    let e = PeerId::parse_uri("spiffe://gov.example/dept/a/root").unwrap_err();
    assert!(e.to_string().contains("role"), "{e}");
    let e = PeerId::parse_uri("spiffe://gov.example/dept/Bad/adapter").unwrap_err();
    assert!(e.to_string().contains("department id"), "{e}");
}

#[test]
fn roles_round_trip() {
    for r in Role::ALL {
        assert_eq!(Role::parse(r.as_str()), Some(r));
        assert_eq!(r.to_string().parse::<Role>().unwrap(), r);
    }
    assert_eq!(Role::parse("Broker"), None);
    assert_eq!(Role::parse(""), None);
    assert!(Role::Broker.serves() && Role::Adapter.serves() && !Role::Consumer.serves());
}

#[test]
fn new_checks_the_trust_domain() {
    assert!(PeerId::new("gov.example", dept("a"), Role::Admin).is_ok());
    assert!(PeerId::new("gov example", dept("a"), Role::Admin).is_err());
    assert!(PeerId::new("", dept("a"), Role::Admin).is_err());
}

#[test]
fn garbage_is_not_a_certificate() {
    assert!(matches!(
        peer_id_of(b"not a certificate"),
        Err(Error::NoIdentity(_))
    ));
}
