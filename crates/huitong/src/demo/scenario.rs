//! The walkthrough: departments serving citizens by asking each other, each exchange printed as
//! it happens. Every step states what it expects; any surprise makes the demo exit non-zero.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use huitong_client::{
    Admin, Audit, Client, ClientError, Query, QueryResponse, Record, Subscribe, TlsFiles, Value,
};
use huitong_core::DeptId;
use huitong_tls::Role;
use tonic::Code;

use super::data::{DemoData, Person};

/// The certificate files of `dept` in `role` in the demo's PKI directory.
pub fn identity(pki: &Path, dept: &str, role: Role) -> anyhow::Result<TlsFiles> {
    Ok(TlsFiles::from_pki_dir(pki, &DeptId::new(dept)?, role))
}

/// Counts of what happened.
#[derive(Debug, Default)]
pub struct Outcome {
    pub answered: usize,
    pub refused: usize,
    pub surprises: Vec<String>,
}

struct Walk {
    broker: String,
    pki: PathBuf,
    clients: HashMap<String, Client>,
    n: usize,
    outcome: Outcome,
}

/// Shows enough of an ID number to follow the story, never the whole identifier.
pub fn mask_id(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() < 10 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}********{tail}")
}

fn text(r: &Record, field: &str) -> String {
    match r.fields.get(field) {
        Some(v) => match v.to_json() {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        },
        None => "-".into(),
    }
}

/// One exchange as the consumer sees it.
struct Ask<'a> {
    consumer: &'a str,
    resource: &'a str,
    /// How the record is selected, as printed (IDs masked).
    selector: String,
    fields: &'a [&'a str],
    purpose: &'a str,
    query: Query,
}

impl Walk {
    /// The consumer's connection, made on first use with its own certificate.
    async fn client(&mut self, dept: &str) -> Result<&mut Client, ClientError> {
        if !self.clients.contains_key(dept) {
            let files = identity(&self.pki, dept, Role::Consumer)
                .map_err(|e| ClientError::Status(tonic::Status::internal(e.to_string())))?;
            let client = Client::connect(&self.broker, &files).await?;
            self.clients.insert(dept.to_owned(), client);
        }
        self.clients
            .get_mut(dept)
            .ok_or_else(|| ClientError::Status(tonic::Status::internal("no client")))
    }

    async fn admin(&mut self, dept: &str) -> Result<Admin, ClientError> {
        let files = identity(&self.pki, dept, Role::Admin)
            .map_err(|e| ClientError::Status(tonic::Status::internal(e.to_string())))?;
        Admin::connect(&self.broker, &files).await
    }

    async fn run_query(
        &mut self,
        consumer: &str,
        query: Query,
    ) -> Result<QueryResponse, ClientError> {
        self.client(consumer).await?.query(query).await
    }

    fn surprise(&mut self, what: String) {
        println!("      ✗ unexpected: {what}");
        self.outcome.surprises.push(what);
    }

    fn header(&mut self, ask: &Ask<'_>) {
        self.n += 1;
        println!("  [{}] {} → {}", self.n, ask.consumer, ask.resource);
        println!(
            "      purpose: {} · {} · fields: {}",
            if ask.purpose.is_empty() {
                "(none)"
            } else {
                ask.purpose
            },
            ask.selector,
            ask.fields.join(", ")
        );
    }

