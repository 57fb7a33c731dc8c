use super::*;

#[test]
fn an_unguarded_request_has_no_peer() {
    let status = verified_peer(&Request::new(())).unwrap_err();
    assert_eq!(status.code(), tonic::Code::Internal);
}

#[test]
fn roles_read_as_a_list() {
    assert_eq!(roles_text(&[Role::Broker]), "broker");
    assert_eq!(
        roles_text(&[Role::Admin, Role::Auditor]),
        "admin or auditor"
    );
    assert_eq!(
        roles_text(&[Role::Consumer, Role::Admin, Role::Auditor]),
        "consumer, admin or auditor"
    );
}

#[test]
fn identities_read_as_a_list() {
    let id = |d: &str| {
        PeerId::new(
            "gov.example",
            huitong_core::DeptId::new(d).unwrap(),
            Role::Broker,
        )
        .unwrap()
    };
    assert_eq!(
        ids_text(&[id("exchange-office")]),
        "spiffe://gov.example/dept/exchange-office/broker"
    );
    assert_eq!(
        ids_text(&[id("a"), id("b")]),
        "spiffe://gov.example/dept/a/broker or spiffe://gov.example/dept/b/broker"
    );
}
