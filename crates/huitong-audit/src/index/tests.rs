use std::fs;

use super::*;
use crate::store::tests::{TempDir, options};

const BASE: i64 = 1_794_744_000_000_000;

/// A varied record for log entry `i`. Times are not in index order, as with concurrent appends.
fn record(i: u64) -> ExchangeRecord {
    ExchangeRecord {
        time_micros: BASE + ((i * 37) % 300) as i64 * 1000,
        request_id: format!("req-{i}"),
        kind: ["query", "search", "approved"][(i % 3) as usize].into(),
        official: match i % 6 {
            0 => vec![0xa1; 32],
            1 => vec![0xb2; 32],
            _ => Vec::new(),
        },
        case_ref: if i.is_multiple_of(5) {
            format!("case-{}", i % 3)
        } else {
            String::new()
        },
        consumer: ["civil-affairs", "tax", "health"][(i % 3) as usize].into(),
        provider: ["public-security", "housing"][(i % 2) as usize].into(),
        resource: format!("res-{}", i % 5),
        outcome: if i.is_multiple_of(7) {
            "refused"
        } else {
            "answered"
        }
        .into(),
        subject: if i.is_multiple_of(4) {
            vec![(i % 10) as u8; 32]
        } else {
            Vec::new()
        },
        subject_period: "2026-11".into(),
        ..ExchangeRecord::default()
    }
}

fn matches(f: &EntryFilter, r: &ExchangeRecord) -> bool {
    let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
    eq(&f.consumer, &r.consumer)
        && eq(&f.provider, &r.provider)
        && eq(&f.resource, &r.resource)
        && eq(&f.outcome, &r.outcome)
        && eq(&f.kind, &r.kind)
        && eq(&f.case_ref, &r.case_ref)
        && (f.officials.is_empty() || f.officials.iter().any(|o| o[..] == r.official[..]))
        && f.since_micros.is_none_or(|s| r.time_micros >= s)
        && f.until_micros.is_none_or(|u| r.time_micros < u)
}

fn expected(
    records: &[ExchangeRecord],
    f: &EntryFilter,
    start: u64,
    end: u64,
    limit: usize,
) -> Vec<u64> {
    (start..end.min(records.len() as u64))
        .filter(|&i| matches(f, &records[i as usize]))
        .take(limit)
        .collect()
}

fn filters() -> Vec<EntryFilter> {
    let s = |v: &str| Some(v.to_owned());
    vec![
        EntryFilter::default(),
        EntryFilter {
            consumer: s("tax"),
            ..Default::default()
        },
        EntryFilter {
            consumer: s("nobody"),
            ..Default::default()
        },
        EntryFilter {
            provider: s("housing"),
            outcome: s("refused"),
            ..Default::default()
        },
        EntryFilter {
            consumer: s("health"),
            provider: s("public-security"),
            resource: s("res-3"),
            outcome: s("answered"),
            ..Default::default()
        },
        EntryFilter {
            since_micros: Some(BASE + 100_000),
            until_micros: Some(BASE + 120_000),
            ..Default::default()
        },
        EntryFilter {
            since_micros: Some(BASE + 250_000),
            ..Default::default()
        },
        EntryFilter {
            until_micros: Some(BASE + 5_000),
            ..Default::default()
        },
        EntryFilter {
            resource: s("res-1"),
            since_micros: Some(BASE + 50_000),
            until_micros: Some(BASE + 200_000),
            ..Default::default()
        },
        EntryFilter {
            outcome: s("refused"),
            until_micros: Some(BASE + 150_000),
            ..Default::default()
        },
        EntryFilter {
            since_micros: Some(BASE + 10),
            until_micros: Some(BASE + 10),
            ..Default::default()
        },
        EntryFilter {
            kind: s("search"),
            consumer: s("tax"),
            ..Default::default()
        },
        EntryFilter {
            case_ref: s("case-1"),
            ..Default::default()
        },
        EntryFilter {
            // One official's HMACs in two periods: either matches.
            officials: vec![[0xa1; 32], [0xb2; 32]],
            ..Default::default()
        },
        EntryFilter {
            officials: vec![[0xb2; 32], [0xc3; 32]],
            kind: s("query"),
            since_micros: Some(BASE + 20_000),
            ..Default::default()
        },
        EntryFilter {
            officials: vec![[0xc3; 32]],
            ..Default::default()
        },
    ]
}

