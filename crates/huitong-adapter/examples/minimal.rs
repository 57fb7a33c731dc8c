//! The smallest adapter built on the SDK: a department's records in code, served over mutual
//! TLS. A real one looks its records up in the department's database instead of a `Vec`.
//!
//! ```sh
//! huitong pki issue --dir demo-exchange/pki --dept education --role adapter
//! cargo run -p huitong-adapter --example minimal -- demo-exchange/pki 127.0.0.1:7405
//! ```
//!
//! The server checks every request against [`Source::resources`] before calling the source, and
//! trims answers to the requested fields, so `fetch` and `search` below only look records up.

use std::path::PathBuf;

use huitong_adapter::{Page, PageRequest, Record, ServeOptions, Source, SourceError, Value, serve};
use huitong_core::{
    DeptId, FieldName, FieldSpec, FieldType, ResourceId, ResourceName, ResourceSpec,
    ResourceSpecParts, Sensitivity, SharingClass,
};
use huitong_tls::{Role, ServerTls, TlsFiles};

/// The education bureau's register of school enrolments (学籍).
struct Enrolments {
    spec: ResourceSpec,
    /// In a stable order: page tokens are offsets into it.
    rows: Vec<Record>,
}

impl Enrolments {
    fn new(dept: &DeptId) -> Result<Self, huitong_core::Error> {
        let field = |name: &str, ty, sensitivity| -> Result<FieldSpec, huitong_core::Error> {
            Ok(FieldSpec {
                name: FieldName::new(name)?,
                ty,
                sensitivity,
                description: String::new(),
            })
        };
        let spec = ResourceSpec::new(ResourceSpecParts {
            id: ResourceId::new(dept.clone(), ResourceName::new("school-enrolments")?),
            title: "学籍 School enrolments".into(),
            description: "One entry per pupil enrolled in a school of the district.".into(),
            fields: vec![
                field("student_no", FieldType::String, Sensitivity::Personal)?,
                field("name", FieldType::String, Sensitivity::Personal)?,
                field("school", FieldType::String, Sensitivity::Public)?,
                field("grade", FieldType::Int, Sensitivity::Internal)?,
            ],
            key_fields: vec![FieldName::new("student_no")?],
            sharing_class: SharingClass::Conditional,
            legal_basis: "《中华人民共和国义务教育法》".into(),
            update_cycle: "daily".into(),
            max_cache_age_seconds: 0,
            stale_if_error_seconds: 0,
        })?;
        let row = |no: &str, name: &str, school: &str, grade: i64| Record {
            fields: [
                ("student_no".to_owned(), Value::string(no)),
                ("name".to_owned(), Value::string(name)),
                ("school".to_owned(), Value::string(school)),
                ("grade".to_owned(), Value::int(grade)),
            ]
            .into(),
        };
        let rows = vec![
            row("G4403052015001", "林小雨", "南山实验学校", 4),
            row("G4403052016002", "陈子涵", "南山实验学校", 3),
            row("G4403052014003", "黄思远", "育才小学", 5),
            row("G4403052017004", "周一诺", "育才小学", 2),
        ];
        Ok(Self { spec, rows })
    }
}

#[tonic::async_trait]
impl Source for Enrolments {
    fn resources(&self) -> Vec<ResourceSpec> {
        vec![self.spec.clone()]
    }

    async fn fetch(
        &self,
        _resource: &ResourceName,
        key: &[(FieldName, Value)],
        _fields: &[FieldName],
    ) -> Result<Option<Record>, SourceError> {
        // One resource, so `_resource` is it; `key` is already checked and typed.
        let matches = |r: &Record| key.iter().all(|(f, v)| r.fields.get(f.as_str()) == Some(v));
        Ok(self.rows.iter().find(|r| matches(r)).cloned())
    }

    async fn search(
        &self,
        _resource: &ResourceName,
        filters: &[(FieldName, Value)],
        _fields: &[FieldName],
        page: PageRequest,
    ) -> Result<Page, SourceError> {
        let start = match page.token.as_deref() {
            None => 0,
            Some(t) => t.parse().map_err(|_| SourceError::BadPageToken)?,
        };
        if start > self.rows.len() {
            return Err(SourceError::BadPageToken);
        }
        let matches = |r: &&Record| {
            filters
                .iter()
                .all(|(f, v)| r.fields.get(f.as_str()) == Some(v))
        };
        let size = page.size as usize;
        let mut records = Vec::new();
        let mut next_token = None;
        for (offset, row) in self.rows.iter().enumerate().skip(start) {
            if !matches(&row) {
                continue;
            }
            if records.len() == size {
                next_token = Some(offset.to_string());
                break;
            }
            records.push(row.clone());
        }
        Ok(Page {
            records,
            next_token,
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(pki), Some(listen)) = (args.next(), args.next()) else {
        return Err("usage: minimal PKI_DIR HOST:PORT (PKI_DIR as written by huitong pki)".into());
    };
    let dept = DeptId::new("education")?;
    // The certificate `huitong pki issue --dept education --role adapter` writes.
    let tls = ServerTls::load(&TlsFiles::from_pki_dir(
        &PathBuf::from(pki),
        &dept,
        Role::Adapter,
    ))?;
    let listener = huitong_proto::transport::bind(listen.parse()?)?;
    println!("education adapter listening on {}", listener.local_addr()?);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let source = Enrolments::new(&dept)?;
    serve(
        dept,
        source,
        listener,
        ServeOptions::default(),
        tls,
        shutdown,
    )
    .await?;
    Ok(())
}
