//! The exchange CA on disk: create it, issue certificates, revoke them.
//!
//! A CA directory holds:
//!
//! | file           | content                                                         |
//! |----------------|-----------------------------------------------------------------|
//! | `ca.pem`       | the CA certificate (the trust anchor every party is given)       |
//! | `ca.key`       | the CA's private key, mode 0600                                  |
//! | `trust-domain` | the trust domain, one line                                       |
//! | `crl.pem`      | the current CRL, signed by the CA; servers reload it on change   |
//! | `revoked.txt`  | what the CRL is made from: one revoked certificate per line      |
//!
//! and the certificates it issued, `<dept>-<role>.pem` with `<dept>-<role>.key`.
//!
//! All keys are ECDSA P-256. The CA may sign only end-entity certificates (path length 0):
//! there are no intermediates, so a stolen department key can never mint identities.

use std::fmt::Write as _;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use huitong_core::DeptId;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use rustls_pki_types::DnsName;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::files;
use crate::identity::check_trust_domain;
use crate::time::{DAY, asn1, unix_now};
use crate::{Error, PeerId, Role};

/// The CA certificate.
pub const CA_CERT: &str = "ca.pem";
/// The CA private key.
pub const CA_KEY: &str = "ca.key";
/// The trust domain, as text.
pub const TRUST_DOMAIN: &str = "trust-domain";
/// The current certificate revocation list.
pub const CRL: &str = "crl.pem";
/// The revocation register the CRL is made from.
pub const REVOKED: &str = "revoked.txt";
/// The departments that run the exchange's brokers, one per line: the only ones `issue` gives
/// a broker certificate, because adapters serve broker certificates of these alone.
pub const BROKERS: &str = "brokers";
/// The department of the exchange's broker when the CA directory names none: the exchange
/// office, as the demo and `deploy/` name it.
pub const DEFAULT_BROKER_DEPT: &str = "exchange-office";

/// The CA is valid for ten years; rotating it means re-issuing every certificate.
const CA_VALID_DAYS: i64 = 3650;
/// Certificates start a little in the past so that a peer whose clock is slightly behind the
/// CA's does not refuse a certificate issued a moment ago.
const BACKDATE_SECS: i64 = 300;
/// A CRL is re-signed on every revocation, not on a schedule. Huitong's verifiers ignore
/// `nextUpdate` (the file on disk is authoritative); other tools that read the CRL would call
/// it stale after this long.
const CRL_VALID_DAYS: i64 = 365;
/// Serial numbers are 16 random bytes; RFC 5280 allows 20 and asks for at least 8 of entropy.
const SERIAL_BYTES: usize = 16;

/// Certificates for broker and adapter roles name these hosts when none are given, so that the
/// demo and local tests work without options.
pub const DEFAULT_HOSTS: [&str; 2] = ["localhost", "127.0.0.1"];

/// Creates a new exchange CA in `dir`: `ca.pem`, `ca.key` (mode 0600), `trust-domain`, an
/// empty signed `crl.pem`, and `brokers` naming [`DEFAULT_BROKER_DEPT`].
///
/// Refuses to touch a directory that already holds a CA: overwriting the CA key would orphan
/// every certificate in use.
pub fn init(dir: &Path, trust_domain: &str) -> Result<(), Error> {
    let default =
        DeptId::new(DEFAULT_BROKER_DEPT).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    init_with_brokers(dir, trust_domain, &[default])
}

