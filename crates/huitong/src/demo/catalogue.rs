//! The demo exchange's catalogue and configuration files: what each department offers, under
//! which law, and where its adapter and the broker listen when run by hand.

use std::path::{Path, PathBuf};

use anyhow::Context;
use huitong_adapter::{ConfigFile, ResourceConfig, SourceConfig, TlsConfig};
use huitong_core::{
    DeptId, FieldName, FieldSpec, FieldType, ResourceId, ResourceSpec, ResourceSpecParts,
    Sensitivity, SharingClass,
};
use huitong_tls::{Role, pki};
use serde_json::json;

use super::data::DemoData;

/// The three departments, with the offset from the broker's port of the port each adapter
/// uses in a config written by `--init`.
pub const DEPARTMENTS: [(&str, &str, u16); 3] = [
    ("public-security", "公安 Public security bureau", 1),
    ("civil-affairs", "民政 Civil affairs bureau", 2),
    (
        "market-regulation",
        "市场监管 Market regulation administration",
        3,
    ),
];

/// Where the broker listens in a config written by `--init`, unless `--port-base` says
/// otherwise; the adapters listen on the next three ports.
pub const BROKER_PORT: u16 = 7400;

/// The demo exchange's SPIFFE trust domain.
pub const TRUST_DOMAIN: &str = "demo.huitong.example";

/// The department that runs the broker.
pub const OPERATOR: &str = "exchange-office";

/// Departments that only consume: they run no adapter but hold certificates.
pub const CONSUMERS: [&str; 6] = [
    "civil-affairs",
    "market-regulation",
    "public-security",
    "taxation",
    "social-insurance",
    "human-resources",
];

/// The department whose auditors read the exchange log (纪检监察: discipline inspection).
pub const AUDITOR: &str = "discipline-inspection";

/// Where the certificates live, relative to the exchange directory.
pub const PKI_DIR: &str = "pki";

/// Grants declared up front, as an exchange's bootstrapping policy would (the rest come from
/// access requests approved during the walkthrough).
const POLICY: &str = r#"# Grants declared by the exchange's policy, for bootstrapping. Others come from access
# requests that providers approve (huitong admin request / approve).
# None of these says `lookup`: the register is about people, so each allows key lookups only,
# one person at a time (a search needs lookup = "search"; see docs/operations.md).

# 婚姻登记: civil affairs checks both applicants' civil status (《婚姻登记条例》第五条).
[[grants]]
consumer = "civil-affairs"
resource = "public-security/household-register"
fields = ["name", "gender", "birth_date", "marital_status", "status", "address"]
purposes = ["婚姻登记 marriage registration"]
expires = "2027-12-31"
masks = { address = "address" }

# 企业开办: market regulation confirms a founder's identity.
[[grants]]
consumer = "market-regulation"
resource = "public-security/household-register"
fields = ["name", "birth_date", "status"]
purposes = ["营业执照登记 business licence registration"]
expires = "2027-12-31"

# 养老金资格认证: social insurance checks that a pensioner is alive, and is told of deaths.
[[grants]]
consumer = "social-insurance"
resource = "public-security/household-register"
fields = ["id_number", "status"]
purposes = ["养老金资格认证 pension eligibility"]
expires = "2027-12-31"

# 婚姻状况变更: civil affairs is told of deaths, to update the surviving spouse's status.
[[grants]]
consumer = "civil-affairs"
resource = "public-security/household-register"
fields = ["id_number", "name", "status"]
purposes = ["婚姻状况变更 marital status update"]
expires = "2027-12-31"
"#;

fn field(
    name: &str,
    ty: FieldType,
    sensitivity: Sensitivity,
    description: &str,
) -> anyhow::Result<FieldSpec> {
    Ok(FieldSpec {
        name: FieldName::new(name)?,
        ty,
        sensitivity,
        description: description.to_owned(),
    })
}

struct Resource {
    dept: &'static str,
    name: &'static str,
    title: &'static str,
    description: &'static str,
    sharing: SharingClass,
    legal_basis: &'static str,
    update_cycle: &'static str,
    max_cache_age_seconds: u32,
    stale_if_error_seconds: u32,
    key: &'static [&'static str],
    fields: &'static [(&'static str, FieldType, Sensitivity, &'static str)],
}

use FieldType::{Date, Int, String as Str};
use Sensitivity::{Internal, Personal, Public, Sensitive};

