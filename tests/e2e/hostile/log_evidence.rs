//! Hostile cases: a tampered or full exchange log; evidence is never rewritten.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use huitong_audit::{bundle, merkle};
use huitong_client::{Audit, Receipt};
use huitong_tests::{Exchange, Role, huitong_bin, marriage_check, required};

/// The broker's data directory in an [`Exchange`].
fn data_dir(ex: &Exchange) -> PathBuf {
    ex.dir.path().join("broker-test.toml-data")
}

/// Every file under `dir` and its bytes: what "left as found" is checked against, sled
/// databases included.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Which files differ between two snapshots.
fn changed(a: &BTreeMap<PathBuf, Vec<u8>>, b: &BTreeMap<PathBuf, Vec<u8>>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = a
        .iter()
        .filter(|(p, bytes)| b.get(*p) != Some(bytes))
        .map(|(p, _)| p.clone())
        .collect();
    out.extend(b.keys().filter(|p| !a.contains_key(*p)).cloned());
    out
}

/// `(offset, payload)` of every whole frame of an `entries.log`.
fn frames(data: &[u8]) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 8 <= data.len() {
        let len = u32::from_le_bytes(data[off..off + 4].try_into().unwrap()) as usize;
        if off + 8 + len > data.len() {
            break;
        }
        out.push((off, data[off + 8..off + 8 + len].to_vec()));
        off += 8 + len;
    }
    out
}

/// Runs the broker of `ex` in the foreground, expecting it to exit.
fn run_broker(ex: &Exchange) -> Output {
    let cfg = ex.dir.path().join("broker-test.toml");
    Command::new(huitong_bin())
        .args(["broker", "--config", cfg.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap()
}

/// `huitong audit verify <dir> --log-key <key>`: success and stdout.
fn verify(dir: &Path, key: &str) -> (bool, String) {
    let out = Command::new(huitong_bin())
        .args(["audit", "verify", dir.to_str().unwrap(), "--log-key", key])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

async fn auditor(ex: &Exchange) -> Audit {
    Audit::connect(
        &ex.broker.endpoint(),
        &ex.identity("discipline-inspection", Role::Auditor),
    )
    .await
    .unwrap()
}

/// Waits until the broker has signed a checkpoint of at least `size` entries (it signs every
/// second in these tests) and returns the log's verifier key.
async fn wait_for_checkpoint(ex: &Exchange, size: u64) -> String {
    let mut audit = auditor(ex).await;
    loop {
        let cp = audit.checkpoint().await.unwrap();
        if cp.tree_size >= size {
            return cp.verifier_key;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The case: a byte flipped in a live log, with and without its CRC recomputed. The
/// broker refuses to start, names the entry and what differs, says how to investigate and
/// restore, and leaves every file of the data directory byte-identical; `huitong audit verify`
/// on the data directory names the entry too and writes nothing; the untouched copy starts.
#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_byte_in_the_log_is_refused_named_and_nothing_on_disk_changes() {
    let mut ex = Exchange::start("checkpoint_interval_seconds = 1");
    let mut civil = ex.consumer("civil-affairs").await;
    for i in 0..12 {
        civil.query(marriage_check(&ex.person(i))).await.unwrap();
    }
    let key = wait_for_checkpoint(&ex, 12).await;
    drop(civil);
    let status = std::mem::replace(&mut ex.broker, huitong_tests::Proc::placeholder()).terminate();
    assert!(status.success(), "{status:?}");

    let data = data_dir(&ex);
    let entries = data.join("log").join("entries.log");
    let pristine = std::fs::read(&entries).unwrap();
    let spans = frames(&pristine);
    assert!(spans.len() >= 12, "{} entries", spans.len());
    let (off, payload) = spans[5].clone();

    // Entry 5 with one payload byte flipped: as the disk might (CRC left) and as a forger would
    // (CRC recomputed, so that only index.bin's leaf hash and the checkpoint can tell).
    let mut plain = pristine.clone();
    plain[off + 8 + payload.len() / 2] ^= 0x04;
    let mut forged_payload = payload.clone();
    forged_payload[payload.len() / 2] ^= 0x04;
    let mut forged = pristine.clone();
    forged[off..off + 8].copy_from_slice(&bundle::frame_header(&forged_payload));
    forged[off + 8..off + 8 + payload.len()].copy_from_slice(&forged_payload);

    for (what, bytes, differs) in [
        ("a plain flipped byte", &plain, "CRC mismatch"),
        (
            "a flipped byte with its CRC recomputed",
            &forged,
            "its leaf hash is",
        ),
    ] {
        std::fs::write(&entries, bytes).unwrap();
        let before = snapshot(&data);

        let out = run_broker(&ex);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{what}: the broker started\n{stderr}"
        );
        for needle in [
            "entry 5",
            differs,
            "Nothing on disk was changed",
            "huitong audit verify",
            "restore the data directory from a backup",
        ] {
            assert!(
                stderr.contains(needle),
                "{what}: no {needle:?} in\n{stderr}"
            );
        }
        assert!(
            !stderr.contains("rewriting") && !stderr.contains("entries were removed"),
            "{what}: {stderr}"
        );
        let after = snapshot(&data);
        assert!(
            changed(&before, &after).is_empty(),
            "{what}: the refused start changed {:?}",
            changed(&before, &after)
        );

        let (ok, text) = verify(&data, &key);
        assert!(
            !ok && text.contains("entry 5") && text.contains(differs),
            "{what}: {text}"
        );
        assert!(
            changed(&before, &snapshot(&data)).is_empty(),
            "{what}: verify wrote to the data directory"
        );
    }

    // The untouched log verifies offline and serves again.
    std::fs::write(&entries, &pristine).unwrap();
    let (ok, text) = verify(&data, &key);
    assert!(ok && text.contains("OK:"), "{text}");
    ex.restart_broker();
    let mut civil = ex.consumer("civil-affairs").await;
    civil.query(marriage_check(&ex.person(1))).await.unwrap();
}

/// A tmpfs mounted on a directory for the length of a test; unmounted (lazily, since the broker
/// may still hold files open) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` (with the reason) where this process may not mount, unless the test is required.
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(at.to_owned())),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
                    Err(e) => e.to_string(),
                };
                assert!(
                    !required("TMPFS"),
                    "HUITONG_REQUIRE_TMPFS=1 but mounting a tmpfs failed: {why}"
                );
                eprintln!(
                    "SKIPPED: the full-disk test needs to mount a tmpfs (run as root): {why}"
                );
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `dir` with one file, to the last byte it accepts.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x55u8; 4096];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // Then byte by byte, so that not even a short frame fits.
    while let Ok(1) = f.write(&[0x55]) {}
    path
}