/// As [`init`], with the departments that run the exchange's brokers (one per broker of a
/// cluster, or one shared by all).
pub fn init_with_brokers(dir: &Path, trust_domain: &str, brokers: &[DeptId]) -> Result<(), Error> {
    if brokers.is_empty() {
        return Err(Error::InvalidArgument(
            "name at least one department that runs the exchange's broker".into(),
        ));
    }
    check_trust_domain(trust_domain).map_err(|reason| {
        Error::InvalidArgument(format!(
            "trust domain {trust_domain:?} is not valid: {reason}"
        ))
    })?;
    fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    if dir.join(CA_CERT).exists() || dir.join(CA_KEY).exists() {
        return Err(Error::CaExists { dir: dir.into() });
    }

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| Error::Generate {
        what: "the CA key",
        source,
    })?;
    let now = unix_now();
    // A random tag makes each CA's name unique, so that a certificate from another CA of the
    // same trust domain (a test CA, a rotated one) is told apart by name and reported as
    // "not issued by this CA" rather than as a bad signature.
    let mut tag = [0u8; 6];
    fill_random(&mut tag)?;
    let common_name = format!("Huitong exchange CA {}", hex(&tag));
    let mut params = ca_params(&common_name, trust_domain);
    params.not_before = asn1(now - BACKDATE_SECS)?.to_datetime();
    params.not_after = asn1(now + CA_VALID_DAYS * DAY)?.to_datetime();
    params.serial_number = Some(random_serial()?);
    let cert = params.self_signed(&key).map_err(|source| Error::Generate {
        what: "the CA certificate",
        source,
    })?;

    // The key is created first and with create_new, so two concurrent `init`s cannot both win.
    files::write_new(&dir.join(CA_KEY), key.serialize_pem().as_bytes(), true).map_err(
        |e| match e {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists => {
                Error::CaExists { dir: dir.into() }
            }
            e => e,
        },
    )?;
    files::write_atomic(&dir.join(CA_CERT), cert.pem().as_bytes(), false)?;
    files::write_atomic(
        &dir.join(TRUST_DOMAIN),
        format!("{trust_domain}\n").as_bytes(),
        false,
    )?;
    let mut listed = String::from(
        "# Departments that run the exchange's brokers, one per line. `huitong pki issue --role\n\
         # broker` issues broker certificates for these alone; every adapter's `brokers` setting\n\
         # must name the same identities.\n",
    );
    for dept in brokers {
        listed.push_str(dept.as_str());
        listed.push('\n');
    }
    files::write_atomic(&dir.join(BROKERS), listed.as_bytes(), false)?;
    let ca = Ca {
        dir: dir.into(),
        trust_domain: trust_domain.into(),
        common_name,
        key,
        cert_der: cert.der().to_vec(),
    };
    ca.write_crl(&[], 0)
}

/// What to issue: one identity and, for servers, the hosts it serves on.
#[derive(Clone, Debug)]
pub struct IssueOptions {
    pub dept: DeptId,
    pub role: Role,
    /// Validity in days from now (default 397, within the CA/Browser Forum's 398-day limit).
    pub valid_days: u32,
    /// DNS names or IP literals the certificate is valid for as a server. When empty, broker and
    /// adapter certificates get [`DEFAULT_HOSTS`]; other roles get none.
    pub hosts: Vec<String>,
    /// Start the validity this many days in the past (0 normally). With a small `valid_days`
    /// this makes an already expired certificate, for tests.
    pub not_before_days_ago: u32,
    /// Replace an existing certificate and key for the identity, keeping them as
    /// `<dept>-<role>.old.pem` and `.old.key` (so that the old one can still be revoked).
    /// Without it an existing pair is refused.
    pub replace: bool,
}

impl IssueOptions {
    /// The defaults: valid for 397 days from now, default hosts.
    pub fn new(dept: DeptId, role: Role) -> IssueOptions {
        IssueOptions {
            dept,
            role,
            valid_days: 397,
            hosts: Vec::new(),
            not_before_days_ago: 0,
            replace: false,
        }
    }
}

/// The departments that run the exchange's brokers, from `<dir>/brokers`; a CA directory
/// without the file (made before it existed) has [`DEFAULT_BROKER_DEPT`].
pub fn brokers(dir: &Path) -> Result<Vec<DeptId>, Error> {
    let path = dir.join(BROKERS);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return DeptId::new(DEFAULT_BROKER_DEPT)
                .map(|d| vec![d])
                .map_err(|e| Error::InvalidArgument(e.to_string()));
        }
        Err(e) => return Err(Error::io("read", path, e)),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let dept =
            DeptId::new(line).map_err(|e| Error::file(&path, format!("line {}: {e}", i + 1)))?;
        out.push(dept);
    }
    if out.is_empty() {
        return Err(Error::file(
            &path,
            format!("it names no department; write the broker's, e.g. {DEFAULT_BROKER_DEPT}"),
        ));
    }
    Ok(out)
}