    /// Runs an exchange that should be answered.
    async fn ask(&mut self, ask: Ask<'_>) -> Option<QueryResponse> {
        self.header(&ask);
        let started = Instant::now();
        match self.run_query(ask.consumer, ask.query).await {
            Ok(answer) => {
                self.outcome.answered += 1;
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                let from = answer
                    .provenance
                    .as_ref()
                    .map_or("", |p| p.provider.as_str());
                // One cached record serves every consumer, minimised and masked for each.
                let cached = match &answer.provenance {
                    Some(p) if p.stale => format!(" (stale cached copy, {} ms old)", p.age_millis),
                    Some(p) if p.from_cache => format!(" (cached copy, {} ms old)", p.age_millis),
                    _ => String::new(),
                };
                println!(
                    "      ← {} record{} from {from}{cached} in {ms:.1} ms (request {}, log entry {})",
                    answer.records.len(),
                    if answer.records.len() == 1 { "" } else { "s" },
                    answer.request_id,
                    answer.receipt.as_ref().map_or(0, |r| r.index)
                );
                if !answer.masked_fields.is_empty() {
                    println!(
                        "        masked under grant {}: {}",
                        answer.grant_id,
                        answer.masked_fields.join(", ")
                    );
                }
                for r in answer.records.iter().take(4) {
                    let shown: Vec<String> = ask
                        .fields
                        .iter()
                        .map(|f| {
                            let v = text(r, f);
                            if f.ends_with("_id") || *f == "id_number" {
                                format!("{f}={}", mask_id(&v))
                            } else {
                                format!("{f}={v}")
                            }
                        })
                        .collect();
                    println!("        {}", shown.join("  "));
                }
                if answer.records.len() > 4 {
                    println!("        … and {} more", answer.records.len() - 4);
                }
                Some(answer)
            }
            Err(e) => {
                println!("      ✗ unexpected: {e}");
                self.outcome
                    .surprises
                    .push(format!("exchange {} failed: {e}", self.n));
                None
            }
        }
    }

    /// Runs an exchange that the broker must refuse with `code`.
    async fn refused(&mut self, ask: Ask<'_>, code: Code) {
        self.header(&ask);
        match self.run_query(ask.consumer, ask.query).await {
            Err(ClientError::Status(s)) if s.code() == code => {
                self.outcome.refused += 1;
                println!(
                    "      ← refused as it should be: {}",
                    ClientError::Status(s)
                );
            }
            Err(e) => {
                println!("      ✗ refused, but not with {code:?}: {e}");
                self.outcome
                    .surprises
                    .push(format!("exchange {}: wanted {code:?}, got {e}", self.n));
            }
            Ok(a) => {
                println!(
                    "      ✗ answered with {} records, but policy forbids it",
                    a.records.len()
                );
                self.outcome
                    .surprises
                    .push(format!("exchange {} was answered", self.n));
            }
        }
    }

    fn decide(&mut self, ok: bool, yes: &str, no: &str, expected: bool) {
        println!("      ⇒ {}", if ok { yes } else { no });
        if ok != expected {
            self.outcome.surprises.push(format!(
                "decision after exchange {} was not the expected one",
                self.n
            ));
        }
    }
}

const REGISTER: &str = "public-security/household-register";
/// The purpose the exchange's policy grants civil affairs the register for.
pub const MARRIAGE_PURPOSE: &str = "婚姻登记 marriage registration";

/// The zone the demo's auditor reads times in: the exchange's own, not the machine's.
pub const DISPLAY_ZONE: &str = "Asia/Shanghai";
const LICENCES: &str = "market-regulation/business-licences";
const MARRIAGES: &str = "civil-affairs/marriage-registrations";

fn person_check<'a>(
    consumer: &'a str,
    p: &Person,
    fields: &'a [&'a str],
    purpose: &'a str,
) -> Ask<'a> {
    Ask {
        consumer,
        resource: REGISTER,
        selector: format!("key id_number={}", mask_id(&p.id_number)),
        fields,
        purpose,
        query: Query::by_key(REGISTER, "id_number", p.id_number.as_str())
            .fields(fields.iter().copied())
            .purpose(purpose),
    }
}

fn age_on(birth: (i32, u32, u32), on: (i32, u32, u32)) -> i32 {
    let mut age = on.0 - birth.0;
    if (on.1, on.2) < (birth.1, birth.2) {
        age -= 1;
    }
    age
}

fn field_is(answer: &Option<QueryResponse>, field: &str, want: &str) -> bool {
    answer
        .as_ref()
        .and_then(|a| a.records.first())
        .and_then(|r| r.fields.get(field))
        .is_some_and(|v| v.as_str() == Some(want))
}

