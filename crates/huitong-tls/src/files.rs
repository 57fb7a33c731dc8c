//! Reading PEM files and writing files safely.

use std::fs;
use std::io::Write;
use std::path::Path;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::Error;

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, Error> {
    fs::read(path).map_err(|e| Error::io("read", path, e))
}

/// Describes a PEM error by kind only: the default messages quote the offending line, which in
/// a key file may be key material.
fn pem_problem(e: &pem::Error, what: &str) -> String {
    match e {
        pem::Error::NoItemsFound => format!("it contains no PEM {what}"),
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no END line".into(),
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed".into(),
        pem::Error::Base64Decode(_) => "a PEM section is not valid base64".into(),
        pem::Error::SectionTooLarge => "a PEM section is too large".into(),
        _ => "it is not a readable PEM file".into(),
    }
}

/// All certificates in a PEM file, in order; at least one.
pub(crate) fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let data = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::file(path, pem_problem(&e, "CERTIFICATE")))?;
    if certs.is_empty() {
        return Err(Error::file(
            path,
            pem_problem(&pem::Error::NoItemsFound, "CERTIFICATE"),
        ));
    }
    Ok(certs)
}

pub(crate) fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let data = read(path)?;
    PrivateKeyDer::from_pem_slice(&data)
        .map_err(|e| Error::file(path, pem_problem(&e, "PRIVATE KEY")))
}

/// The CRLs in a PEM file. An empty file is an empty list, not an error: it means "nothing is
/// revoked" as plainly as an empty signed CRL does.
pub(crate) fn crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, Error> {
    let data = read(path)?;
    CertificateRevocationListDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::file(path, pem_problem(&e, "X509 CRL")))
}

/// Writes `data` to `path` through a temporary file in the same directory and a rename, so that
/// a reader (a server reloading its CRL) sees either the old or the new file, never half of one.
/// `private` files get mode 0600 from the moment they exist.
pub(crate) fn write_atomic(path: &Path, data: &[u8], private: bool) -> Result<(), Error> {
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::InvalidArgument(format!("{} is not a file path", path.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    // A stale temporary file from a crashed run may have other permissions; start afresh.
    let _ = fs::remove_file(&tmp);
    let result = write_new(&tmp, data, private)
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| Error::io("rename into place", path, e)));
    if result.is_err() {
        // The temporary file is ours and useless; a failure to remove it changes nothing.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates `path`, failing if it exists, and syncs it to disk.
pub(crate) fn write_new(path: &Path, data: &[u8], private: bool) -> Result<(), Error> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(path).map_err(|e| Error::io("create", path, e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("write", path, e))
}