const RESOURCES: [Resource; 4] = [
    Resource {
        dept: "public-security",
        name: "household-register",
        title: "户籍登记 Household register",
        description: "One entry per registered resident: identity, household and civil status.",
        sharing: SharingClass::Conditional,
        legal_basis: "《中华人民共和国户口登记条例》; 《政务信息资源共享管理暂行办法》第九条",
        update_cycle: "real-time",
        max_cache_age_seconds: 300,
        stale_if_error_seconds: 3600,
        key: &["id_number"],
        fields: &[
            (
                "id_number",
                Str,
                Personal,
                "公民身份号码 citizen ID number (GB 11643)",
            ),
            ("name", Str, Personal, "姓名 name"),
            ("gender", Str, Personal, "性别 male or female"),
            ("birth_date", Date, Personal, "出生日期 date of birth"),
            ("ethnicity", Str, Sensitive, "民族 ethnic group"),
            ("native_place", Str, Personal, "籍贯 native place"),
            ("address", Str, Personal, "住址 registered address"),
            ("household_id", Str, Personal, "户号 household number"),
            (
                "marital_status",
                Str,
                Personal,
                "婚姻状况 single, married, divorced or widowed",
            ),
            (
                "registration_date",
                Date,
                Internal,
                "登记日期 date of registration",
            ),
            (
                "status",
                Str,
                Internal,
                "户籍状态 active, deceased or moved-out",
            ),
        ],
    },
    Resource {
        dept: "public-security",
        name: "criminal-records",
        title: "违法犯罪记录 Criminal records",
        description: "Court judgments against residents. Catalogued so that departments know it exists; never shared.",
        sharing: SharingClass::NotShared,
        legal_basis: "《中华人民共和国个人信息保护法》第二十八条 (sensitive personal information)",
        update_cycle: "daily",
        max_cache_age_seconds: 0,
        stale_if_error_seconds: 0,
        key: &["case_no"],
        fields: &[
            ("case_no", Str, Internal, "案号 case number"),
            (
                "id_number",
                Str,
                Personal,
                "公民身份号码 of the convicted person",
            ),
            ("offence", Str, Sensitive, "罪名 offence"),
            ("court", Str, Internal, "审判法院 court"),
            (
                "judgment_date",
                Date,
                Sensitive,
                "判决日期 date of judgment",
            ),
        ],
    },
    Resource {
        dept: "civil-affairs",
        name: "marriage-registrations",
        title: "婚姻登记 Marriage registrations",
        description: "Marriages registered and their current status.",
        sharing: SharingClass::Conditional,
        legal_basis: "《婚姻登记条例》",
        update_cycle: "daily",
        max_cache_age_seconds: 600,
        stale_if_error_seconds: 3600,
        key: &["registration_no"],
        fields: &[
            (
                "registration_no",
                Str,
                Internal,
                "结婚证字号 registration number",
            ),
            ("husband_id", Str, Personal, "男方公民身份号码"),
            ("husband_name", Str, Personal, "男方姓名"),
            ("wife_id", Str, Personal, "女方公民身份号码"),
            ("wife_name", Str, Personal, "女方姓名"),
            (
                "registered_on",
                Date,
                Personal,
                "登记日期 date of registration",
            ),
            ("registry_office", Str, Public, "登记机关 registry office"),
            ("status", Str, Personal, "married or divorced"),
        ],
    },
    Resource {
        dept: "market-regulation",
        name: "business-licences",
        title: "营业执照 Business licences",
        description: "Registered market entities; publicly disclosed under the enterprise credit disclosure rules.",
        sharing: SharingClass::Open,
        legal_basis: "《市场主体登记管理条例》; 《企业信息公示暂行条例》",
        update_cycle: "daily",
        max_cache_age_seconds: 3600,
        stale_if_error_seconds: 3600,
        key: &["credit_code"],
        fields: &[
            (
                "credit_code",
                Str,
                Public,
                "统一社会信用代码 unified social credit code (GB 32100)",
            ),
            ("name", Str, Public, "企业名称 registered name"),
            (
                "legal_representative_id",
                Str,
                Personal,
                "法定代表人公民身份号码",
            ),
            ("legal_representative_name", Str, Public, "法定代表人姓名"),
            (
                "registered_capital",
                Int,
                Public,
                "注册资本 registered capital, yuan",
            ),
            (
                "established_on",
                Date,
                Public,
                "成立日期 date of establishment",
            ),
            ("business_scope", Str, Public, "经营范围 business scope"),
            ("status", Str, Public, "active, revoked or cancelled"),
            ("address", Str, Public, "住所 registered address"),
        ],
    },
];

fn spec(r: &Resource) -> anyhow::Result<ResourceSpec> {
    Ok(ResourceSpec::new(ResourceSpecParts {
        id: ResourceId::new(DeptId::new(r.dept)?, r.name.parse()?),
        title: r.title.into(),
        description: r.description.into(),
        fields: r
            .fields
            .iter()
            .map(|(n, t, s, d)| field(n, *t, *s, d))
            .collect::<anyhow::Result<_>>()?,
        key_fields: r
            .key
            .iter()
            .map(|k| FieldName::new(k))
            .collect::<Result<_, _>>()?,
        sharing_class: r.sharing,
        legal_basis: r.legal_basis.into(),
        update_cycle: r.update_cycle.into(),
        max_cache_age_seconds: r.max_cache_age_seconds,
        stale_if_error_seconds: r.stale_if_error_seconds,
    })?)
}

