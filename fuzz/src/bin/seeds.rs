//! Writes the seed corpus, `fuzz/corpus/<target>/`, from the repository's own examples and
//! from real artefacts the code makes (a log written through `Log::append`, its checkpoint and
//! proofs, an export bundle, a CA with a certificate and a CRL, the adapter's own answers).
//!
//! Run from `fuzz/` without fuzzing instrumentation (bench/fuzz.sh --seeds does):
//! `cargo run --features seeds --bin seeds -- corpus`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use huitong_adapter::{AdapterService, ServeOptions};
use huitong_audit::bundle::{self, Consistency};
use huitong_audit::store::{CHECKPOINT_FILE, ENTRIES_FILE, INDEX_FILE, KEY_FILE};
use huitong_audit::{Log, LogOptions};
use huitong_core::DeptId;
use huitong_fuzz::*;
use huitong_proto::convert;
use huitong_proto::v1::adapter_server::Adapter;
use huitong_proto::v1::{self, Value};
use huitong_tls::Role;
use huitong_tls::pki::{self, IssueOptions};
use prost::Message;
use tonic::Request;

struct Corpus {
    root: PathBuf,
    written: usize,
}

impl Corpus {
    fn put(&mut self, target: &str, name: &str, data: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), data).unwrap();
        self.written += 1;
    }

    /// A selector byte, then the bytes: the layout of the targets that take several kinds.
    fn put_sel(&mut self, target: &str, name: &str, sel: u8, data: &[u8]) {
        let mut v = vec![sel];
        v.extend_from_slice(data);
        self.put(target, name, &v);
    }
}

fn text(s: &str) -> Value {
    Value::string(s)
}

fn first_json(jsonl: &str) -> serde_json::Value {
    serde_json::from_str(jsonl.lines().next().unwrap()).unwrap()
}

fn spec_index(name: &str) -> u8 {
    example_specs()
        .iter()
        .position(|s| s.id().name().as_str() == name)
        .unwrap() as u8
}

