use huitong_proto::v1::{Record, Value};

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
        let log = EventLog::open(&dir, KEEP).unwrap();
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
    let log = EventLog::open(&dir, KEEP).unwrap();
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
    let log = EventLog::open(&dir, KEEP).unwrap();
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