/// The full-disk case: the log's directory on a small tmpfs, filled while consumers are
/// querying. Every answer they received has its entry, every refusal is UNAVAILABLE and names
/// the full disk, and once the filler is deleted the next exchanges are answered without a
/// restart and the log verifies offline.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_log_disk_refuses_exchanges_and_service_resumes_when_space_returns() {
    let mut ex = Exchange::start("checkpoint_interval_seconds = 1");
    let data = data_dir(&ex);
    let log_dir = data.join("log");
    // A fresh log on the tmpfs: stop the broker, mount over an empty log directory, start.
    let status = std::mem::replace(&mut ex.broker, huitong_tests::Proc::placeholder()).terminate();
    assert!(status.success(), "{status:?}");
    std::fs::remove_dir_all(&log_dir).unwrap();
    std::fs::create_dir(&log_dir).unwrap();
    let Some(_tmpfs) = Tmpfs::mount(&log_dir, "8m") else {
        return;
    };
    ex.restart_broker();
    let key = wait_for_checkpoint(&ex, 0).await;

    let ids: Arc<Vec<String>> = Arc::new((0..50).map(|i| ex.person(i)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let identity = ex.identity("civil-affairs", Role::Consumer);
    let mut workers = Vec::new();
    for w in 0..8usize {
        let (endpoint, identity) = (ex.broker.endpoint(), identity.clone());
        let (ids, stop) = (Arc::clone(&ids), Arc::clone(&stop));
        workers.push(tokio::spawn(async move {
            let mut c = huitong_client::Client::connect(&endpoint, &identity)
                .await
                .unwrap();
            let (mut answered, mut refused) = (Vec::<Receipt>::new(), Vec::new());
            let (mut i, mut after_stop) = (0, 0);
            // Until told to stop, then on until this worker saw a refusal (or gave up on one).
            while !stop.load(Ordering::Relaxed) || (refused.is_empty() && after_stop < 2000) {
                if stop.load(Ordering::Relaxed) {
                    after_stop += 1;
                }
                match c.query(marriage_check(&ids[(w * 7 + i) % ids.len()])).await {
                    Ok(a) => answered.push(a.receipt.unwrap()),
                    Err(e) => refused.push((e.code(), e.to_string())),
                }
                i += 1;
            }
            (answered, refused)
        }));
    }
    // Under load, the disk fills.
    wait_for_checkpoint(&ex, 200).await;
    let filler = fill(&log_dir);
    stop.store(true, Ordering::Relaxed);
    let (mut answered, mut refused) = (Vec::new(), Vec::new());
    for w in workers {
        let (a, r) = w.await.unwrap();
        answered.extend(a);
        refused.extend(r);
    }
    assert!(
        !refused.is_empty(),
        "no exchange was refused on the full disk"
    );
    for (code, message) in &refused {
        assert_eq!(*code, Some(tonic::Code::Unavailable), "{message}");
        assert!(message.contains("disk is full"), "{message}");
    }

    // Space returns: the next exchanges are answered, by the same broker process.
    std::fs::remove_file(&filler).unwrap();
    let mut civil = ex.consumer("civil-affairs").await;
    for i in 0..20 {
        let a = civil.query(marriage_check(&ids[i])).await.unwrap();
        answered.push(a.receipt.unwrap());
    }
    drop(civil);
    let status = std::mem::replace(&mut ex.broker, huitong_tests::Proc::placeholder()).terminate();
    assert!(status.success(), "{status:?}");

    // Offline: the log verifies, and every answer received is its entry.
    let (ok, text) = verify(&data, &key);
    assert!(ok, "{text}");
    let log = std::fs::read(log_dir.join("entries.log")).unwrap();
    let leaves: Vec<merkle::Hash> = frames(&log)
        .iter()
        .map(|(_, p)| merkle::leaf_hash(p))
        .collect();
    for r in &answered {
        let i = usize::try_from(r.index).unwrap();
        assert!(
            leaves.get(i).map(|h| &h[..]) == Some(&r.leaf_hash[..]),
            "the answer with receipt {} has no entry in the log",
            r.index
        );
    }
    eprintln!(
        "{} answered and {} refused while the disk was full; {} entries",
        answered.len(),
        refused.len(),
        leaves.len()
    );
}