fn check_answers(index: &Index, records: &[ExchangeRecord]) {
    let n = records.len() as u64;
    for f in filters() {
        for (start, end) in [
            (0, n),
            (0, n + 50),
            (17, 203),
            (250, 260),
            (n, n + 1),
            (9, 3),
        ] {
            for limit in [usize::MAX, 5, 1, 0] {
                assert_eq!(
                    index.query(&f, start, end, limit).unwrap(),
                    expected(records, &f, start, end, limit),
                    "{f:?} [{start}, {end}) limit {limit}"
                );
            }
        }
    }
    for s in 0..11u8 {
        let subject = [s; 32];
        let want: Vec<u64> = (0..n)
            .filter(|&i| records[i as usize].subject.as_slice() == subject.as_slice())
            .collect();
        assert_eq!(index.by_subject(&subject).unwrap(), want, "subject {s}");
    }
}

async fn log_with(dir: &Path, n: u64) -> (Log, Vec<ExchangeRecord>) {
    let log = Log::open(dir, options()).unwrap();
    let mut records = Vec::new();
    for i in 0..n {
        let r = record(i);
        assert_eq!(log.append(r.encode_to_vec()).await.unwrap().index, i);
        records.push(r);
    }
    (log, records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_return_exactly_the_matching_entries_and_survive_a_rebuild() {
    let dir = TempDir::new("index");
    let (log, records) = log_with(dir.path(), 300).await;
    let index = Index::open(dir.path()).unwrap();
    assert_eq!(index.indexed_size().unwrap(), 0);
    index.catch_up(&log).unwrap();
    assert_eq!(index.indexed_size().unwrap(), 300);
    check_answers(&index, &records);

    // Later appends are picked up incrementally.
    let mut records = records;
    for i in 300..340 {
        let r = record(i);
        log.append(r.encode_to_vec()).await.unwrap();
        records.push(r);
    }
    // Until then they are not indexed, so not returned.
    assert_eq!(
        index
            .query(&EntryFilter::default(), 0, 340, usize::MAX)
            .unwrap()
            .len(),
        300
    );
    index.catch_up(&log).unwrap();
    assert_eq!(index.indexed_size().unwrap(), 340);
    check_answers(&index, &records);

    // Deleted outright, the index is rebuilt from the log with the same answers.
    drop(index);
    fs::remove_dir_all(dir.path().join(INDEX_DIR)).unwrap();
    let index = Index::open(dir.path()).unwrap();
    index.catch_up(&log).unwrap();
    assert_eq!(index.indexed_size().unwrap(), 340);
    check_answers(&index, &records);

    // Persisted: a reopened index needs no work and answers the same.
    drop(index);
    let index = Index::open(dir.path()).unwrap();
    assert_eq!(index.indexed_size().unwrap(), 340);
    check_answers(&index, &records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_from_another_log_is_rebuilt() {
    let dir = TempDir::new("index-other");
    let (log, _) = log_with(&dir.path().join("a"), 30).await;
    let index = Index::open(dir.path()).unwrap();
    index.catch_up(&log).unwrap();

    // A log with different entries, longer and shorter.
    for n in [50, 10] {
        let other_dir = TempDir::new("index-other-log");
        let other = Log::open(other_dir.path(), options()).unwrap();
        let mut records = Vec::new();
        for i in 0..n {
            let mut r = record(i);
            r.request_id = format!("other-{i}");
            other.append(r.encode_to_vec()).await.unwrap();
            records.push(r);
        }
        index.catch_up(&other).unwrap();
        assert_eq!(index.indexed_size().unwrap(), n);
        check_answers(&index, &records);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_that_are_not_records_are_skipped() {
    let dir = TempDir::new("index-junk");
    let log = Log::open(dir.path(), options()).unwrap();
    log.append(record(0).encode_to_vec()).await.unwrap();
    // Field 1 as a length-delimited value where an int64 belongs: not an ExchangeRecord.
    log.append(vec![0x0a, 0x02, 0xff, 0xff]).await.unwrap();
    log.append(record(2).encode_to_vec()).await.unwrap();
    let index = Index::open(dir.path()).unwrap();
    index.catch_up(&log).unwrap();
    assert_eq!(index.indexed_size().unwrap(), 3);
    assert_eq!(
        index
            .query(
                &EntryFilter {
                    outcome: Some("refused".into()),
                    ..Default::default()
                },
                0,
                3,
                10
            )
            .unwrap(),
        [0]
    );
    assert_eq!(
        index
            .query(
                &EntryFilter {
                    outcome: Some("answered".into()),
                    ..Default::default()
                },
                0,
                3,
                10
            )
            .unwrap(),
        [2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_indexed_one_at_a_time_answer_the_same() {
    // A quiet broker catches up after nearly every append: many one-entry blocks.
    let dir = TempDir::new("index-small-steps");
    let log = Log::open(dir.path(), options()).unwrap();
    let index = Index::open(dir.path()).unwrap();
    let mut records = Vec::new();
    for i in 0..300 {
        let r = record(i);
        log.append(r.encode_to_vec()).await.unwrap();
        records.push(r);
        if i % 3 != 1 {
            index.catch_up(&log).unwrap();
        }
    }
    index.catch_up(&log).unwrap();
    check_answers(&index, &records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_redone_after_a_crash_overlaps_and_answers_stay_exact() {
    let dir = TempDir::new("index-redo");
    let (log, records) = log_with(dir.path(), 300).await;
    let index = Index::open(dir.path()).unwrap();
    // A crash after writing the blocks of a step [0, 120) but before moving the mark: the next
    // catch-up redoes the step from 0, longer, and its blocks cover the earlier ones.
    let mut step = Step::default();
    for (i, r) in records.iter().enumerate().take(120) {
        step.add(i as u64, r);
    }
    index.apply(step).unwrap();
    assert_eq!(index.indexed_size().unwrap(), 0);
    index.catch_up(&log).unwrap();
    check_answers(&index, &records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_in_the_old_layout_is_rebuilt() {
    let dir = TempDir::new("index-layout");
    let (log, records) = log_with(dir.path(), 50).await;
    {
        // The first layout: a key per entry, a `times` tree, no layout mark, marked complete.
        let db = open_sled(&dir.path().join(INDEX_DIR), 1 << 20).unwrap();
        db.open_tree("consumer")
            .unwrap()
            .insert(value_key(b"tax", 1), &[][..])
            .unwrap();
        db.open_tree("times")
            .unwrap()
            .insert(1u64.to_be_bytes(), &time_bytes(BASE)[..])
            .unwrap();
        db.insert(INDEXED_SIZE, &50u64.to_be_bytes()[..]).unwrap();
        db.flush().unwrap();
    }
    let index = Index::open(dir.path()).unwrap();
    assert_eq!(index.indexed_size().unwrap(), 0, "the old index is cleared");
    assert!(!index.db.tree_names().iter().any(|n| n.as_ref() == b"times"));
    index.catch_up(&log).unwrap();
    check_answers(&index, &records);
}

#[test]
fn damaged_blocks_are_reported_not_misread() {
    let dir = TempDir::new("index-damaged");
    let index = Index::open(dir.path()).unwrap();
    index
        .consumer
        .insert(value_key(b"tax", 5), &[0xff][..])
        .unwrap();
    index.set_indexed_size(10).unwrap();
    let err = index
        .query(
            &EntryFilter {
                consumer: Some("tax".into()),
                ..Default::default()
            },
            0,
            10,
            10,
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::IndexDamaged { .. }),
        "{err}: a truncated varint must not decode"
    );
    assert!(err.to_string().contains("delete it"), "{err}");
}

#[test]
fn blocks_round_trip() {
    let lists: [&[u64]; 4] = [&[0], &[5, 6, 7, 1000, u64::MAX], &[u64::MAX], &[1, 2]];
    for l in lists {
        assert_eq!(decode_block(&encode_block(l)).unwrap(), l);
    }
    assert_eq!(decode_block(&[]), None, "an empty block is damage");
    assert_eq!(decode_block(&[5, 0]), None, "indexes must ascend");
    let times = [
        (3, i64::MIN),
        (4, i64::MAX),
        (9, -1),
        (10, 0),
        (u64::MAX, BASE),
    ];
    assert_eq!(
        decode_time_block(&encode_time_block(&times)).unwrap(),
        times
    );
    for t in [i64::MIN, -1_000_001, -1, 0, 999_999, 1_000_000, i64::MAX] {
        let b = i128::from(bucket(t)) * i128::from(BUCKET_MICROS);
        assert!(b <= i128::from(t) && i128::from(t) < b + i128::from(BUCKET_MICROS));
        assert_eq!(unzigzag(zigzag(t)), t);
    }
    assert_eq!(bucket(-1), -1, "buckets round down before the epoch too");
}

#[test]
fn times_sort_across_the_epoch() {
    let times = [i64::MIN, -1_000_000, -1, 0, 1, BASE, i64::MAX];
    for pair in times.windows(2) {
        assert!(time_bytes(pair[0]) < time_bytes(pair[1]));
        assert_eq!(time_from_bytes(&time_bytes(pair[0])), Some(pair[0]));
    }
}