fn main() {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    let mut c = Corpus { root, written: 0 };
    let person = first_json(HOUSEHOLD_JSONL);
    let id = person["id_number"].as_str().unwrap().to_owned();
    let rt = runtime();

    // --- exchange_request
    let key_query = v1::QueryRequest {
        resource: "public-security/household-register".into(),
        key: HashMap::from([("id_number".into(), text(&id))]),
        fields: vec!["name".into(), "birth_date".into(), "marital_status".into()],
        purpose: "婚姻登记 marriage registration".into(),
        ..Default::default()
    };
    c.put_sel(
        "exchange_request",
        "query-key",
        0,
        &key_query.encode_to_vec(),
    );
    let filter_query = v1::QueryRequest {
        resource: "market-regulation/business-licences".into(),
        filters: vec![v1::Filter {
            field: "legal_representative_id".into(),
            value: Some(text(&id)),
        }],
        fields: vec!["name".into(), "registered_capital".into(), "status".into()],
        purpose: "纳税登记 tax registration".into(),
        page_size: 10,
        page_token: "1".into(),
        ..Default::default()
    };
    c.put_sel(
        "exchange_request",
        "query-filter",
        0,
        &filter_query.encode_to_vec(),
    );
    let date_query = v1::QueryRequest {
        resource: "civil-affairs/marriage-registrations".into(),
        filters: vec![v1::Filter {
            field: "registered_on".into(),
            value: Some(Value::date(1979, 6, 16)),
        }],
        fields: vec!["registration_no".into()],
        purpose: "户籍变更登记 household register change".into(),
        ..Default::default()
    };
    c.put_sel(
        "exchange_request",
        "query-date",
        0,
        &date_query.encode_to_vec(),
    );
    let sub = v1::SubscribeRequest {
        resource: "public-security/household-register".into(),
        subscription: "pensions-1".into(),
        fields: vec!["id_number".into(), "status".into()],
        purpose: "养老金发放 pension payment".into(),
        after: Some(0),
    };
    c.put_sel("exchange_request", "subscribe", 1, &sub.encode_to_vec());
    let ack = v1::AcknowledgeRequest {
        resource: sub.resource.clone(),
        subscription: sub.subscription.clone(),
        sequence: 42,
    };
    c.put_sel("exchange_request", "acknowledge", 2, &ack.encode_to_vec());
    let list = v1::ListCatalogueRequest {
        provider: "civil-affairs".into(),
    };
    c.put_sel(
        "exchange_request",
        "list-catalogue",
        3,
        &list.encode_to_vec(),
    );

    // --- adapter_request and adapter_response: the example adapter's own answers.
    let dir = scratch("seeds-adapter");
    let config = example_adapter(PUBLIC_SECURITY_TOML, &dir);
    let svc = AdapterService::new(
        config.dept().clone(),
        config.into_source().unwrap(),
        &ServeOptions::default(),
    )
    .unwrap();
    let fetch = v1::FetchRequest {
        resource: "household-register".into(),
        key: HashMap::from([("id_number".into(), text(&id))]),
        fields: vec!["name".into(), "address".into(), "birth_date".into()],
    };
    c.put_sel("adapter_request", "fetch", 0, &fetch.encode_to_vec());
    let search = v1::SearchRequest {
        resource: "public-security/household-register".into(),
        filters: vec![v1::Filter {
            field: "marital_status".into(),
            value: Some(text("single")),
        }],
        fields: vec!["id_number".into(), "name".into()],
        page_size: 3,
        page_token: String::new(),
    };
    c.put_sel("adapter_request", "search", 1, &search.encode_to_vec());
    let watch = v1::WatchChangesRequest {
        resource: "household-register".into(),
        cursor: String::new(),
    };
    c.put_sel("adapter_request", "watch", 2, &watch.encode_to_vec());

    let describe = rt
        .block_on(svc.describe(Request::new(v1::DescribeRequest {})))
        .unwrap()
        .into_inner();
    c.put_sel("adapter_response", "describe", 0, &describe.encode_to_vec());
    let fetched = rt
        .block_on(svc.fetch(Request::new(fetch.clone())))
        .unwrap()
        .into_inner();
    c.put_sel("adapter_response", "fetch", 1, &fetched.encode_to_vec());
    let searched = rt
        .block_on(svc.search(Request::new(search.clone())))
        .unwrap()
        .into_inner();
    c.put_sel("adapter_response", "search", 2, &searched.encode_to_vec());
    let change = v1::ChangeEvent {
        resource: "public-security/household-register".into(),
        key: fetch.key.clone(),
        record: fetched.record.clone(),
        cursor: "7".into(),
    };
    c.put_sel("adapter_response", "change", 3, &change.encode_to_vec());
    c.put_sel(
        "adapter_response",
        "not-found",
        4,
        &join_sections(&[&[5], b"no record with that key"]),
    );

    // --- admin_audit_request
    let file = v1::FileAccessRequestRequest {
        resource: "public-security/household-register".into(),
        fields: vec!["name".into(), "address".into(), "status".into()],
        purposes: vec!["养老金发放 pension payment".into()],
        legal_basis: "《社会保险法》第十六条".into(),
        duration_days: 365,
    };
    let approve = v1::ApproveAccessRequestRequest {
        id: "AR-1".into(),
        fields: vec!["name".into(), "address".into()],
        masks: HashMap::from([("address".into(), "address".into())]),
    };
    let deny = v1::DenyAccessRequestRequest {
        id: "AR-1".into(),
        reason: "the purpose does not need the address".into(),
    };
    c.put_sel(
        "admin_audit_request",
        "file-approve-deny",
        0,
        &join_sections(&[
            &file.encode_to_vec(),
            &approve.encode_to_vec(),
            &deny.encode_to_vec(),
        ]),
    );
    let states = v1::ListAccessRequestsRequest {
        overdue_only: true,
        state: v1::AccessRequestState::Pending as i32,
    };
    c.put_sel(
        "admin_audit_request",
        "list-requests",
        1,
        &states.encode_to_vec(),
    );
    let policy = scratch("seeds-policy").join("policy.toml");
    write(&policy, POLICY_TOML.as_bytes());
    let now = std::time::SystemTime::now();
    for (i, g) in huitong_broker::policy::load_policy_file(&policy)
        .unwrap()
        .iter()
        .enumerate()
    {
        c.put_sel(
            "admin_audit_request",
            &format!("grant-{i}"),
            2,
            &convert::grant_to_wire(g, now).encode_to_vec(),
        );
    }
    let spec = example_specs()
        .iter()
        .find(|s| s.id().name().as_str() == "household-register")
        .unwrap();
    let mut request = huitong_core::AccessRequest::file(
        huitong_core::AccessRequestForm {
            id: "AR-7".into(),
            consumer: DeptId::new("human-resources").unwrap(),
            fields: file.fields.clone(),
            purposes: file.purposes.clone(),
            legal_basis: file.legal_basis.clone(),
            duration_days: 30,
        },
        spec,
        now,
        10,
        &Default::default(),
    )
    .unwrap();
    c.put_sel(
        "admin_audit_request",
        "request-pending",
        3,
        &convert::request_to_wire(&request, now).encode_to_vec(),
    );
    request
        .deny(spec.id().provider(), now, "not needed")
        .unwrap();
    c.put_sel(
        "admin_audit_request",
        "request-denied",
        3,
        &convert::request_to_wire(&request, now).encode_to_vec(),
    );

    // --- a real log: the files log_dir opens, the proofs, the notes, the bundle.
    let log_dir = scratch("seeds-log");
    reset(&log_dir);
    write(
        &log_dir.join(KEY_FILE),
        log_signer().to_skey_string().as_bytes(),
    );
    let options = LogOptions {
        origin: LOG_ORIGIN.into(),
        key_name: LOG_ORIGIN.into(),
        max_batch: 16,
    };
    let log = Log::open(&log_dir, options).unwrap();
    let mut payloads = Vec::new();
    for (i, line) in HOUSEHOLD_JSONL.lines().take(5).enumerate() {
        let record = v1::ExchangeRecord {
            time_micros: 1_790_000_000_000_000 + i as i64,
            request_id: format!("19a2b3c-{i:06x}"),
            kind: "query".into(),
            consumer: "civil-affairs".into(),
            provider: "public-security".into(),
            resource: "public-security/household-register".into(),
            purpose: "婚姻登记 marriage registration".into(),
            fields: vec!["name".into(), "marital_status".into()],
            outcome: if i == 3 { "refused" } else { "answered" }.into(),
            status_code: if i == 3 { 7 } else { 0 },
            answer_digest: huitong_audit::merkle::leaf_hash(line.as_bytes()).to_vec(),
            subject: vec![i as u8; 32],
            subject_period: "2026-09".into(),
            grant_id: "policy-file-1".into(),
            record_count: 1,
            ..Default::default()
        };
        let payload = record.encode_to_vec();
        rt.block_on(log.append(payload.clone())).unwrap();
        payloads.push(payload);
        if i == 1 {
            log.checkpoint().unwrap();
        }
    }
    let old = log.latest_checkpoint().unwrap();
    let checkpoint = log.checkpoint().unwrap();
    let size = log.size();
    let inclusion = v1::InclusionProof {
        index: 2,
        tree_size: size,
        leaf_hash: log.leaf_hash(2).unwrap().to_vec(),
        hashes: log
            .inclusion_proof(2, size)
            .unwrap()
            .iter()
            .map(|h| h.to_vec())
            .collect(),
    };
    let consistency = v1::ConsistencyProof {
        old_size: old.size,
        new_size: size,
        hashes: log
            .consistency_proof(old.size, size)
            .unwrap()
            .iter()
            .map(|h| h.to_vec())
            .collect(),
    };
    let entries_req = v1::ListEntriesRequest {
        start: 0,
        end: 5,
        consumer: "civil-affairs".into(),
        resource: "public-security/household-register".into(),
        outcome: "refused".into(),
        since_micros: 1_790_000_000_000_000,
        limit: 100,
        ..Default::default()
    };
    let report = v1::SubjectReportRequest {
        resource: "public-security/household-register".into(),
        key: HashMap::from([("id_number".into(), format!(" {} ", id.to_lowercase()))]),
        start: 0,
        ..Default::default()
    };
    c.put_sel(
        "admin_audit_request",
        "audit-entries-report-inclusion",
        4,
        &join_sections(&[
            &entries_req.encode_to_vec(),
            &report.encode_to_vec(),
            &inclusion.encode_to_vec(),
            &payloads[2],
        ]),
    );
    c.put_sel(
        "admin_audit_request",
        "consistency",
        5,
        &join_sections(&[
            &consistency.encode_to_vec(),
            &join_sections(&[&old.root, &checkpoint.root]),
        ]),
    );
    let hashes = log.leaf_hashes(0, size).unwrap();
    let cons_proof = log.consistency_proof(old.size, size).unwrap();
    rt.block_on(log.close());
    drop(log);

    let read = |name: &str| std::fs::read(log_dir.join(name)).unwrap_or_default();
    let (entries, index, note) = (read(ENTRIES_FILE), read(INDEX_FILE), read(CHECKPOINT_FILE));
    let body_of = |note: &[u8]| {
        let s = String::from_utf8_lossy(note).into_owned();
        s.split_once("\n\n").map(|(b, _)| format!("{b}\n")).unwrap()
    };
    let body = body_of(&note);
    c.put(
        "log_dir",
        "whole",
        &[&[3u8][..], &join_sections(&[&entries, &index, &note])].concat(),
    );
    c.put(
        "log_dir",
        "no-index",
        &[&[2u8][..], &join_sections(&[&entries, &[], &note])].concat(),
    );
    c.put(
        "log_dir",
        "no-checkpoint",
        &[&[1u8][..], &join_sections(&[&entries, &index])].concat(),
    );
    let torn = &entries[..entries.len() - 7];
    c.put(
        "log_dir",
        "torn-tail",
        &[&[3u8][..], &join_sections(&[torn, &index, &note])].concat(),
    );
    c.put(
        "log_dir",
        "body-to-sign",
        &[
            &[7u8][..],
            &join_sections(&[&entries, &index, body.as_bytes()]),
        ]
        .concat(),
    );
    c.put(
        "log_dir",
        "own-key",
        &[
            &[9u8][..],
            &join_sections(&[&entries, &[], &[], log_signer().to_skey_string().as_bytes()]),
        ]
        .concat(),
    );

    c.put_sel("signed_note", "body", 0, body.as_bytes());
    c.put_sel("signed_note", "checkpoint", 1, &note);
    c.put_sel("signed_note", "old-checkpoint", 1, old.note.as_bytes());
    c.put_sel(
        "signed_note",
        "vkey-and-note",
        2,
        &join_sections(&[log_signer().verifier_key().as_bytes(), &note]),
    );
    c.put_sel(
        "signed_note",
        "skey",
        3,
        log_signer().to_skey_string().as_bytes(),
    );
    c.put_sel("signed_note", "text-to-sign", 4, body.as_bytes());

    let bundle_dir = scratch("seeds-bundle");
    reset(&bundle_dir);
    bundle::write(
        &bundle_dir,
        &checkpoint.note,
        &payloads,
        &hashes,
        Some(&Consistency {
            old_size: old.size,
            old_root: old.root,
            proof: cons_proof,
        }),
    )
    .unwrap();
    let b = |name: &str| std::fs::read(bundle_dir.join(name)).unwrap_or_default();
    let (bnote, bentries, bhashes, bcons) = (
        b(bundle::CHECKPOINT),
        b(bundle::ENTRIES),
        b(bundle::HASHES),
        b(bundle::CONSISTENCY),
    );
    c.put(
        "export_bundle",
        "whole",
        &[
            &[2u8][..],
            &join_sections(&[&bnote, &bentries, &bhashes, &bcons]),
        ]
        .concat(),
    );
    c.put(
        "export_bundle",
        "no-consistency",
        &[&[0u8][..], &join_sections(&[&bnote, &bentries, &bhashes])].concat(),
    );
    c.put(
        "export_bundle",
        "harness-root",
        &[
            &[6u8][..],
            &join_sections(&[&[size as u8], &bentries, &bhashes, &bcons]),
        ]
        .concat(),
    );
    c.put(
        "export_bundle",
        "body-to-sign",
        &[
            &[1u8][..],
            &join_sections(&[body_of(&bnote).as_bytes(), &bentries, &bhashes]),
        ]
        .concat(),
    );

    // --- pem_crl: a CA, a certificate, its key, an empty and a non-empty CRL.
    let pki_dir = scratch("seeds-pki");
    reset(&pki_dir);
    pki::init(&pki_dir, "fuzz.invalid").unwrap();
    let adapter = pki::issue(
        &pki_dir,
        &IssueOptions::new(DeptId::new("public-security").unwrap(), Role::Adapter),
    )
    .unwrap();
    let consumer = pki::issue(
        &pki_dir,
        &IssueOptions::new(DeptId::new("civil-affairs").unwrap(), Role::Consumer),
    )
    .unwrap();
    let p = |path: &Path| std::fs::read(path).unwrap();
    c.put_sel("pem_crl", "ca", 0, &p(&pki_dir.join(pki::CA_CERT)));
    c.put_sel("pem_crl", "cert", 1, &p(&adapter.cert));
    c.put_sel("pem_crl", "key", 2, &p(&adapter.key));
    c.put_sel("pem_crl", "crl-empty", 3, &p(&pki_dir.join(pki::CRL)));
    let consumer_pem = p(&consumer.cert);
    pki::revoke(&pki_dir, &consumer.cert, "key compromise").unwrap();
    c.put_sel("pem_crl", "crl-one", 3, &p(&pki_dir.join(pki::CRL)));
    let der = |pem: &[u8]| -> Vec<u8> {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_slice(pem)
            .unwrap()
            .to_vec()
    };
    let chain = join_sections(&[&der(&consumer_pem), &der(&p(&pki_dir.join(pki::CA_CERT)))]);
    c.put_sel("pem_crl", "chain", 4, &chain);
    c.put_sel("pem_crl", "der", 5, &der(&consumer_pem));

    // --- configuration and policy files, as shipped.
    c.put("broker_config", "example", BROKER_TOML.as_bytes());
    for (name, t) in [
        ("public-security", PUBLIC_SECURITY_TOML),
        ("civil-affairs", CIVIL_AFFAIRS_TOML),
        ("market-regulation", MARKET_REGULATION_TOML),
    ] {
        c.put("adapter_config", name, t.as_bytes());
    }
    let csv_config = PUBLIC_SECURITY_TOML.replacen(
        "kind = \"jsonl\"\npath = \"data/household-register.jsonl\"",
        "kind = \"csv\"\npath = \"data/household-register.csv\"\ndelimiter = \";\"\ncolumns = { id_number = \"身份证号\" }",
        1,
    );
    c.put("adapter_config", "csv-source", csv_config.as_bytes());
    c.put("policy_file", "example", POLICY_TOML.as_bytes());

    // --- file_source: every example file, and the household register as CSV.
    for (name, jsonl) in [
        ("household-register", HOUSEHOLD_JSONL),
        ("criminal-records", CRIMINAL_JSONL),
        ("marriage-registrations", MARRIAGES_JSONL),
        ("business-licences", LICENCES_JSONL),
    ] {
        let short: String = jsonl.lines().take(6).map(|l| format!("{l}\n")).collect();
        c.put_sel(
            "file_source",
            &format!("{name}-jsonl"),
            spec_index(name) << 2,
            short.as_bytes(),
        );
    }
    let spec = &example_specs()[spec_index("household-register") as usize];
    let header: Vec<&str> = spec.fields().iter().map(|f| f.name.as_str()).collect();
    let mut csv = format!("\u{feff}{}\r\n", header.join(","));
    for line in HOUSEHOLD_JSONL.lines().take(6) {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let cells: Vec<String> = header
            .iter()
            .map(|h| match row[*h].as_str() {
                Some(s) if s.contains(',') || s.contains('"') => {
                    format!("\"{}\"", s.replace('"', "\"\""))
                }
                Some(s) => s.to_owned(),
                None => String::new(),
            })
            .collect();
        csv.push_str(&cells.join(","));
        csv.push_str("\r\n");
    }
    c.put_sel(
        "file_source",
        "household-register-csv",
        spec_index("household-register") << 2 | 2,
        csv.as_bytes(),
    );
    let semicolon = csv.replace(',', ";").replacen("id_number", "身份证号", 1);
    let mut opts = vec![b';'];
    opts.extend_from_slice("身份证号".as_bytes());
    c.put_sel(
        "file_source",
        "household-register-csv-options",
        spec_index("household-register") << 2 | 3,
        &join_sections(&[&opts, semicolon.as_bytes()]),
    );

    // --- normalise_key
    c.put(
        "normalise_key",
        "id-number",
        &join_sections(&[b"id_number", format!(" {} ", id.to_lowercase()).as_bytes()]),
    );
    c.put(
        "normalise_key",
        "two-fields",
        &join_sections(&[b"surname", "li".as_bytes(), b"birth_date", b"1990-01-02"]),
    );
    c.put(
        "normalise_key",
        "full-width",
        &join_sections(&[
            b"id_number",
            "１１０１０５ １９４９-１２３１ ００２ｘ".as_bytes(),
        ]),
    );

    println!("wrote {} seeds under {}", c.written, c.root.display());
}
