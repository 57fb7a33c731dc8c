use std::time::Duration;

use tokio_stream::StreamExt;

use super::*;

fn rn(name: &str) -> ResourceName {
    ResourceName::new(name).unwrap()
}

fn rec(name: &str) -> Record {
    let mut r = Record::default();
    r.fields.insert("name".into(), Value::string(name));
    r
}

fn publish(feed: &ChangeFeed, resource: &ResourceName, id: i64, name: Option<&str>) -> String {
    feed.publish(resource, [("id", Value::int(id))], name.map(rec))
}

async fn next(stream: &mut ChangeStream) -> Result<Change, SourceError> {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("a change within 5 s")
        .expect("the stream is open")
}

async fn nothing_within(stream: &mut ChangeStream, ms: u64) {
    let got = tokio::time::timeout(Duration::from_millis(ms), stream.next()).await;
    assert!(got.is_err(), "expected nothing, got {got:?}");
}

#[tokio::test]
async fn replays_after_the_cursor_then_streams_live() {
    let feed = ChangeFeed::new();
    let r = rn("persons");
    let c1 = publish(&feed, &r, 1, Some("张三"));
    publish(&feed, &r, 2, Some("李四"));
    publish(&feed, &r, 1, None);

    // From the start: all three, in order, with their cursors.
    let mut all = feed.watch(&r, None).unwrap();
    let first = next(&mut all).await.unwrap();
    assert_eq!(first.cursor, c1);
    assert_eq!(first.key, vec![("id".to_owned(), Value::int(1))]);
    assert_eq!(first.record, Some(rec("张三")));
    assert_eq!(next(&mut all).await.unwrap().record, Some(rec("李四")));
    let deleted = next(&mut all).await.unwrap();
    assert_eq!(deleted.record, None);
    nothing_within(&mut all, 50).await;

    // Strictly after c1: the second and third.
    let mut resumed = feed.watch(&r, Some(&c1)).unwrap();
    assert_eq!(next(&mut resumed).await.unwrap().record, Some(rec("李四")));
    let third = next(&mut resumed).await.unwrap();
    assert_eq!(third.cursor, deleted.cursor);

    // Live: both watchers see a new change; resuming from the latest cursor sees only it.
    let latest = feed.latest_cursor(&r).unwrap();
    let mut from_latest = feed.watch(&r, Some(&latest)).unwrap();
    let c4 = publish(&feed, &r, 3, Some("王五"));
    for s in [&mut all, &mut resumed, &mut from_latest] {
        let c = next(s).await.unwrap();
        assert_eq!(c.cursor, c4);
        assert_eq!(c.key, vec![("id".to_owned(), Value::int(3))]);
    }
}

#[tokio::test]
async fn resources_have_their_own_histories() {
    let feed = ChangeFeed::new();
    let (a, b) = (rn("a"), rn("b"));
    let ca = publish(&feed, &a, 1, Some("a"));
    publish(&feed, &b, 1, Some("b"));
    let mut sa = feed.watch(&a, None).unwrap();
    assert_eq!(next(&mut sa).await.unwrap().record, Some(rec("a")));
    nothing_within(&mut sa, 50).await;
    // A cursor of another resource is of another epoch.
    assert!(matches!(
        feed.watch(&b, Some(&ca)),
        Err(SourceError::CursorExpired(_))
    ));
    // A resource never published to can be watched, and streams what comes.
    let mut sc = feed.watch(&rn("c"), None).unwrap();
    publish(&feed, &rn("c"), 9, Some("c"));
    assert_eq!(next(&mut sc).await.unwrap().record, Some(rec("c")));
}

#[tokio::test]
async fn malformed_future_and_foreign_cursors_are_refused() {
    let feed = ChangeFeed::new();
    let r = rn("persons");
    let c = publish(&feed, &r, 1, Some("x"));
    for bad in [
        "",
        "x",
        "1-2",
        "0123456789abcdef-",
        "0123456789abcdef-01",
        "-1",
    ] {
        assert!(
            matches!(feed.watch(&r, Some(bad)), Err(SourceError::BadCursor)),
            "{bad:?}"
        );
    }
    // The same epoch, a sequence not issued yet.
    let (epoch, _) = c.split_once('-').unwrap();
    assert!(matches!(
        feed.watch(&r, Some(&format!("{epoch}-99"))),
        Err(SourceError::BadCursor)
    ));
    // Another feed (an adapter restarted) issued it.
    let other = ChangeFeed::new();
    publish(&other, &r, 1, Some("x"));
    assert!(matches!(
        other.watch(&r, Some(&c)),
        Err(SourceError::CursorExpired(_))
    ));
}

#[tokio::test]
async fn a_cursor_older_than_the_ring_must_resynchronise() {
    let feed = ChangeFeed::with_limits(3, 8);
    let r = rn("persons");
    let cursors: Vec<String> = (1..=5).map(|i| publish(&feed, &r, i, Some("x"))).collect();
    // Retained: 3, 4, 5. After 2 is complete; after 1 would miss 2.
    let mut s = feed.watch(&r, Some(&cursors[1])).unwrap();
    for want in &cursors[2..] {
        assert_eq!(&next(&mut s).await.unwrap().cursor, want);
    }
    match feed.watch(&r, Some(&cursors[0])) {
        Err(SourceError::CursorExpired(why)) => assert!(why.contains("dropped"), "{why}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("an expired cursor was accepted"),
    }
    // No cursor: from the oldest retained.
    let mut s = feed.watch(&r, None).unwrap();
    assert_eq!(next(&mut s).await.unwrap().cursor, cursors[2]);
}

/// A watcher that reads nothing while many changes are published never holds up the
/// publisher; it catches up from the ring while the ring covers its gap, and is told to
/// resynchronise once it does not, never skipping a change silently.
#[tokio::test]
async fn a_slow_watcher_never_blocks_and_never_misses_silently() {
    let feed = ChangeFeed::with_limits(100, 4);
    let r = rn("persons");
    let mut slow = feed.watch(&r, None).unwrap();
    // Within the ring: 50 changes, 12 times the live buffer.
    for i in 1..=50 {
        publish(&feed, &r, i, Some("x"));
    }
    for i in 1..=50 {
        let c = next(&mut slow).await.unwrap();
        assert_eq!(c.key[0].1, Value::int(i), "change {i}");
    }
    // Beyond the ring: publishing 500 more does not wait for the watcher…
    let started = std::time::Instant::now();
    for i in 51..=550 {
        publish(&feed, &r, i, Some("x"));
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    // …which is told to resynchronise, then ends.
    match next(&mut slow).await {
        Err(SourceError::CursorExpired(why)) => assert!(why.contains("behind"), "{why}"),
        other => panic!("expected CursorExpired, got {other:?}"),
    }
    assert!(slow.next().await.is_none());
}

#[test]
fn debug_output_holds_no_records() {
    let feed = ChangeFeed::new();
    publish(&feed, &rn("persons"), 1, Some("张三"));
    let text = format!("{feed:?}");
    assert!(text.contains("persons"), "{text}");
    assert!(!text.contains("张三"), "{text}");
}