fn birth_of(answer: &Option<QueryResponse>) -> Option<(i32, u32, u32)> {
    let v = answer.as_ref()?.records.first()?.fields.get("birth_date")?;
    match &v.kind {
        Some(huitong_proto::v1::value::Kind::DateValue(d)) => {
            Some((d.year, d.month as u32, d.day as u32))
        }
        _ => None,
    }
}

/// The reference "today" of the synthetic data, so the story is the same every run.
const TODAY: (i32, u32, u32) = (2026, 11, 1);

pub async fn run(broker: &str, pki: &Path, register: &Path, data: &DemoData) -> Outcome {
    let mut w = Walk {
        broker: broker.to_owned(),
        pki: pki.to_owned(),
        clients: HashMap::new(),
        n: 0,
        outcome: Outcome::default(),
    };
    println!(
        "\nEvery party below connects with its own certificate (mutual TLS, SPIFFE identity);"
    );
    println!(
        "the broker takes the consumer's department from that certificate, never from the request."
    );

    println!("\n■ 婚姻登记 A couple registers their marriage at the civil affairs bureau.");
    println!(
        "  They bring no household register booklet (户口本): civil affairs asks public security,"
    );
    println!("  under a grant from the exchange's policy that masks addresses to district level.");
    let (groom, bride) = data.eligible_couple();
    const MARRIAGE_FIELDS: &[&str] = &[
        "name",
        "gender",
        "birth_date",
        "marital_status",
        "status",
        "address",
    ];
    let purpose = MARRIAGE_PURPOSE;
    let g = w
        .ask(person_check(
            "civil-affairs",
            groom,
            MARRIAGE_FIELDS,
            purpose,
        ))
        .await;
    let b = w
        .ask(person_check(
            "civil-affairs",
            bride,
            MARRIAGE_FIELDS,
            purpose,
        ))
        .await;
    let of_age = birth_of(&g).is_some_and(|d| age_on(d, TODAY) >= 22)
        && birth_of(&b).is_some_and(|d| age_on(d, TODAY) >= 20);
    let single =
        field_is(&g, "marital_status", "single") && field_is(&b, "marital_status", "single");
    let alive = field_is(&g, "status", "active") && field_is(&b, "status", "active");
    w.decide(
        of_age && single && alive,
        "both are single, alive and of legal age (男 ≥ 22, 女 ≥ 20): the registration proceeds",
        "the registration cannot proceed",
        true,
    );

    println!(
        "\n■ Another applicant is already married; the register says so before any paper is signed."
    );
    let married = data.married_person();
    let m = w
        .ask(person_check(
            "civil-affairs",
            married,
            MARRIAGE_FIELDS,
            purpose,
        ))
        .await;
    w.decide(
        !field_is(&m, "marital_status", "married"),
        "the registration proceeds",
        "refused: the applicant is recorded as married (《民法典》第一千零五十一条, bigamy)",
        false,
    );
    println!(
        "  Civil affairs finds the existing registration in its own records (a provider needs no grant for its own data):"
    );
    let married_filter = if married.gender.as_str() == "male" {
        "husband_id"
    } else {
        "wife_id"
    };
    w.ask(Ask {
        consumer: "civil-affairs",
        resource: MARRIAGES,
        selector: format!("filter {married_filter}={}", mask_id(&married.id_number)),
        fields: &[
            "registration_no",
            "registered_on",
            "registry_office",
            "status",
        ],
        purpose,
        query: Query::search(MARRIAGES)
            .filter(married_filter, married.id_number.as_str())
            .fields([
                "registration_no",
                "registered_on",
                "registry_office",
                "status",
            ])
            .purpose(purpose),
    })
    .await;

    println!(
        "\n■ 企业开办 Market regulation checks a company founder's identity before issuing a licence."
    );
    let rep = data.multi_business_representative();
    let r = w
        .ask(person_check(
            "market-regulation",
            rep,
            &["name", "birth_date", "status"],
            "营业执照登记 business licence registration",
        ))
        .await;
    w.decide(
        field_is(&r, "status", "active"),
        "identity confirmed from the register, no certified copy needed",
        "identity could not be confirmed",
        true,
    );

    println!(
        "\n■ 共享申请 The tax bureau needs every company a person represents. Business licences are"
    );
    println!(
        "  open (无条件共享), but the representative's ID number is personal: that needs a grant."
    );
    let purpose_tax = "税务登记核查 tax registration check";
    let fields: &[&str] = &["credit_code", "name", "status", "legal_representative_id"];
    let by_rep = |token: &str, page_size: u32| {
        Query::search(LICENCES)
            .filter("legal_representative_id", rep.id_number.as_str())
            .fields(fields.iter().copied())
            .purpose(purpose_tax)
            .page_size(page_size)
            .page_token(token)
    };
    let selector = format!(
        "filter legal_representative_id={} · page size 2",
        mask_id(&rep.id_number)
    );
    w.refused(
        Ask {
            consumer: "taxation",
            resource: LICENCES,
            selector: selector.clone(),
            fields,
            purpose: purpose_tax,
            query: by_rep("", 2),
        },
        Code::PermissionDenied,
    )
    .await;
    let grant = w
        .request_and_decide(
            "taxation",
            LICENCES,
            &[
                "credit_code",
                "name",
                "status",
                "established_on",
                "legal_representative_id",
            ],
            purpose_tax,
            "《中华人民共和国税收征收管理法》第十五条",
            Decide::Approve {
                by: "market-regulation",
                masks: &[("legal_representative_id", "id-number")],
                // The bureau already holds the person's id number; it may find their companies
                // by it, and still receives it masked.
                match_fields: &["legal_representative_id"],
                // Finding every company a person represents is a search by their id number;
                // the resource holds personal fields, so key lookups only unless allowed.
                lookup: Some("search"),
            },
        )
        .await;
    if grant.is_some() {
        let mut token = String::new();
        let mut total = 0;
        for _page in 0..10 {
            let a = w
                .ask(Ask {
                    consumer: "taxation",
                    resource: LICENCES,
                    selector: selector.clone(),
                    fields,
                    purpose: purpose_tax,
                    query: by_rep(&token, 2),
                })
                .await;
            let Some(a) = a else { break };
            total += a.records.len();
            token = a.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        let expected = data
            .businesses
            .iter()
            .filter(|b| b.legal_representative_id == rep.id_number)
            .count();
        w.decide(
            total == expected,
            &format!("{total} companies found, as registered"),
            &format!("found {total}, expected {expected}"),
            true,
        );
    }

    println!("\n■ 养老金资格认证 Social insurance checks that a pensioner is alive before paying.");
    let deceased = data.deceased_person();
    let pension = "养老金资格认证 pension eligibility";
    let d = w
        .ask(person_check(
            "social-insurance",
            deceased,
            &["status"],
            pension,
        ))
        .await;
    w.decide(
        field_is(&d, "status", "active"),
        "payment continues",
        "recorded as deceased: payments stop, no proof of life is demanded from relatives",
        false,
    );

    println!("\n■ 不予共享 What is refused, and how the refusal says so.");
    w.request_and_decide(
        "human-resources",
        REGISTER,
        &["name", "marital_status", "ethnicity"],
        "招聘审查 employment screening",
        "单位内部招聘制度",
        Decide::Deny {
            by: "public-security",
            reason: "招聘审查不属于户籍信息共享的法定用途: employment screening is not a lawful use of household register data",
        },
    )
    .await;
    w.refused(
        person_check(
            "human-resources",
            groom,
            &["name", "marital_status"],
            "招聘审查 employment screening",
        ),
        Code::PermissionDenied,
    )
    .await;
    w.refused(
        Ask {
            consumer: "human-resources",
            resource: "public-security/criminal-records",
            selector: format!("filter id_number={}", mask_id(&groom.id_number)),
            fields: &["offence"],
            purpose: "employment screening",
            query: Query::search("public-security/criminal-records")
                .filter("id_number", groom.id_number.as_str())
                .fields(["offence"])
                .purpose("employment screening"),
        },
        Code::PermissionDenied,
    )
    .await;
    w.refused(
        person_check("social-insurance", deceased, &["status", "name"], pension),
        Code::PermissionDenied,
    )
    .await;
    w.refused(
        person_check("civil-affairs", groom, &["name"], "税务稽查 tax audit"),
        Code::PermissionDenied,
    )
    .await;
    // Civil affairs sees addresses only to the district; a filter on the full street address
    // would confirm it and list who lives there.
    w.refused(
        Ask {
            consumer: "civil-affairs",
            resource: REGISTER,
            selector: format!(
                "filter address={}",
                huitong_core::masking::apply_text(huitong_core::Mask::Address, &groom.address)
                    .unwrap_or_default()
            ),
            fields: &["name"],
            purpose,
            query: Query::search(REGISTER)
                .filter("address", groom.address.as_str())
                .fields(["name"])
                .purpose(purpose),
        },
        Code::PermissionDenied,
    )
    .await;
    // The marriage grant is for checking the applicants in front of the clerk, one by one: a
    // search listing everyone single would be a bulk read of the register, so it is refused.
    w.refused(
        Ask {
            consumer: "civil-affairs",
            resource: REGISTER,
            selector: "filter marital_status=single".into(),
            fields: &["name", "birth_date"],
            purpose,
            query: Query::search(REGISTER)
                .filter("marital_status", "single")
                .fields(["name", "birth_date"])
                .purpose(purpose),
        },
        Code::PermissionDenied,
    )
    .await;
    w.refused(
        Ask {
            purpose: "",
            ..person_check("civil-affairs", groom, &["name"], "")
        },
        Code::InvalidArgument,
    )
    .await;
    w.refused(
        person_check("civil-affairs", groom, &["name", "income"], purpose),
        Code::InvalidArgument,
    )
    .await;
    w.refused(
        Ask {
            consumer: "civil-affairs",
            resource: "public-security/tax-returns",
            selector: format!("key id_number={}", mask_id(&groom.id_number)),
            fields: &["income"],
            purpose,
            query: Query::by_key(
                "public-security/tax-returns",
                "id_number",
                Value::string(groom.id_number.as_str()),
            )
            .fields(["income"])
            .purpose(purpose),
        },
        Code::NotFound,
    )
    .await;

    // Someone of pension age who is alive and not one of the couple above.
    if let Some(pensioner) = data.persons.iter().find(|p| {
        p.status == super::data::PersonStatus::Active
            && p.birth_date.0 < 1960
            && p.id_number != groom.id_number
    }) {
        w.death_scene(register, pensioner).await;
    }

    w.audit_scene(groom).await;
    w.outcome
}

impl Walk {
    /// An auditor answers "who looked at this person's data, and why", then checks offline
    /// that the log was not rewritten.
    /// Publish/subscribe: a death recorded in public security's own system reaches the two
    /// departments that must act on it, each with only the fields its grant allows.
    async fn death_scene(&mut self, register: &Path, person: &Person) {
        println!(
            "\n■ 死亡登记 A death recorded by public security reaches the departments that must act on it."
        );
        println!(
            "  Social insurance (to stop a pension) and civil affairs (to update a surviving spouse's"
        );
        println!("  marital status) subscribe to changes in the household register:");
        let subscriptions = [
            (
                "social-insurance",
                &["id_number", "status"][..],
                "养老金资格认证 pension eligibility",
            ),
            (
                "civil-affairs",
                &["id_number", "name", "status"][..],
                "婚姻状况变更 marital status update",
            ),
        ];
        let mut subs = Vec::new();
        for (dept, fields, purpose) in subscriptions {
            let opened = match self.client(dept).await {
                Ok(c) => {
                    c.subscribe(
                        Subscribe::new(REGISTER)
                            .name("deaths")
                            .fields(fields.iter().copied())
                            .purpose(purpose),
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            match opened {
                Ok(s) => {
                    println!("  [{dept}] subscribes: {} for {purpose}", fields.join(", "));
                    subs.push((dept, fields, s));
                }
                Err(e) => self.surprise(format!("{dept} could not subscribe: {e}")),
            }
        }
        if let Err(e) = record_death(register, &person.id_number) {
            self.surprise(format!("could not change the household register file: {e}"));
            return;
        }
        println!(
            "  [public-security] records the death of {} ({}) in its own system; its adapter reports the change",
            huitong_core::masking::apply_text(huitong_core::Mask::Name, &person.name)
                .unwrap_or_default(),
            mask_id(&person.id_number)
        );
        for (dept, fields, mut sub) in subs {
            let started = Instant::now();
            match tokio::time::timeout(std::time::Duration::from_secs(20), sub.next()).await {
                Ok(Ok(delivery)) => {
                    let event = delivery.event.unwrap_or_default();
                    let record = event.record.unwrap_or_default();
                    let shown: Vec<String> = fields
                        .iter()
                        .map(|f| {
                            let v = text(&record, f);
                            if *f == "id_number" {
                                format!("{f}={}", mask_id(&v))
                            } else {
                                format!("{f}={v}")
                            }
                        })
                        .collect();
                    println!(
                        "      → {dept} receives event {} after {:.1} s (log entry {}): {}",
                        event.sequence,
                        started.elapsed().as_secs_f64(),
                        delivery.receipt.as_ref().map_or(0, |r| r.index),
                        shown.join("  ")
                    );
                    self.outcome.answered += 1;
                    if text(&record, "status") != "deceased" {
                        self.surprise(format!("{dept} was not told of the death"));
                    }
                }
                Ok(Err(e)) => self.surprise(format!("{dept}'s subscription failed: {e}")),
                Err(_) => self.surprise(format!("{dept} received no event within 20 s")),
            }
            let _ = sub.close().await;
        }
        println!(
            "      ⇒ the pension stops and the marriage record is updated; nobody carries a death certificate between offices"
        );
    }

    async fn audit_scene(&mut self, person: &Person) {
        println!(
            "\n■ 审计 Every exchange above was recorded before its answer left. An auditor asks who"
        );
        println!(
            "  looked at the first applicant's register entry, and why (the Data Tracker view):"
        );
        let files = match identity(&self.pki, super::catalogue::AUDITOR, Role::Auditor) {
            Ok(f) => f,
            Err(e) => return self.surprise(format!("auditor identity: {e}")),
        };
        let mut audit = match Audit::connect(&self.broker, &files).await {
            Ok(a) => a,
            Err(e) => return self.surprise(format!("auditor connection: {e}")),
        };
        let report = match audit
            .subject_report(REGISTER, &[("id_number", person.id_number.as_str())])
            .await
        {
            Ok(r) => r,
            Err(e) => return self.surprise(format!("subject report: {e}")),
        };
        // The bundled tz database always has it; UTC would still say which zone it is.
        let zone = crate::zone::Zone::parse(DISPLAY_ZONE).unwrap_or_default();
        for e in &report.entries {
            let r = e.record.clone().unwrap_or_default();
            println!(
                "  entry {:>3}  {}  {:<16} {:<9} purpose: {}  fields: {}",
                e.index,
                zone.seconds(r.time_micros),
                r.consumer,
                r.outcome,
                r.purpose,
                if r.fields.is_empty() {
                    "-".to_owned()
                } else {
                    r.fields.join(", ")
                }
            );
        }
        let refused = report
            .entries
            .iter()
            .filter(|e| e.record.as_ref().is_some_and(|r| r.outcome == "refused"))
            .count();
        if report.entries.len() < 2 || refused == 0 {
            self.surprise(format!(
                "the subject report shows {} accesses ({refused} refused); the walkthrough made more",
                report.entries.len()
            ));
        }
        let cp = match audit.checkpoint().await {
            Ok(c) => c,
            Err(e) => return self.surprise(format!("checkpoint: {e}")),
        };
        println!("  The log's signed checkpoint (C2SP tlog-checkpoint, Ed25519):");
        for line in cp.note.lines() {
            println!("    {line}");
        }
        println!(
            "  Verify it and any receipt with the log key: {}",
            cp.verifier_key
        );
    }
}

/// What the provider does with an access request in the walkthrough.
enum Decide<'a> {
    Approve {
        by: &'a str,
        masks: &'a [(&'a str, &'a str)],
        /// Masked fields the consumer may still filter or key on.
        match_fields: &'a [&'a str],
        /// `"key"` or `"search"`; `None` for the resource's default.
        lookup: Option<&'a str>,
    },
    Deny {
        by: &'a str,
        reason: &'a str,
    },
}

impl Walk {
    /// A consumer's administrator files an access request; the provider's administrator
    /// decides. Returns the grant id when approved.
    async fn request_and_decide(
        &mut self,
        consumer: &str,
        resource: &str,
        fields: &[&str],
        purpose: &str,
        legal_basis: &str,
        decide: Decide<'_>,
    ) -> Option<String> {
        let filed = match self.admin(consumer).await {
            Ok(mut a) => {
                a.file_request(resource, fields, &[purpose], legal_basis, 365)
                    .await
            }
            Err(e) => Err(e),
        };
        let filed = match filed {
            Ok(r) => r,
            Err(e) => {
                self.surprise(format!("filing an access request failed: {e}"));
                return None;
            }
        };
        let due = filed
            .reply_due
            .as_ref()
            .map(huitong_proto::value::format_timestamp)
            .unwrap_or_default();
        println!("  [admin] {consumer} files {} for {resource}", filed.id);
        println!(
            "      fields: {} · purpose: {purpose} · legal basis: {legal_basis}",
            fields.join(", ")
        );
        println!(
            "      the provider must reply by {} (10 working days)",
            due.get(..10).unwrap_or(&due)
        );
        match decide {
            Decide::Approve {
                by,
                masks,
                match_fields,
                lookup,
            } => {
                let mut approval =
                    huitong_client::Approval::new().match_fields(match_fields.iter().copied());
                for (field, mask) in masks {
                    approval = approval.mask(field, mask);
                }
                if let Some(l) = lookup {
                    approval = approval.lookup(l);
                }
                let approved = match self.admin(by).await {
                    Ok(mut a) => a.approve_with(&filed.id, &approval).await,
                    Err(e) => Err(e),
                };
                match approved {
                    Ok(g) => {
                        let masks: Vec<String> =
                            masks.iter().map(|(f, m)| format!("{f} as {m}")).collect();
                        println!(
                            "  [admin] {by} approves {} → grant {} (masks: {}; may match on: {}; lookup: {})",
                            filed.id,
                            g.id,
                            masks.join(", "),
                            if match_fields.is_empty() {
                                "masked fields not matchable".to_owned()
                            } else {
                                match_fields.join(", ")
                            },
                            if g.lookup.is_empty() {
                                "default"
                            } else {
                                g.lookup.as_str()
                            },
                        );
                        Some(g.id)
                    }
                    Err(e) => {
                        self.surprise(format!("approving {} failed: {e}", filed.id));
                        None
                    }
                }
            }
            Decide::Deny { by, reason } => {
                let denied = match self.admin(by).await {
                    Ok(mut a) => a.deny(&filed.id, reason).await,
                    Err(e) => Err(e),
                };
                match denied {
                    Ok(r) => println!("  [admin] {by} denies {}: {}", filed.id, r.denial_reason),
                    Err(e) => self.surprise(format!("denying {} failed: {e}", filed.id)),
                }
                None
            }
        }
    }
}

/// Marks `id_number` deceased in the household register file, as public security's own system
/// would; written whole and renamed into place, so the adapter never reads half a file.
fn record_death(register: &Path, id_number: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(register)?;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut record: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)?;
        if record.get("id_number").and_then(|v| v.as_str()) == Some(id_number) {
            record.insert("status".into(), "deceased".into());
        }
        out.push_str(&serde_json::to_string(&record)?);
        out.push('\n');
    }
    let tmp = register.with_extension("jsonl.tmp");
    std::fs::write(&tmp, out)?;
    std::fs::rename(&tmp, register)?;
    Ok(())
}