/// The files [`issue`] wrote, and the identity they carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// `<dir>/<dept>-<role>.pem`: the certificate.
    pub cert: PathBuf,
    /// `<dir>/<dept>-<role>.key`: its private key, mode 0600.
    pub key: PathBuf,
    pub id: PeerId,
}

/// Issues a certificate for `opts.dept` in `opts.role`, signed by the CA in `dir`, and writes
/// it to `<dir>/<dept>-<role>.pem` with its key in `<dir>/<dept>-<role>.key` (mode 0600).
///
/// An existing pair for the same identity is refused unless `opts.replace` (renewal); then the
/// old pair is kept as `<dept>-<role>.old.pem` and `.old.key`, and the old certificate stays
/// valid until it expires or is revoked with [`revoke`].
///
/// A broker certificate is issued only for a department listed in `<dir>/brokers` ([`brokers`]):
/// adapters serve the exchange's brokers by identity, and a broker certificate for an ordinary
/// department would be useless at best and a way around the broker's policy at worst.
pub fn issue(dir: &Path, opts: &IssueOptions) -> Result<Issued, Error> {
    let ca = Ca::load(dir)?;
    if opts.valid_days == 0 {
        return Err(Error::InvalidArgument(
            "a certificate must be valid for at least one day".into(),
        ));
    }
    if opts.role == Role::Broker {
        let brokers = brokers(dir)?;
        if !brokers.contains(&opts.dept) {
            let names: Vec<&str> = brokers.iter().map(DeptId::as_str).collect();
            return Err(Error::InvalidArgument(format!(
                "{} does not run the exchange's broker, so it gets no broker certificate: \
                 adapters serve only the brokers the exchange names ({}, listed in {}). \
                 Issue it a consumer certificate to query through the broker; to add a \
                 broker, add its department to {} and to `brokers` in every adapter's config",
                opts.dept,
                names.join(", "),
                dir.join(BROKERS).display(),
                dir.join(BROKERS).display(),
            )));
        }
    }
    let id = PeerId {
        trust_domain: ca.trust_domain.clone(),
        dept: opts.dept.clone(),
        role: opts.role,
    };

    let hosts: Vec<String> = if opts.hosts.is_empty() && opts.role.serves() {
        DEFAULT_HOSTS.iter().map(|h| (*h).to_owned()).collect()
    } else {
        opts.hosts.clone()
    };
    let mut sans = vec![SanType::URI(ia5(&id.uri())?)];
    for host in &hosts {
        sans.push(host_san(host)?);
    }

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{} {}", id.dept, id.role));
    dn.push(DnType::OrganizationName, ca.trust_domain.as_str());
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    let start = unix_now() - i64::from(opts.not_before_days_ago) * DAY;
    params.not_before = asn1(start - BACKDATE_SECS)?.to_datetime();
    params.not_after = asn1(start + i64::from(opts.valid_days) * DAY)?.to_datetime();
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Every party is a TLS client of someone (the broker calls adapters); only parties that
    // listen get the server usage, so a consumer's certificate cannot impersonate a server.
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if opts.role.serves() || !hosts.is_empty() {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    params.use_authority_key_identifier_extension = true;

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| Error::Generate {
        what: "a key",
        source,
    })?;
    let cert = params
        .signed_by(&key, &ca.issuer())
        .map_err(|source| Error::Generate {
            what: "the certificate",
            source,
        })?;
    ca.check_issued(cert.der())?;

    let stem = format!("{}-{}", id.dept, id.role);
    let cert_path = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}.key"));
    keep_old_pair(&cert_path, &key_path, &stem, opts.replace)?;
    files::write_atomic(&key_path, key.serialize_pem().as_bytes(), true)?;
    files::write_atomic(&cert_path, cert.pem().as_bytes(), false)?;
    Ok(Issued {
        cert: cert_path,
        key: key_path,
        id,
    })
}

/// Refuses an existing certificate or key at `cert`/`key` unless `replace`; with it, renames
/// them to `<stem>.old.pem` and `<stem>.old.key`.
fn keep_old_pair(cert: &Path, key: &Path, stem: &str, replace: bool) -> Result<(), Error> {
    let existing: Vec<&Path> = [cert, key].into_iter().filter(|p| p.exists()).collect();
    if existing.is_empty() {
        return Ok(());
    }
    if !replace {
        return Err(Error::CertExists {
            path: existing[0].to_owned(),
        });
    }
    for (path, old) in [
        (cert, format!("{stem}.old.pem")),
        (key, format!("{stem}.old.key")),
    ] {
        if path.exists() {
            let old = path.with_file_name(old);
            fs::rename(path, &old).map_err(|e| Error::io("rename into place", old, e))?;
        }
    }
    Ok(())
}

