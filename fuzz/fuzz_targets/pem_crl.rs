//! Certificates, keys and revocation lists: the PEM files a party loads (one of them replaced
//! by the input, the others valid), and the DER chains a peer presents in the handshake, as
//! the server verifies them and reads the SPIFFE identity out of them.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use huitong_core::DeptId;
use huitong_fuzz::{reset, scratch, sections};
use huitong_tls::pki::{self, IssueOptions};
use huitong_tls::{ClientTls, Role, ServerTls, TlsFiles};
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateDer;

struct Pki {
    files: TlsFiles,
    server: ServerTls,
}

/// A CA, an adapter's certificate and key, and an empty CRL, made once per process.
fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = scratch("pki");
        reset(&dir);
        let made = pki::init(&dir, "fuzz.invalid").and_then(|()| {
            let dept = DeptId::new("public-security")
                .map_err(|e| huitong_tls::Error::InvalidArgument(e.to_string()))?;
            pki::issue(&dir, &IssueOptions::new(dept, Role::Adapter))
        });
        let issued = match made {
            Ok(i) => i,
            Err(e) => panic!("the harness's PKI cannot be made: {e}"),
        };
        let files = TlsFiles {
            ca: dir.join(pki::CA_CERT),
            cert: issued.cert,
            key: issued.key,
            crl: Some(dir.join(pki::CRL)),
        };
        let server = match ServerTls::load(&files) {
            Ok(s) => s,
            Err(e) => panic!("the harness's server TLS does not load: {e}"),
        };
        Pki { files, server }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let p = pki();
    match which % 6 {
        // One of the four files replaced by the input.
        n @ 0..=3 => {
            let dir = scratch("pki-case");
            let copy = |from: &PathBuf, name: &str| -> PathBuf {
                let to = dir.join(name);
                if let Err(e) = std::fs::copy(from, &to) {
                    panic!("the harness cannot copy {}: {e}", from.display());
                }
                to
            };
            let crl_path = p.files.crl.clone().unwrap_or_default();
            let mut files = TlsFiles {
                ca: copy(&p.files.ca, "ca.pem"),
                cert: copy(&p.files.cert, "cert.pem"),
                key: copy(&p.files.key, "cert.key"),
                crl: Some(copy(&crl_path, "crl.pem")),
            };
            let target = match n {
                0 => files.ca.clone(),
                1 => files.cert.clone(),
                2 => files.key.clone(),
                _ => dir.join("crl.pem"),
            };
            huitong_fuzz::write(&target, rest);
            let _ = ServerTls::load(&files);
            let _ = ClientTls::load(&files);
            files.crl = None;
            let _ = ServerTls::load(&files);
        }
        // A peer's certificate chain, as the handshake delivers it.
        4 => {
            let chain: Vec<CertificateDer<'static>> = sections(rest, 1)
                .into_iter()
                .map(|c| CertificateDer::from(c.to_vec()))
                .collect();
            let _ = p.server.authenticate_chain(&chain);
        }
        _ => {
            let _ = huitong_tls::peer_id_of(rest);
        }
    }
});
