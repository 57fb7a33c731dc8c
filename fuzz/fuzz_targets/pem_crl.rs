//! Certificates, keys and revocation lists: the PEM files a party loads (one of them replaced
//! by the input, the others valid), and the DER chains a peer presents in the handshake, as
//! the server verifies them and reads the SPIFFE identity out of them.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use huitong_core::DeptId;
use huitong_fuzz::{reset, scratch, sections, write};
use huitong_tls::pki::{self, IssueOptions};
use huitong_tls::{ClientTls, Role, ServerTls, TlsFiles};
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateDer;

struct Pki {
    /// The four files' bytes, held so that each run writes them afresh (`fs::copy` may fail
    /// with EINTR when libFuzzer's timer signal lands).
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
    crl: Vec<u8>,
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
        let read = |p: &PathBuf| match std::fs::read(p) {
            Ok(b) => b,
            Err(e) => panic!("the harness cannot read {}: {e}", p.display()),
        };
        Pki {
            ca: read(&files.ca),
            cert: read(&files.cert),
            key: read(&files.key),
            crl: read(&files.crl.clone().unwrap_or_default()),
            server,
        }
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
            let put = |bytes: &[u8], name: &str| -> PathBuf {
                let to = dir.join(name);
                write(&to, bytes);
                to
            };
            let mut files = TlsFiles {
                ca: put(&p.ca, "ca.pem"),
                cert: put(&p.cert, "cert.pem"),
                key: put(&p.key, "cert.key"),
                crl: Some(put(&p.crl, "crl.pem")),
            };
            let target = match n {
                0 => files.ca.clone(),
                1 => files.cert.clone(),
                2 => files.key.clone(),
                _ => dir.join("crl.pem"),
            };
            write(&target, rest);
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