/// Revokes the certificate in `cert_pem`: adds its serial to `<dir>/revoked.txt` and rewrites
/// `<dir>/crl.pem`, signed by the CA, with a higher CRL number. The CRL is replaced atomically,
/// and servers pick it up within about a second.
///
/// `reason` is either an RFC 5280 reason name (`unspecified`, `key-compromise`,
/// `affiliation-changed`, `superseded`, `cessation-of-operation`, `certificate-hold`,
/// `privilege-withdrawn`), which goes into the CRL, or free text, which is kept in
/// `revoked.txt` with the CRL reason `unspecified`. Revoking a certificate twice is harmless.
///
/// Run one `revoke` at a time per CA directory: the register is read, extended and rewritten,
/// so two at once could lose one of the entries.
pub fn revoke(dir: &Path, cert_pem: &Path, reason: &str) -> Result<(), Error> {
    let ca = Ca::load(dir)?;
    let certs = files::certs(cert_pem)?;
    let leaf = certs
        .first()
        .ok_or_else(|| Error::file(cert_pem, "no certificate"))?;
    let (_, cert) = X509Certificate::from_der(leaf)
        .map_err(|_| Error::file(cert_pem, "the certificate cannot be parsed"))?;
    let (_, ca_cert) = X509Certificate::from_der(&ca.cert_der)
        .map_err(|_| Error::file(dir.join(CA_CERT), "the CA certificate cannot be parsed"))?;
    if cert.issuer().as_raw() != ca_cert.subject().as_raw() {
        return Err(Error::file(
            cert_pem,
            format!(
                "it was not issued by the CA in {}, so that CA cannot revoke it",
                dir.display()
            ),
        ));
    }
    let serial = hex(&cert.tbs_certificate.serial.to_bytes_be());
    let who = crate::identity::peer_id_of_parsed(&cert)
        .map(|id| id.uri())
        .unwrap_or_else(|_| "-".into());
    record_revocation(dir, &ca, serial, &who, reason)
}

/// Revokes the certificate with serial number `serial` (hex, as `huitong pki list` prints
/// it; colons and a `0x` prefix are ignored), for when the PEM file is gone, e.g. overwritten
/// by a re-issue. Only a serial of a certificate in `dir` is accepted, so that a typo cannot
/// pass for a revocation.
pub fn revoke_serial(dir: &Path, serial: &str, reason: &str) -> Result<(), Error> {
    let ca = Ca::load(dir)?;
    let wanted: String = serial
        .trim()
        .trim_start_matches("0x")
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    let wanted = wanted.trim_start_matches('0');
    if wanted.is_empty() || !wanted.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::InvalidArgument(format!(
            "--serial {serial:?} is not a hexadecimal serial number as `huitong pki list` prints it"
        )));
    }
    let found = list(dir)?
        .into_iter()
        .find(|c| c.issued_by_ca && c.serial.trim_start_matches('0') == wanted)
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "no certificate of the CA in {} has serial {serial}; see `huitong pki list --dir {}`, \
                 or revoke with --cert FILE",
                dir.display(),
                dir.display()
            ))
        })?;
    let who = found.id.map(|id| id.uri()).unwrap_or_else(|| "-".into());
    record_revocation(dir, &ca, found.serial, &who, reason)
}

fn record_revocation(
    dir: &Path,
    ca: &Ca,
    serial: String,
    who: &str,
    reason: &str,
) -> Result<(), Error> {
    let (code, note) = parse_reason(reason);
    let mut entries = read_register(dir)?;
    if !entries.iter().any(|e| e.serial == serial) {
        entries.push(Revoked {
            serial,
            at: unix_now(),
            code,
            line: None,
        });
        let mut register = String::from(REGISTER_HEADER);
        for e in &entries {
            match &e.line {
                Some(line) => register.push_str(line),
                None => {
                    let _ = write!(
                        register,
                        "{}\t{}\t{}\t{}\t{}",
                        e.serial,
                        e.at,
                        reason_name(e.code),
                        who,
                        note
                    );
                }
            }
            register.push('\n');
        }
        // The register is the source of truth; the CRL is derived from it, so it is written
        // first and a failure between the two is repaired by the next revocation.
        files::write_atomic(&dir.join(REVOKED), register.as_bytes(), false)?;
    }
    let previous = ca.crl_number()?;
    ca.write_crl(&entries, previous)
}

