use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use super::*;
use crate::error::{Damage, Witness};
use crate::merkle::{mth, verify_consistency, verify_inclusion};
use crate::note::Verifier;

/// A fresh directory under the system temp dir, removed when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "huitong-audit-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn options() -> LogOptions {
    LogOptions {
        origin: "test.example/log".to_owned(),
        key_name: "test.example/log".to_owned(),
        ..LogOptions::default()
    }
}

fn payload(n: u64) -> Vec<u8> {
    format!("entry number {n}, with some padding to look like a record").into_bytes()
}

/// Appends `n` entries one after another.
async fn fill(log: &Log, n: u64) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    for i in 0..n {
        let p = payload(i);
        let r = log.append(p.clone()).await.unwrap();
        assert_eq!(r.index, i);
        sent.push(p);
    }
    sent
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = frame_header(payload).to_vec();
    f.extend_from_slice(payload);
    f
}

fn append_raw(dir: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new()
        .append(true)
        .open(dir.join(ENTRIES_FILE))
        .unwrap();
    f.write_all(bytes).unwrap();
}

/// Every file under `dir` and its bytes, to show that a refused open changed nothing.
pub(crate) fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.insert(p.clone(), fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Opens the log expecting a refusal, and checks that every file is as it was.
fn refused(dir: &Path) -> Error {
    let before = snapshot(dir);
    let err = Log::open(dir, options()).expect_err("the log must be refused");
    assert!(
        snapshot(dir) == before,
        "a refused open changed files: {err}"
    );
    err
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

fn frame_len(p: &[u8]) -> u64 {
    FRAME_HEADER_LEN + p.len() as u64
}

/// Checks that the reopened log holds exactly `sent`, with a root over their leaf hashes.
fn assert_holds(log: &Log, sent: &[Vec<u8>]) {
    let n = sent.len() as u64;
    assert_eq!(log.size(), n);
    let read: Vec<Vec<u8>> = log
        .read(0, n)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert_eq!(read, sent);
    let hashes: Vec<Hash> = sent.iter().map(|p| merkle::leaf_hash(p)).collect();
    assert_eq!(log.leaf_hashes(0, n).unwrap(), hashes);
    assert_eq!(log.root_at(n).unwrap(), mth(&hashes));
    let want_len: u64 = sent.iter().map(|p| frame_len(p)).sum();
    assert_eq!(file_len(&log.dir().join(ENTRIES_FILE)), want_len);
    assert_eq!(file_len(&log.dir().join(INDEX_FILE)), n * INDEX_RECORD_LEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_dense_indexes_that_read_back_and_prove() {
    let dir = TempDir::new("concurrent");
    let log = Log::open(dir.path(), options()).unwrap();
    let (tasks, per_task) = (64u64, 50u64);
    let mut handles = Vec::new();
    for t in 0..tasks {
        let log = log.clone();
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..per_task {
                let p = format!("task {t} append {i}").into_bytes();
                let r = log.append(p.clone()).await.unwrap();
                // Durable before release: the entry is visible as soon as the receipt is.
                assert!(log.size() > r.index);
                got.push((r, p));
            }
            got
        }));
    }
    let mut receipts = Vec::new();
    for h in handles {
        receipts.extend(h.await.unwrap());
    }
    let n = tasks * per_task;
    receipts.sort_by_key(|(r, _)| r.index);
    let indexes: Vec<u64> = receipts.iter().map(|(r, _)| r.index).collect();
    assert_eq!(indexes, (0..n).collect::<Vec<_>>());
    assert_eq!(log.size(), n);

    let read = log.read(0, n).unwrap();
    for ((i, data), (r, sent)) in read.iter().zip(&receipts) {
        assert_eq!(*i, r.index);
        assert_eq!(data, sent);
        assert_eq!(r.leaf_hash, merkle::leaf_hash(sent));
    }
    let hashes: Vec<Hash> = receipts.iter().map(|(r, _)| r.leaf_hash).collect();
    let cp = log.checkpoint().unwrap();
    assert_eq!(cp.size, n);
    assert_eq!(cp.root, mth(&hashes));

    for (r, _) in receipts.iter().step_by(97).chain(receipts.last()) {
        let proof = log.inclusion_proof(r.index, n).unwrap();
        verify_inclusion(r.index, n, &r.leaf_hash, &proof, &cp.root).unwrap();
        // And in an older tree that already held it.
        let old = r.index + 1;
        let proof = log.inclusion_proof(r.index, old).unwrap();
        verify_inclusion(
            r.index,
            old,
            &r.leaf_hash,
            &proof,
            &mth(&hashes[..old as usize]),
        )
        .unwrap();
    }
    for old in [1, 255, 256, 1000, n - 1, n] {
        let proof = log.consistency_proof(old, n).unwrap();
        let old_root = log.root_at(old).unwrap();
        assert_eq!(old_root, mth(&hashes[..old as usize]));
        verify_consistency(old, n, &old_root, &cp.root, &proof).unwrap();
    }
    log.close().await;

    let again = Log::open(dir.path(), options()).unwrap();
    let sent: Vec<Vec<u8>> = receipts.into_iter().map(|(_, p)| p).collect();
    assert_holds(&again, &sent);
    assert_eq!(again.latest_checkpoint(), Some(cp));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_proofs_refuse_what_is_not_in_the_log() {
    let dir = TempDir::new("range");
    let log = Log::open(dir.path(), options()).unwrap();
    fill(&log, 3).await;
    assert!(matches!(
        log.read(0, 4),
        Err(Error::OutOfRange { size: 3, .. })
    ));
    assert!(matches!(log.read(2, 1), Err(Error::OutOfRange { .. })));
    assert!(matches!(log.leaf_hash(3), Err(Error::OutOfRange { .. })));
    assert!(matches!(
        log.inclusion_proof(3, 3),
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(
        log.inclusion_proof(0, 4),
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(
        log.consistency_proof(0, 3),
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(
        log.consistency_proof(2, 4),
        Err(Error::OutOfRange { .. })
    ));
    assert_eq!(log.read(1, 1).unwrap(), Vec::new());
    assert!(matches!(
        log.append(Vec::new()).await,
        Err(Error::InvalidPayload { len: 0, .. })
    ));
    log.close().await;
    assert!(matches!(log.append(payload(9)).await, Err(Error::Closed)));
    // Reads keep working after close.
    assert_eq!(log.read(0, 3).unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tails_are_cut_back_to_the_last_whole_record() {
    // Each case leaves, after 5 acknowledged entries, what an interrupted write could: bytes of
    // a batch that was never synced, so never indexed or acknowledged.
    let six = payload(6);
    let whole = frame(&six);
    let mut bad_crc = whole.clone();
    bad_crc[4] ^= 0x01;
    let mut bad_byte = whole.clone();
    let last = bad_byte.len() - 1;
    bad_byte[last] ^= 0x80;
    let mut absurd_len = whole.clone();
    absurd_len[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("half a header", whole[..5].to_vec()),
        ("a header without its payload", whole[..8].to_vec()),
        ("a frame cut mid-payload", whole[..whole.len() - 3].to_vec()),
        ("a frame whose CRC field is wrong", bad_crc),
        ("a frame with a flipped payload bit", bad_byte),
        ("a length no entry has", absurd_len),
        ("zeros, as a file extended but not written", vec![0u8; 64]),
        (
            "a whole frame, then garbage",
            [frame(&payload(5)), vec![0xff; 20]].concat(),
        ),
    ];
    for (what, tail) in cases {
        let dir = TempDir::new("torn");
        let log = Log::open(dir.path(), options()).unwrap();
        let mut sent = fill(&log, 5).await;
        log.close().await;
        drop(log);
        let whole_len = file_len(&dir.path().join(ENTRIES_FILE));
        append_raw(dir.path(), &tail);

        let log = Log::open(dir.path(), options()).unwrap_or_else(|e| panic!("{what}: {e}"));
        if what == "a whole frame, then garbage" {
            // A frame that was synced but whose index record or reply was lost is an entry.
            sent.push(payload(5));
        } else {
            assert_eq!(
                file_len(&dir.path().join(ENTRIES_FILE)),
                whole_len,
                "{what}"
            );
        }
        assert_holds(&log, &sent);
        let r = log.append(payload(99)).await.unwrap();
        assert_eq!(r.index, sent.len() as u64, "{what}");
        sent.push(payload(99));
        log.close().await;
        drop(log);
        let log = Log::open(dir.path(), options()).unwrap();
        assert_holds(&log, &sent);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_to_an_acknowledged_entry_is_refused_not_cut() {
    let dir = TempDir::new("durable-damage");
    let log = Log::open(dir.path(), options()).unwrap();
    let sent = fill(&log, 5).await;
    log.close().await;
    drop(log);
    let entries = dir.path().join(ENTRIES_FILE);
    let len = file_len(&entries);

    // The last entry was acknowledged (so indexed): a bad CRC there is damage, not a torn write.
    let last_frame = len - frame_len(&sent[4]);
    let f = OpenOptions::new().write(true).open(&entries).unwrap();
    f.write_all_at(&[0xee], last_frame + 5).unwrap();
    let err = refused(dir.path());
    assert!(
        matches!(&err, Error::Damaged { damage: Damage::Frame { entry: 4, offset, problem, witness: Witness::Index { records: 5 } }, .. }
            if *offset == last_frame && problem.contains("CRC mismatch")),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("entry 4") && text.contains("huitong audit verify"),
        "{text}"
    );

    // Cut short at a frame boundary: acknowledged entries are missing.
    f.set_len(last_frame).unwrap();
    let err = refused(dir.path());
    assert!(
        matches!(
            &err,
            Error::Damaged {
                damage: Damage::Missing { entry: 4, .. },
                ..
            }
        ),
        "{err}"
    );

    // An operator who decides index.bin is the wrong one moves it aside; the log then opens
    // with what entries.log holds.
    fs::rename(
        dir.path().join(INDEX_FILE),
        dir.path().join("index.bin.old"),
    )
    .unwrap();
    let log = Log::open(dir.path(), options()).unwrap();
    assert_holds(&log, &sent[..4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_missing_or_wrong_index_file_is_rebuilt() {
    let dir = TempDir::new("index-bin");
    let log = Log::open(dir.path(), options()).unwrap();
    let sent = fill(&log, 600).await;
    log.close().await;
    drop(log);
    let index = dir.path().join(INDEX_FILE);

    // Lagging, with a partial record at the end (the file is synced after entries.log).
    OpenOptions::new()
        .write(true)
        .open(&index)
        .unwrap()
        .set_len(300 * INDEX_RECORD_LEN + 17)
        .unwrap();
    let log = Log::open(dir.path(), options()).unwrap();
    assert_holds(&log, &sent);
    let root = log.root_at(600).unwrap();
    let proof = log.inclusion_proof(450, 600).unwrap();
    verify_inclusion(450, 600, &merkle::leaf_hash(&sent[450]), &proof, &root).unwrap();
    log.close().await;
    drop(log);

    // Missing.
    fs::remove_file(&index).unwrap();
    let log = Log::open(dir.path(), options()).unwrap();
    assert_holds(&log, &sent);
    log.close().await;
    drop(log);

    // Records never written (zeros, as after a power loss once the file had grown), in the
    // middle and at the end: crash effects, recomputed.
    let f = OpenOptions::new().write(true).open(&index).unwrap();
    f.write_all_at(&[0; 80], 123 * INDEX_RECORD_LEN).unwrap();
    f.write_all_at(&[0; 40], 599 * INDEX_RECORD_LEN).unwrap();
    let log = Log::open(dir.path(), options()).unwrap();
    assert_holds(&log, &sent);
    assert_eq!(log.leaf_hash(124).unwrap(), merkle::leaf_hash(&sent[124]));
    log.close().await;
    drop(log);

    // A record that is wrong is evidence against its entry (or against index.bin): refused,
    // nothing rewritten.
    f.write_all_at(&[0x5a; 40], 123 * INDEX_RECORD_LEN).unwrap();
    let err = refused(dir.path());
    assert!(
        matches!(&err, Error::Damaged { damage: Damage::LeafHashDiffers { entry: 123, stored, .. }, .. }
            if *stored == merkle::hex(&[0x5a; 32])),
        "{err}"
    );
    // A record whose hash is right but whose offset is not.
    f.write_all_at(
        &index_record(&merkle::leaf_hash(&sent[123]), 7),
        123 * INDEX_RECORD_LEN,
    )
    .unwrap();
    let err = refused(dir.path());
    assert!(
        matches!(
            &err,
            Error::Damaged {
                damage: Damage::OffsetDiffers {
                    entry: 123,
                    stored: 7,
                    ..
                },
                ..
            }
        ),
        "{err}"
    );
    // The operator who decides index.bin is the damaged file moves it aside.
    fs::rename(&index, dir.path().join("index.bin.evidence")).unwrap();
    let log = Log::open(dir.path(), options()).unwrap();
    assert_holds(&log, &sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_verify_and_guard_the_signed_history() {
    let dir = TempDir::new("checkpoint");
    let log = Log::open(dir.path(), options()).unwrap();
    assert_eq!(log.latest_checkpoint(), None);
    let sent = fill(&log, 20).await;
    let cp = log.checkpoint().unwrap();
    let vkey = log.verifier_key();
    // Entries after the checkpoint are not covered by it.
    let mut sent = sent;
    sent.extend(fill_from(&log, 20, 5).await);
    log.close().await;
    drop(log);

    let mode = fs::metadata(dir.path().join(KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let log = Log::open(dir.path(), options()).unwrap();
    assert_eq!(log.verifier_key(), vkey);
    let stored = log.latest_checkpoint().unwrap();
    assert_eq!(stored, cp);
    let body = Verifier::from_vkey(&vkey)
        .unwrap()
        .verify(&stored.note)
        .unwrap();
    assert_eq!(
        (body.origin.as_str(), body.size, body.root),
        ("test.example/log", 20, cp.root)
    );
    assert_holds(&log, &sent);
    log.close().await;
    drop(log);

    let entries = dir.path().join(ENTRIES_FILE);
    let pristine = fs::read(&entries).unwrap();

    // Change one byte inside entry 7's payload and fix its CRC, as a careful forger would.
    let offset: u64 = sent[..7].iter().map(|p| frame_len(p)).sum();
    let mut forged = sent[7].clone();
    forged[0] ^= 0x20;
    let f = OpenOptions::new().write(true).open(&entries).unwrap();
    f.write_all_at(&frame(&forged), offset).unwrap();
    let err = refused(dir.path());
    match &err {
        Error::Damaged {
            damage:
                Damage::LeafHashDiffers {
                    entry: 7,
                    offset: at,
                    stored,
                    recomputed,
                },
            ..
        } => {
            assert_eq!(*at, offset);
            assert_eq!(stored, &merkle::hex(&merkle::leaf_hash(&sent[7])));
            assert_eq!(recomputed, &merkle::hex(&merkle::leaf_hash(&forged)));
        }
        other => panic!("expected entry 7's leaf hash to differ, got {other}"),
    }

    // A more careful forger rewrites index.bin too: only the signed root is left to tell.
    let index = dir.path().join(INDEX_FILE);
    let pristine_index = fs::read(&index).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&index)
        .unwrap()
        .write_all_at(
            &index_record(&merkle::leaf_hash(&forged), offset),
            7 * INDEX_RECORD_LEN,
        )
        .unwrap();
    let err = refused(dir.path());
    assert!(
        matches!(&err, Error::Damaged { damage: Damage::RootDiffers { size: 20, signed_root, root }, .. }
            if *signed_root == merkle::hex(&cp.root) && root != signed_root),
        "{err}"
    );
    fs::write(&index, &pristine_index).unwrap();

    // Truncated below the signed size, at a frame boundary and mid-frame.
    fs::write(&entries, &pristine).unwrap();
    for cut in [offset, offset + 3] {
        f.set_len(cut).unwrap();
        let err = refused(dir.path());
        let damage = match &err {
            Error::Damaged { damage, .. } => damage,
            other => panic!("{other}"),
        };
        assert_eq!(damage.entry(), Some(7), "{err}");
        if cut == offset {
            assert!(matches!(damage, Damage::Missing { .. }), "{err}");
        } else {
            assert!(matches!(damage, Damage::Frame { .. }), "{err}");
        }
        // Without index.bin, the checkpoint alone says the entries were durable.
        fs::rename(&index, dir.path().join("index.bin.away")).unwrap();
        let err = refused(dir.path());
        assert!(
            matches!(&err, Error::Damaged { damage, .. }
                if damage.entry() == Some(7) && err.to_string().contains("checkpoint covers 20 entries")),
            "{err}"
        );
        fs::rename(dir.path().join("index.bin.away"), &index).unwrap();
        fs::write(&entries, &pristine).unwrap();
    }

    // A checkpoint signed by another key.
    let other = Signer::generate("test.example/log").unwrap();
    let foreign = other
        .sign_checkpoint(&CheckpointBody {
            origin: "test.example/log".into(),
            size: 20,
            root: cp.root,
        })
        .unwrap();
    let checkpoint = dir.path().join(CHECKPOINT_FILE);
    fs::write(&checkpoint, &foreign).unwrap();
    let err = refused(dir.path());
    assert!(
        matches!(
            err,
            Error::CheckpointMismatch {
                checkpoint_size: 20,
                ..
            }
        ),
        "{err}"
    );
    fs::write(&checkpoint, &cp.note).unwrap();

    // A different origin is a different log.
    let renamed = LogOptions {
        origin: "other.example/log".into(),
        ..options()
    };
    let err = Log::open(dir.path(), renamed).unwrap_err();
    assert!(matches!(err, Error::CheckpointMismatch { .. }), "{err}");

    // Without its key, the log cannot go on signing the same history.
    let key = dir.path().join(KEY_FILE);
    fs::rename(&key, dir.path().join("log.key.away")).unwrap();
    assert!(matches!(
        Log::open(dir.path(), options()),
        Err(Error::Key(_))
    ));
    fs::rename(dir.path().join("log.key.away"), &key).unwrap();

    let log = Log::open(dir.path(), options()).unwrap();
    assert_holds(&log, &sent);
}

async fn fill_from(log: &Log, first: u64, n: u64) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    for i in first..first + n {
        let r = log.append(payload(i)).await.unwrap();
        assert_eq!(r.index, i);
        sent.push(payload(i));
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_shares_syncs_and_a_lone_append_does_not_wait() {
    let dir = TempDir::new("group-commit");
    let log = Log::open(dir.path(), options()).unwrap();

    // A lone append: one sync, no waiting for company.
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), log.append(payload(0)))
        .await
        .expect("a lone append completes without a batch filling up")
        .unwrap();
    let lone = started.elapsed();
    assert_eq!(
        log.stats(),
        LogStats {
            appends: 1,
            syncs: 1
        }
    );

    let appenders = 256;
    let rounds = 8;
    let barrier = Arc::new(tokio::sync::Barrier::new(appenders));
    let mut handles = Vec::new();
    for t in 0..appenders {
        let log = log.clone();
        let barrier = Arc::clone(&barrier);
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            for i in 0..rounds {
                log.append(format!("{t}/{i}").into_bytes()).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let stats = log.stats();
    let appends = (appenders * rounds) as u64;
    assert_eq!(stats.appends, appends + 1);
    let syncs = stats.syncs - 1;
    println!(
        "lone append {lone:?}; {appends} appends from {appenders} appenders took {syncs} syncs"
    );
    assert!(
        syncs * 8 <= appends,
        "{syncs} syncs for {appends} concurrent appends: the writer is not batching"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_batch_bounds_a_commit() {
    let dir = TempDir::new("max-batch");
    let log = Log::open(
        dir.path(),
        LogOptions {
            max_batch: 4,
            ..options()
        },
    )
    .unwrap();
    let mut handles = Vec::new();
    for t in 0..64u64 {
        let log = log.clone();
        handles.push(tokio::spawn(async move {
            log.append(payload(t)).await.unwrap()
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let stats = log.stats();
    assert_eq!(stats.appends, 64);
    assert!(stats.syncs >= 16, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_handle_stops_the_writer_and_keeps_the_entries() {
    let dir = TempDir::new("drop");
    let log = Log::open(dir.path(), options()).unwrap();
    let sent = fill(&log, 3).await;
    let done = log.inner.done.clone();
    drop(log);
    let mut done = done;
    tokio::time::timeout(Duration::from_secs(5), done.wait_for(|d| *d))
        .await
        .expect("the writer stops once no handle is left")
        .unwrap();
    let log = Log::open(dir.path(), options()).unwrap();
    assert_holds(&log, &sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_io_failure_halts_the_writer_and_every_waiter_hears_why() {
    let dir = TempDir::new("halt");
    // Every write to index.bin fails (ENOSPC), after the entries themselves were synced.
    std::os::unix::fs::symlink("/dev/full", dir.path().join(INDEX_FILE)).unwrap();
    let log = Log::open(dir.path(), options()).unwrap();
    let err = log.append(payload(0)).await.unwrap_err();
    assert!(
        matches!(&err, Error::Io { action: "write", path, .. } if path.ends_with(INDEX_FILE)),
        "{err}"
    );
    // Not visible: the writer stopped before publishing it.
    assert_eq!(log.size(), 0);
    let err = log.append(payload(1)).await.unwrap_err();
    assert!(
        matches!(&err, Error::Halted { reason } if reason.contains("index.bin")),
        "{err}"
    );
    log.close().await;
    assert!(matches!(
        log.append(payload(2)).await,
        Err(Error::Halted { .. })
    ));
    drop(log);

    // The entry was durable; with a working index.bin, reopening finds it.
    fs::remove_file(dir.path().join(INDEX_FILE)).unwrap();
    let log = Log::open(dir.path(), options()).unwrap();
    assert_holds(&log, &[payload(0)]);
}

#[test]
fn unusable_origins_are_refused() {
    let dir = TempDir::new("origin");
    for origin in ["", "two\nlines", "\u{2014} dash"] {
        let o = LogOptions {
            origin: origin.into(),
            ..options()
        };
        assert!(
            matches!(Log::open(dir.path(), o), Err(Error::Config(_))),
            "{origin:?}"
        );
    }
}

/// Appends per second with 1, 16 and 256 concurrent appenders, on the real disk under the temp
/// dir. Not a pass/fail test; run with
/// `cargo test --release -p huitong-audit throughput -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn throughput() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for appenders in [1usize, 16, 256] {
        let dir = TempDir::new("throughput");
        let log = Log::open(dir.path(), options()).unwrap();
        let record = vec![0x42u8; 300];
        let run_for = Duration::from_secs(3);
        let started = Instant::now();
        let done: u64 = rt.block_on(async {
            let mut handles = Vec::new();
            for _ in 0..appenders {
                let log = log.clone();
                let record = record.clone();
                handles.push(tokio::spawn(async move {
                    let mut n = 0u64;
                    while started.elapsed() < run_for {
                        log.append(record.clone()).await.unwrap();
                        n += 1;
                    }
                    n
                }));
            }
            let mut total = 0;
            for h in handles {
                total += h.await.unwrap();
            }
            log.close().await;
            total
        });
        let secs = started.elapsed().as_secs_f64();
        let stats = log.stats();
        println!(
            "{appenders:>3} appenders: {:>8.0} appends/s, {:>6.0} syncs/s, {:.1} appends per sync",
            done as f64 / secs,
            stats.syncs as f64 / secs,
            stats.appends as f64 / stats.syncs.max(1) as f64
        );
    }
}