/// Paths of what [`write_exchange`] wrote.
#[derive(Debug)]
pub struct Written {
    /// The exchange directory.
    pub dir: PathBuf,
    /// `(dept, adapter config file)`.
    pub adapter_configs: Vec<(DeptId, PathBuf)>,
    pub broker_config: PathBuf,
}

/// Writes the records, one adapter config per department and a broker config into `dir`.
pub fn write_exchange(dir: &Path, data: &DemoData, port_base: u16) -> anyhow::Result<Written> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    data.write_jsonl(dir)
        .with_context(|| format!("writing records to {}", dir.display()))?;
    write_criminal_records(dir, data)?;
    write_pki(&dir.join(PKI_DIR))?;
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, POLICY).with_context(|| format!("writing {}", policy.display()))?;

    let mut adapter_configs = Vec::new();
    let mut broker = format!(
        "# The demo exchange's broker. Start the adapters first: huitong adapter --config <dept>.toml\n\
         [broker]\nlisten = \"127.0.0.1:{port_base}\"\ndata_dir = \"broker-data\"\npolicy = \"policy.toml\"\n\n\
         [tls]\nca = \"{PKI_DIR}/ca.pem\"\ncert = \"{PKI_DIR}/{OPERATOR}-broker.pem\"\n\
         key = \"{PKI_DIR}/{OPERATOR}-broker.key\"\ncrl = \"{PKI_DIR}/crl.pem\"\n"
    );
    for (dept, _, offset) in DEPARTMENTS {
        let port = port_base
            .checked_add(offset)
            .context("--port-base leaves no room for the adapters' ports")?;
        let dept_id = DeptId::new(dept)?;
        let resources = RESOURCES
            .iter()
            .filter(|r| r.dept == dept)
            .map(|r| {
                let s = spec(r)?;
                let path = PathBuf::from(format!("{}.jsonl", r.name));
                Ok(ResourceConfig::from_spec(&s, SourceConfig::Jsonl { path }))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut file = ConfigFile::new(&dept_id, resources);
        file.listen = Some(format!("127.0.0.1:{port}"));
        file.tls = Some(TlsConfig {
            ca: PathBuf::from(PKI_DIR).join("ca.pem"),
            cert: PathBuf::from(PKI_DIR).join(format!("{dept}-adapter.pem")),
            key: PathBuf::from(PKI_DIR).join(format!("{dept}-adapter.key")),
            crl: Some(PathBuf::from(PKI_DIR).join("crl.pem")),
        });
        let path = dir.join(format!("{dept}.toml"));
        file.write(&path)?;
        adapter_configs.push((dept_id, path));
        broker.push_str(&format!(
            "\n[[adapters]]\ndept = \"{dept}\"\nendpoint = \"https://127.0.0.1:{port}\"\n"
        ));
    }
    let broker_config = dir.join("broker.toml");
    std::fs::write(&broker_config, broker)
        .with_context(|| format!("writing {}", broker_config.display()))?;
    Ok(Written {
        dir: dir.to_owned(),
        adapter_configs,
        broker_config,
    })
}

/// The exchange CA and every certificate the demo uses: the broker's, each adapter's, and a
/// consumer and an administrator certificate for every department.
fn write_pki(dir: &Path) -> anyhow::Result<()> {
    pki::init(dir, TRUST_DOMAIN)?;
    let issue = |dept: &str, role: Role| -> anyhow::Result<()> {
        pki::issue(dir, &pki::IssueOptions::new(DeptId::new(dept)?, role))?;
        Ok(())
    };
    issue(OPERATOR, Role::Broker)?;
    for (dept, _, _) in DEPARTMENTS {
        issue(dept, Role::Adapter)?;
    }
    for dept in CONSUMERS {
        issue(dept, Role::Consumer)?;
        issue(dept, Role::Admin)?;
    }
    issue(AUDITOR, Role::Auditor)?;
    Ok(())
}

const OFFENCES: [&str; 5] = [
    "盗窃罪 theft",
    "诈骗罪 fraud",
    "危险驾驶罪 dangerous driving",
    "故意伤害罪 assault",
    "非法经营罪 illegal business operation",
];

/// A few residents have a criminal record, so that the not-shared resource holds real rows.
fn write_criminal_records(dir: &Path, data: &DemoData) -> anyhow::Result<()> {
    use std::fmt::Write;
    let mut out = String::new();
    for (i, p) in data
        .persons
        .iter()
        .enumerate()
        .filter(|(i, p)| i % 37 == 5 && p.birth_date.0 <= 2000)
    {
        let year = (p.birth_date.0 + 20 + (i as i32 % 15)).min(2025);
        let line = json!({
            "case_no": format!("({year})京0105刑初{:04}号", 100 + i),
            "id_number": p.id_number,
            "offence": OFFENCES[i % OFFENCES.len()],
            "court": "北京市朝阳区人民法院",
            "judgment_date": format!("{year}-{:02}-{:02}", 1 + i % 12, 1 + i % 28),
        });
        writeln!(out, "{line}")?;
    }
    let path = dir.join("criminal-records.jsonl");
    std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))
}