const REGISTER_HEADER: &str = "# serial (hex)\trevoked at (Unix time)\treason\tidentity\tnote\n";

struct Revoked {
    serial: String,
    at: i64,
    code: RevocationReason,
    /// The line as read, so that rewriting the register keeps it byte for byte.
    line: Option<String>,
}

fn read_register(dir: &Path) -> Result<Vec<Revoked>, Error> {
    let path = dir.join(REVOKED);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |what: &str| Error::file(&path, format!("line {}: {what}", n + 1));
        let mut cols = line.split('\t');
        let serial = cols
            .next()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| bad("the serial is not hexadecimal"))?;
        let at = cols
            .next()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| bad("the revocation time is not a Unix time"))?;
        let code = cols
            .next()
            .and_then(reason_code)
            .ok_or_else(|| bad("the reason is not an RFC 5280 reason name"))?;
        out.push(Revoked {
            serial: serial.to_ascii_lowercase(),
            at,
            code,
            line: Some(line.to_owned()),
        });
    }
    Ok(out)
}

const REASONS: [(&str, RevocationReason); 7] = [
    ("unspecified", RevocationReason::Unspecified),
    ("key-compromise", RevocationReason::KeyCompromise),
    ("affiliation-changed", RevocationReason::AffiliationChanged),
    ("superseded", RevocationReason::Superseded),
    (
        "cessation-of-operation",
        RevocationReason::CessationOfOperation,
    ),
    ("certificate-hold", RevocationReason::CertificateHold),
    ("privilege-withdrawn", RevocationReason::PrivilegeWithdrawn),
];

fn reason_code(name: &str) -> Option<RevocationReason> {
    REASONS.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

fn reason_name(code: RevocationReason) -> &'static str {
    REASONS
        .iter()
        .find(|(_, c)| *c == code)
        .map_or("unspecified", |(n, _)| n)
}

/// The CRL reason and the note for the register (one line, no tabs).
fn parse_reason(reason: &str) -> (RevocationReason, String) {
    let reason = reason.trim();
    if let Some(code) = reason_code(reason) {
        return (code, String::new());
    }
    let note: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    (RevocationReason::Unspecified, note)
}

/// The CA loaded back from its directory.
struct Ca {
    dir: PathBuf,
    trust_domain: String,
    common_name: String,
    key: KeyPair,
    cert_der: Vec<u8>,
}

/// The CA's subject and usages. `issue` and `revoke` rebuild the issuer from these (the common
/// name read back from `ca.pem`) rather than have rcgen parse `ca.pem`, which needs an rcgen
/// feature this workspace does not enable; [`Ca::check_issued`] then confirms that the rebuilt
/// name matches `ca.pem` byte for byte.
fn ca_params(common_name: &str, trust_domain: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, trust_domain);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.key_identifier_method = KeyIdMethod::Sha256;
    params
}

