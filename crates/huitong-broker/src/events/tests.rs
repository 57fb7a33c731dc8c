use huitong_proto::v1::{Record, Value};

use std::path::Path;

use super::*;

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "huitong-events-{tag}-{}-{:?}",
        std::process::id(),
        std::time::Instant::now()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn change(n: i64) -> ChangeEvent {
    let mut key = HashMap::new();
    key.insert("id".to_owned(), Value::int(n));
    let mut record = Record::default();
    record.fields.insert("id".into(), Value::int(n));
    ChangeEvent {
        resource: "r".into(),
        key,
        record: Some(record),
        cursor: format!("c{n}"),
    }
}

const KEEP: Retention = Retention {
    max_age: Duration::from_secs(3600),
    max_events: 100,
};

fn resource() -> ResourceId {
    ResourceId::parse("civil-affairs/deaths").unwrap()
}

#[tokio::test]
async fn events_are_numbered_without_gaps_and_survive_a_reopen_with_their_cursor() {
    let dir = tempdir("reopen");
    {
        let log = EventLog::open(&dir, KEEP, &dir.join(KEYS_DIR)).unwrap();
        assert_eq!(log.latest(&resource()).unwrap(), 0);
        assert_eq!(log.cursor(&resource()).unwrap(), "");
        let mut rx = log.subscribe_latest(&resource()).unwrap();
        assert_eq!(
            log.append(&resource(), vec![change(1), change(2)], "c2")
                .await
                .unwrap(),
            2
        );
        assert_eq!(*rx.borrow_and_update(), 2);
        let mut deleted = change(3);
        deleted.record = None;
        log.append(&resource(), vec![deleted], "c3").await.unwrap();
    }
    let log = EventLog::open(&dir, KEEP, &dir.join(KEYS_DIR)).unwrap();
    assert_eq!(log.latest(&resource()).unwrap(), 3);
    assert_eq!(log.cursor(&resource()).unwrap(), "c3");
    let all = log.read(&resource(), 0, 100).unwrap();
    assert_eq!(
        all.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(all[2].deleted && all[2].record.is_none());
    assert!(all[0].received_at.is_some());
    assert_eq!(log.read(&resource(), 1, 1).unwrap()[0].sequence, 2);
    assert!(log.read(&resource(), 3, 10).unwrap().is_empty());
    // Another resource has its own numbering.
    let other = ResourceId::parse("civil-affairs/births").unwrap();
    assert_eq!(log.append(&other, vec![change(9)], "x").await.unwrap(), 1);
    log.forget_cursor(&resource()).unwrap();
    assert_eq!(log.cursor(&resource()).unwrap(), "");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn acknowledgements_only_move_forward_and_need_an_open_subscription() {
    let dir = tempdir("ack");
    let log = EventLog::open(&dir, KEEP, &dir.join(KEYS_DIR)).unwrap();
    let c = DeptId::new("public-security").unwrap();
    assert_eq!(log.position(&c, &resource(), "default").unwrap(), None);
    assert_eq!(
        log.acknowledge(&c, &resource(), "default", 5).unwrap(),
        None
    );
    assert_eq!(
        log.open_subscription(&c, &resource(), "default", 3)
            .unwrap()
            .acknowledged,
        3
    );
    // Opening again keeps the position.
    assert_eq!(
        log.open_subscription(&c, &resource(), "default", 0)
            .unwrap()
            .acknowledged,
        3
    );
    assert_eq!(
        log.acknowledge(&c, &resource(), "default", 7).unwrap(),
        Some(7)
    );
    assert_eq!(
        log.acknowledge(&c, &resource(), "default", 4).unwrap(),
        Some(7)
    );
    // Subscriptions are per consumer and name.
    assert_eq!(log.position(&c, &resource(), "audit").unwrap(), None);
    let other = DeptId::new("health").unwrap();
    assert_eq!(log.position(&other, &resource(), "default").unwrap(), None);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn retention_drops_the_oldest_by_count_as_events_arrive_and_by_age() {
    let dir = tempdir("retention");
    let log = EventLog::open(
        &dir,
        Retention {
            max_age: Duration::from_secs(3600),
            max_events: 4,
        },
        &dir.join(KEYS_DIR),
    )
    .unwrap();
    log.append(&resource(), (1..=10).map(change).collect(), "c")
        .await
        .unwrap();
    assert_eq!(log.first_retained(&resource()).unwrap(), 7);
    assert_eq!(log.read(&resource(), 0, 100).unwrap()[0].sequence, 7);
    assert_eq!(log.apply_retention(SystemTime::now()).unwrap(), 0);
    // Two hours later, everything is too old; numbering carries on regardless.
    let later = SystemTime::now() + Duration::from_secs(7200);
    assert_eq!(log.apply_retention(later).unwrap(), 4);
    assert_eq!(log.first_retained(&resource()).unwrap(), 11);
    assert!(log.read(&resource(), 0, 100).unwrap().is_empty());
    assert_eq!(
        log.append(&resource(), vec![change(11)], "c")
            .await
            .unwrap(),
        11
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

const SECRET_ID: &str = "11010519491231002X";

fn personal_change(seq: i64) -> ChangeEvent {
    let mut c = change(seq);
    c.key.insert("id_number".into(), Value::string(SECRET_ID));
    if let Some(r) = &mut c.record {
        r.fields.insert("name".into(), Value::string("张国华"));
    }
    c
}

/// Every file under `dir`, read whole.
fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

fn holds(bytes: &[u8], text: &str) -> bool {
    bytes.windows(text.len()).any(|w| w == text.as_bytes())
}

#[tokio::test]
async fn events_and_cursors_are_sealed_on_disk_and_read_back_whole() {
    let dir = tempdir("sealed");
    let cursor = format!("s1.cursor-with-{SECRET_ID}");
    {
        let log = EventLog::open(&dir, KEEP, &dir.join(KEYS_DIR)).unwrap();
        log.append(&resource(), vec![personal_change(1)], &cursor)
            .await
            .unwrap();
        let back = log.read(&resource(), 0, 10).unwrap();
        assert_eq!(back[0].key["id_number"], Value::string(SECRET_ID));
        assert_eq!(
            back[0].record.as_ref().unwrap().fields["name"],
            Value::string("张国华")
        );
        assert_eq!(log.cursor(&resource()).unwrap(), cursor);
        log.flush().await.unwrap();
    }
    let stored = files(&dir.join("events.sled"));
    assert!(!stored.is_empty());
    for (path, bytes) in &stored {
        for secret in [SECRET_ID, "张国华", "cursor-with"] {
            assert!(!holds(bytes, secret), "{} holds {secret}", path.display());
        }
    }
    // Reopened, with the same keys: the same event and cursor.
    let log = EventLog::open(&dir, KEEP, &dir.join(KEYS_DIR)).unwrap();
    assert_eq!(log.read(&resource(), 0, 10).unwrap().len(), 1);
    assert_eq!(log.cursor(&resource()).unwrap(), cursor);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn an_event_moved_to_another_place_does_not_open() {
    let dir = tempdir("swap");
    let log = EventLog::open(&dir, KEEP, &dir.join(KEYS_DIR)).unwrap();
    log.append(&resource(), vec![change(1), change(2)], "c")
        .await
        .unwrap();
    let first = log.events.get(event_key(&resource(), 1)).unwrap().unwrap();
    log.events.insert(event_key(&resource(), 2), first).unwrap();
    assert!(matches!(
        log.read(&resource(), 1, 10),
        Err(EventError::Corrupt { .. })
    ));
    // Nor one moved to another resource.
    let other = ResourceId::parse("civil-affairs/births").unwrap();
    let v = log.events.get(event_key(&resource(), 1)).unwrap().unwrap();
    log.meta.insert(meta_key("seq", &other), &be(1)).unwrap();
    log.events.insert(event_key(&other, 1), v).unwrap();
    assert!(matches!(
        log.read(&other, 0, 10),
        Err(EventError::Corrupt { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn events_whose_key_is_gone_are_dropped_as_expired() {
    let dir = tempdir("key-gone");
    let keys_dir = dir.join("elsewhere");
    {
        let log = EventLog::open(&dir, KEEP, &keys_dir).unwrap();
        log.append(&resource(), vec![change(1), change(2)], "c2")
            .await
            .unwrap();
        log.flush().await.unwrap();
    }
    // The keys kept apart are lost (or were never copied with the data directory).
    std::fs::remove_dir_all(&keys_dir).unwrap();
    let log = EventLog::open(&dir, KEEP, &keys_dir).unwrap();
    assert!(log.read(&resource(), 0, 10).unwrap().is_empty());
    // Dropped like expired events: numbering carries on, the oldest retained moved past them,
    // so a subscriber at 0 is told to resynchronise.
    assert_eq!(log.first_retained(&resource()).unwrap(), 3);
    assert_eq!(log.latest(&resource()).unwrap(), 2);
    // The cursor sealed under the lost key is gone too: follow the provider afresh.
    assert_eq!(log.cursor(&resource()).unwrap(), "");
    assert_eq!(
        log.append(&resource(), vec![change(3)], "c3")
            .await
            .unwrap(),
        3
    );
    assert_eq!(log.read(&resource(), 2, 10).unwrap()[0].sequence, 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn retention_destroys_the_keys_of_days_it_has_passed() {
    let dir = tempdir("shred");
    let log = EventLog::open(&dir, KEEP, &dir.join(KEYS_DIR)).unwrap();
    log.append(&resource(), vec![change(1)], "c1")
        .await
        .unwrap();
    assert_eq!(log.keys().days().len(), 1);
    // Within the hour kept: nothing dropped, no key destroyed.
    assert_eq!(log.apply_retention(SystemTime::now()).unwrap(), 0);
    assert_eq!(log.keys().days().len(), 1);
    // Two days on, the event is past retention and so is its day: the key is destroyed.
    let later = SystemTime::now() + Duration::from_secs(2 * 86_400);
    assert_eq!(log.apply_retention(later).unwrap(), 1);
    assert!(log.keys().days().is_empty());
    assert_eq!(log.keys().destroyed().len(), 1);
    assert!(
        std::fs::read_dir(dir.join(KEYS_DIR))
            .unwrap()
            .all(|e| { !e.unwrap().file_name().to_string_lossy().ends_with(".key") })
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_log_from_before_sealing_is_rewritten_without_its_plain_events() {
    let dir = tempdir("migrate");
    let c = DeptId::new("social-insurance").unwrap();
    {
        // As an earlier broker wrote it: whole events and the cursor in plain text.
        let db = sled::open(dir.join("events.sled")).unwrap();
        let (events, meta, subs) = (
            db.open_tree("events").unwrap(),
            db.open_tree("meta").unwrap(),
            db.open_tree("subscriptions").unwrap(),
        );
        for seq in 1..=3u64 {
            let e = Event {
                sequence: seq,
                resource: resource().to_string(),
                key: personal_change(1).key,
                record: personal_change(1).record,
                deleted: false,
                received_at: None,
            };
            events
                .insert(event_key(&resource(), seq), e.encode_to_vec())
                .unwrap();
        }
        meta.insert(meta_key("seq", &resource()), &be(3)).unwrap();
        meta.insert(meta_key("cursor", &resource()), "epoch.3")
            .unwrap();
        subs.insert(subscription_key(&c, &resource(), "deaths"), &be(2))
            .unwrap();
        db.flush().unwrap();
    }
    let log = EventLog::open(&dir, KEEP, &dir.join(KEYS_DIR)).unwrap();
    assert_eq!(log.latest(&resource()).unwrap(), 3);
    assert_eq!(log.first_retained(&resource()).unwrap(), 4);
    assert!(log.read(&resource(), 0, 10).unwrap().is_empty());
    assert_eq!(log.cursor(&resource()).unwrap(), "epoch.3");
    assert_eq!(
        log.position(&c, &resource(), "deaths").unwrap(),
        Some(Position { acknowledged: 2 })
    );
    for (path, bytes) in files(&dir) {
        assert!(!holds(&bytes, SECRET_ID), "{} holds the id", path.display());
    }
    assert!(!dir.join("events.sled.plain").exists());
    drop(log);
    // Once rewritten, it is not rewritten again.
    let log = EventLog::open(&dir, KEEP, &dir.join(KEYS_DIR)).unwrap();
    log.append(&resource(), vec![change(4)], "epoch.4")
        .await
        .unwrap();
    drop(log);
    let log = EventLog::open(&dir, KEEP, &dir.join(KEYS_DIR)).unwrap();
    assert_eq!(log.read(&resource(), 3, 10).unwrap()[0].sequence, 4);
    std::fs::remove_dir_all(&dir).unwrap();
}
