//! Helpers shared by this crate's tests: scratch directories and a sample resource.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use huitong_core::{
    DeptId, FieldName, FieldSpec, FieldType, ResourceId, ResourceName, ResourceSpec,
    ResourceSpecParts, Sensitivity, SharingClass,
};

/// A directory under the system temp dir, removed when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "huitong-adapter-{tag}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    pub(crate) fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn field(name: &str, ty: FieldType, sensitivity: Sensitivity) -> FieldSpec {
    FieldSpec {
        name: FieldName::new(name).unwrap(),
        ty,
        sensitivity,
        description: String::new(),
    }
}

/// A resource of `dept` named `name` with the given fields and key.
pub(crate) fn spec(
    dept: &str,
    name: &str,
    fields: Vec<FieldSpec>,
    key: &[&str],
    sharing_class: SharingClass,
) -> ResourceSpec {
    ResourceSpec::new(ResourceSpecParts {
        id: ResourceId::new(DeptId::new(dept).unwrap(), ResourceName::new(name).unwrap()),
        title: format!("{name} title"),
        description: String::new(),
        fields,
        key_fields: key.iter().map(|k| FieldName::new(k).unwrap()).collect(),
        sharing_class,
        legal_basis: "户口登记条例".into(),
        update_cycle: "daily".into(),
        max_cache_age_seconds: 0,
        stale_if_error_seconds: 0,
    })
    .unwrap()
}

/// `public-security/household-register`, keyed by `id_number`.
pub(crate) fn household_register() -> ResourceSpec {
    use FieldType as T;
    use Sensitivity as S;
    spec(
        "public-security",
        "household-register",
        vec![
            field("id_number", T::String, S::Personal),
            field("name", T::String, S::Personal),
            field("birth_date", T::Date, S::Personal),
            field("district", T::String, S::Internal),
            field("household_size", T::Int, S::Internal),
            field("floor_area", T::Double, S::Internal),
            field("is_head", T::Bool, S::Internal),
        ],
        &["id_number"],
        SharingClass::Conditional,
    )
}

pub(crate) fn names(list: &[&str]) -> Vec<FieldName> {
    list.iter().map(|n| FieldName::new(n).unwrap()).collect()
}

/// A CA in `dir/pki` with an adapter certificate for `dept` and a broker certificate: the
/// adapter's server side, and the broker's client side to call it with.
pub(crate) fn test_pki(
    dir: &TempDir,
    dept: &str,
) -> (huitong_tls::ServerTls, huitong_tls::ClientTls) {
    use huitong_tls::{ClientTls, Role, ServerTls, TlsFiles, pki};
    let pki_dir = dir.path().join("pki");
    pki::init(&pki_dir, "test.huitong.example").unwrap();
    let dept = DeptId::new(dept).unwrap();
    let broker = DeptId::new("exchange-office").unwrap();
    pki::issue(
        &pki_dir,
        &pki::IssueOptions::new(dept.clone(), Role::Adapter),
    )
    .unwrap();
    pki::issue(
        &pki_dir,
        &pki::IssueOptions::new(broker.clone(), Role::Broker),
    )
    .unwrap();
    (
        ServerTls::load(&TlsFiles::from_pki_dir(&pki_dir, &dept, Role::Adapter)).unwrap(),
        ClientTls::load(&TlsFiles::from_pki_dir(&pki_dir, &broker, Role::Broker)).unwrap(),
    )
}