impl Ca {
    fn load(dir: &Path) -> Result<Ca, Error> {
        for name in [CA_CERT, CA_KEY, TRUST_DOMAIN] {
            let path = dir.join(name);
            if !path.exists() {
                return Err(Error::NoCa {
                    dir: dir.into(),
                    missing: path,
                });
            }
        }
        let td_path = dir.join(TRUST_DOMAIN);
        let trust_domain = fs::read_to_string(&td_path)
            .map_err(|e| Error::io("read", &td_path, e))?
            .trim()
            .to_owned();
        check_trust_domain(&trust_domain).map_err(|r| Error::file(&td_path, r))?;

        let cert_path = dir.join(CA_CERT);
        let cert_der = files::certs(&cert_path)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::file(&cert_path, "no certificate"))?
            .to_vec();
        let key_path = dir.join(CA_KEY);
        let key_pem = fs::read_to_string(&key_path).map_err(|e| Error::io("read", &key_path, e))?;
        // rcgen's parse error names no key bytes, but say it plainly anyway.
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|_| Error::file(&key_path, "it is not a PEM private key rcgen can use"))?;

        let (_, cert) = X509Certificate::from_der(&cert_der)
            .map_err(|_| Error::file(&cert_path, "the CA certificate cannot be parsed"))?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(Error::file(
                &key_path,
                format!("this key does not belong to {}", cert_path.display()),
            ));
        }
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .ok_or_else(|| Error::file(&cert_path, "the CA certificate has no common name"))?
            .to_owned();
        Ok(Ca {
            dir: dir.into(),
            trust_domain,
            common_name,
            key,
            cert_der,
        })
    }

    fn issuer(&self) -> Issuer<'static, &KeyPair> {
        Issuer::new(ca_params(&self.common_name, &self.trust_domain), &self.key)
    }

    fn subject_mismatch(&self) -> Error {
        Error::file(
            self.dir.join(CA_CERT),
            format!(
                "its subject is not that of a Huitong CA for trust domain {:?} (see {}); \
                 was one of the files replaced?",
                self.trust_domain,
                self.dir.join(TRUST_DOMAIN).display()
            ),
        )
    }

    fn ca_subject(&self) -> Result<Vec<u8>, Error> {
        let (_, ca) = X509Certificate::from_der(&self.cert_der)
            .map_err(|_| Error::file(self.dir.join(CA_CERT), "it cannot be parsed"))?;
        Ok(ca.subject().as_raw().to_vec())
    }

    /// Confirms that a certificate we just signed names the CA exactly as `ca.pem` does;
    /// otherwise no verifier would chain it.
    fn check_issued(&self, der: &[u8]) -> Result<(), Error> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|_| Error::InvalidArgument("the new certificate cannot be parsed".into()))?;
        if cert.issuer().as_raw() != self.ca_subject()? {
            return Err(self.subject_mismatch());
        }
        Ok(())
    }

    /// The number of the current CRL, 0 if there is none.
    fn crl_number(&self) -> Result<u64, Error> {
        let path = self.dir.join(CRL);
        if !path.exists() {
            return Ok(0);
        }
        let crls = files::crls(&path)?;
        let Some(der) = crls.first() else {
            return Ok(0);
        };
        let (_, crl) = CertificateRevocationList::from_der(der)
            .map_err(|_| Error::file(&path, "the CRL cannot be parsed"))?;
        match crl.crl_number() {
            Some(n) => u64::try_from(n)
                .map_err(|_| Error::file(&path, "its CRL number is larger than 64 bits")),
            None => Ok(0),
        }
    }

    /// Signs and atomically replaces `crl.pem`. The CRL number is the larger of the previous
    /// number plus one and the current Unix time, so it keeps increasing even if `crl.pem` was
    /// deleted in between.
    fn write_crl(&self, revoked: &[Revoked], previous: u64) -> Result<(), Error> {
        let now = unix_now();
        let number = previous
            .saturating_add(1)
            .max(u64::try_from(now).unwrap_or(0));
        let mut revoked_certs = Vec::with_capacity(revoked.len());
        for r in revoked {
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&unhex(&r.serial).ok_or_else(|| {
                    Error::file(self.dir.join(REVOKED), "a serial is not hexadecimal")
                })?),
                revocation_time: asn1(r.at)?.to_datetime(),
                reason_code: Some(r.code),
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update: asn1(now - BACKDATE_SECS)?.to_datetime(),
            next_update: asn1(now + CRL_VALID_DAYS * DAY)?.to_datetime(),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&self.issuer())
            .map_err(|source| Error::Generate {
                what: "the CRL",
                source,
            })?;
        let (_, parsed) = CertificateRevocationList::from_der(crl.der())
            .map_err(|_| Error::InvalidArgument("the new CRL cannot be parsed".into()))?;
        if parsed.issuer().as_raw() != self.ca_subject()? {
            return Err(self.subject_mismatch());
        }
        let pem = crl.pem().map_err(|source| Error::Generate {
            what: "the CRL",
            source,
        })?;
        files::write_atomic(&self.dir.join(CRL), pem.as_bytes(), false)
    }
}

