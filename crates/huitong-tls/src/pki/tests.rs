use super::*;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "huitong-tls-pki-{name}-{}-{}",
        std::process::id(),
        unix_now()
    ));
    let _ = fs::remove_dir_all(&dir);
    dir
}

#[test]
fn init_refuses_to_overwrite_a_ca() {
    let dir = temp_dir("overwrite");
    init(&dir, "gov.example").unwrap();
    let key_before = fs::read(dir.join(CA_KEY)).unwrap();
    let err = init(&dir, "gov.example").unwrap_err();
    assert!(matches!(err, Error::CaExists { .. }), "{err}");
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");
    assert_eq!(fs::read(dir.join(CA_KEY)).unwrap(), key_before);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn init_writes_the_ca_files() {
    let dir = temp_dir("files");
    init(&dir, "gov.example").unwrap();
    for f in [CA_CERT, CA_KEY, TRUST_DOMAIN, CRL] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    assert_eq!(
        fs::read_to_string(dir.join(TRUST_DOMAIN)).unwrap(),
        "gov.example\n"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.join(CA_KEY)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(files::crls(&dir.join(CRL)).unwrap().len(), 1);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn init_refuses_a_bad_trust_domain() {
    let dir = temp_dir("bad-td");
    assert!(matches!(
        init(&dir, "Gov.Example:443"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(!dir.join(CA_KEY).exists());
}

#[test]
fn issue_needs_a_ca() {
    let dir = temp_dir("no-ca");
    let opts = IssueOptions::new(DeptId::new("civil-affairs").unwrap(), Role::Consumer);
    let err = issue(&dir, &opts).unwrap_err();
    assert!(matches!(err, Error::NoCa { .. }), "{err}");
}

#[test]
fn issues_certificates_with_the_identity_and_hosts() {
    let dir = temp_dir("issue");
    init(&dir, "gov.example").unwrap();
    let mut opts = IssueOptions::new(DeptId::new("public-security").unwrap(), Role::Adapter);
    let a = issue(&dir, &opts).unwrap();
    assert_eq!(a.cert, dir.join("public-security-adapter.pem"));
    assert_eq!(
        a.id.uri(),
        "spiffe://gov.example/dept/public-security/adapter"
    );
    let der = files::certs(&a.cert).unwrap().remove(0);
    assert_eq!(crate::peer_id_of(&der).unwrap(), a.id);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let names = format!(
        "{:?}",
        cert.subject_alternative_name().unwrap().unwrap().value
    );
    assert!(
        names.contains("localhost") && names.contains("127"),
        "{names}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&a.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Serials are unique, also when re-issuing the same identity.
    let serial1 = cert.tbs_certificate.serial.clone();
    opts.replace = true;
    let b = issue(&dir, &opts).unwrap();
    opts.replace = false;
    let der = files::certs(&b.cert).unwrap().remove(0);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert_ne!(cert.tbs_certificate.serial, serial1);

    opts.hosts = vec!["not a host!".into()];
    assert!(matches!(issue(&dir, &opts), Err(Error::InvalidArgument(_))));
    opts.hosts = vec![];
    opts.valid_days = 0;
    assert!(matches!(issue(&dir, &opts), Err(Error::InvalidArgument(_))));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn revocation_raises_the_crl_number_and_lists_the_serial() {
    let dir = temp_dir("revoke");
    init(&dir, "gov.example").unwrap();
    let ca = Ca::load(&dir).unwrap();
    let first = ca.crl_number().unwrap();
    let opts = IssueOptions::new(DeptId::new("civil-affairs").unwrap(), Role::Consumer);
    let c = issue(&dir, &opts).unwrap();
    revoke(&dir, &c.cert, "laptop\tstolen").unwrap();
    let second = ca.crl_number().unwrap();
    assert!(second > first);
    revoke(&dir, &c.cert, "key-compromise").unwrap();
    assert!(ca.crl_number().unwrap() > second);

    let register = fs::read_to_string(dir.join(REVOKED)).unwrap();
    let lines: Vec<_> = register.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 1, "{register}");
    assert!(lines[0].contains("laptop stolen"), "{register}");
    assert!(lines[0].contains("spiffe://gov.example/dept/civil-affairs/consumer"));

    let der = files::crls(&dir.join(CRL)).unwrap().remove(0);
    let (_, crl) = CertificateRevocationList::from_der(&der).unwrap();
    let cert_der = files::certs(&c.cert).unwrap().remove(0);
    let (_, cert) = X509Certificate::from_der(&cert_der).unwrap();
    assert_eq!(crl.iter_revoked_certificates().count(), 1);
    assert!(
        crl.iter_revoked_certificates()
            .any(|r| r.raw_serial() == cert.raw_serial())
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn refuses_to_revoke_another_cas_certificate() {
    let dir = temp_dir("revoke-other");
    let other = temp_dir("revoke-other-ca");
    init(&dir, "gov.example").unwrap();
    init(&other, "gov.example").unwrap();
    let opts = IssueOptions::new(DeptId::new("civil-affairs").unwrap(), Role::Consumer);
    let foreign = issue(&other, &opts).unwrap();
    let err = revoke(&dir, &foreign.cert, "superseded").unwrap_err();
    assert!(err.to_string().contains("not issued by the CA"), "{err}");
    fs::remove_dir_all(&dir).unwrap();
    fs::remove_dir_all(&other).unwrap();
}

#[test]
fn an_existing_pair_is_kept_unless_replaced_and_then_kept_as_old() {
    let dir = temp_dir("reissue");
    init(&dir, "gov.example").unwrap();
    let mut opts = IssueOptions::new(DeptId::new("civil-affairs").unwrap(), Role::Consumer);
    let first = issue(&dir, &opts).unwrap();
    let cert1 = fs::read(&first.cert).unwrap();
    let key1 = fs::read(&first.key).unwrap();

    let err = issue(&dir, &opts).unwrap_err();
    assert!(matches!(err, Error::CertExists { .. }), "{err}");
    assert!(err.to_string().contains("--force"), "{err}");
    // Refused means untouched.
    assert_eq!(fs::read(&first.cert).unwrap(), cert1);
    assert_eq!(fs::read(&first.key).unwrap(), key1);

    opts.replace = true;
    let second = issue(&dir, &opts).unwrap();
    assert_ne!(fs::read(&second.cert).unwrap(), cert1);
    let old_cert = dir.join("civil-affairs-consumer.old.pem");
    assert_eq!(fs::read(&old_cert).unwrap(), cert1);
    assert_eq!(
        fs::read(dir.join("civil-affairs-consumer.old.key")).unwrap(),
        key1
    );
    // The old certificate can still be revoked.
    revoke(&dir, &old_cert, "superseded").unwrap();
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn broker_certificates_only_for_the_exchanges_broker_departments() {
    let dir = temp_dir("brokers");
    init(&dir, "gov.example").unwrap();
    let broker = issue(
        &dir,
        &IssueOptions::new(DeptId::new(DEFAULT_BROKER_DEPT).unwrap(), Role::Broker),
    )
    .unwrap();
    assert_eq!(
        broker.id.uri(),
        "spiffe://gov.example/dept/exchange-office/broker"
    );
    let err = issue(
        &dir,
        &IssueOptions::new(DeptId::new("civil-affairs").unwrap(), Role::Broker),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::InvalidArgument(_)), "{msg}");
    assert!(
        msg.contains("civil-affairs does not run the exchange's broker")
            && msg.contains("exchange-office")
            && msg.contains("brokers"),
        "{msg}"
    );
    assert!(!dir.join("civil-affairs-broker.pem").exists());

    // A cluster names its brokers at init.
    let cluster = temp_dir("brokers-cluster");
    let names = [
        DeptId::new("exchange-a").unwrap(),
        DeptId::new("exchange-b").unwrap(),
    ];
    init_with_brokers(&cluster, "gov.example", &names).unwrap();
    assert_eq!(brokers(&cluster).unwrap(), names);
    issue(&cluster, &IssueOptions::new(names[1].clone(), Role::Broker)).unwrap();
    assert!(
        issue(
            &cluster,
            &IssueOptions::new(DeptId::new(DEFAULT_BROKER_DEPT).unwrap(), Role::Broker)
        )
        .is_err()
    );
    // A CA made before the list existed has the default broker.
    fs::remove_file(dir.join(BROKERS)).unwrap();
    assert_eq!(
        brokers(&dir).unwrap(),
        [DeptId::new(DEFAULT_BROKER_DEPT).unwrap()]
    );
    fs::remove_dir_all(&dir).unwrap();
    fs::remove_dir_all(&cluster).unwrap();
}

#[test]
fn hex_round_trips() {
    assert_eq!(hex(&[0x01, 0xab]), "01ab");
    assert_eq!(unhex("01ab"), Some(vec![0x01, 0xab]));
    assert_eq!(unhex("1ab"), Some(vec![0x01, 0xab]));
    assert_eq!(unhex("zz"), None);
}