fn ia5(s: &str) -> Result<rcgen::string::Ia5String, Error> {
    rcgen::string::Ia5String::try_from(s)
        .map_err(|_| Error::InvalidArgument(format!("{s:?} is not ASCII")))
}

fn host_san(host: &str) -> Result<SanType, Error> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    DnsName::try_from(host).map_err(|_| {
        Error::InvalidArgument(format!(
            "host {:?} is neither a DNS name nor an IP address",
            host.chars().take(80).collect::<String>()
        ))
    })?;
    Ok(SanType::DnsName(ia5(host)?))
}

fn fill_random(bytes: &mut [u8]) -> Result<(), Error> {
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(bytes)
        .map_err(|_| Error::InvalidArgument("the system random generator failed".into()))
}

fn random_serial() -> Result<SerialNumber, Error> {
    let mut bytes = [0u8; SERIAL_BYTES];
    fill_random(&mut bytes)?;
    // A positive INTEGER of exactly 16 bytes: top bit clear (else DER adds a 0x00 byte) and
    // first byte non-zero (else DER drops it), so the serial reads back as written.
    bytes[0] &= 0x7f;
    if bytes[0] == 0 {
        bytes[0] = 1;
    }
    Ok(SerialNumber::from_slice(&bytes))
}

/// A certificate on a revocation list, as the list says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSerial {
    /// The certificate's serial number, lowercase hex (as `huitong pki` prints it).
    pub serial: String,
    /// The CRL's reason code (e.g. `KeyCompromise`), or empty when it gives none.
    pub reason: String,
}

/// Every certificate on the revocation list(s) in the PEM file at `crl`, in the list's order.
/// The broker records each newly listed one in the exchange log.
pub fn revoked_serials(crl: &Path) -> Result<Vec<RevokedSerial>, Error> {
    let mut out = Vec::new();
    for der in files::crls(crl)? {
        let (_, list) = CertificateRevocationList::from_der(&der)
            .map_err(|_| Error::file(crl, "the CRL cannot be parsed"))?;
        for rc in list.iter_revoked_certificates() {
            out.push(RevokedSerial {
                serial: hex(&rc.user_certificate.to_bytes_be()),
                reason: rc
                    .reason_code()
                    .map(|(_, code)| code.to_string())
                    .unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

/// A certificate found in a CA directory, as `huitong pki list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The PEM file.
    pub path: PathBuf,
    /// Its Huitong identity; `None` if it has none.
    pub id: Option<PeerId>,
    /// Serial number, lower-case hex.
    pub serial: String,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// In this CA's revocation register.
    pub revoked: bool,
    /// Issued by this directory's CA (a stray PEM of another CA is listed, and said so).
    pub issued_by_ca: bool,
}

/// Every certificate in `dir` but the CA's own (the `.old.pem` pairs kept by a forced re-issue
/// included), sorted by file name.
pub fn list(dir: &Path) -> Result<Vec<CertInfo>, Error> {
    let ca = Ca::load(dir)?;
    let (_, ca_cert) = X509Certificate::from_der(&ca.cert_der)
        .map_err(|_| Error::file(dir.join(CA_CERT), "the CA certificate cannot be parsed"))?;
    let revoked: std::collections::HashSet<String> =
        read_register(dir)?.into_iter().map(|r| r.serial).collect();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("read", dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "pem")
                && p.file_name().is_some_and(|n| n != CA_CERT && n != CRL)
        })
        .collect();
    paths.sort();
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        let certs = files::certs(&path)?;
        let Some(leaf) = certs.first() else {
            continue;
        };
        let (_, cert) = X509Certificate::from_der(leaf)
            .map_err(|_| Error::file(&path, "the certificate cannot be parsed"))?;
        let serial = hex(&cert.tbs_certificate.serial.to_bytes_be());
        out.push(CertInfo {
            id: crate::identity::peer_id_of_parsed(&cert).ok(),
            revoked: revoked.contains(&serial),
            serial,
            not_after: cert.validity().not_after.timestamp(),
            issued_by_ca: cert.issuer().as_raw() == ca_cert.subject().as_raw(),
            path,
        });
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = if s.len() % 2 == 1 {
        format!("0{s}")
    } else {
        s.to_owned()
    };
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests;
