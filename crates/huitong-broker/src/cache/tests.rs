use std::sync::atomic::AtomicUsize;

use super::*;

fn spec() -> ResourceSpec {
    use huitong_core::{FieldName, FieldSpec, ResourceSpecParts, Sensitivity, SharingClass};
    let field = |name: &str, ty| FieldSpec {
        name: FieldName::new(name).unwrap(),
        ty,
        sensitivity: Sensitivity::Public,
        description: String::new(),
    };
    ResourceSpec::new(ResourceSpecParts {
        id: ResourceId::parse("public-security/household-register").unwrap(),
        title: String::new(),
        description: String::new(),
        fields: vec![field("n", FieldType::Int), field("x", FieldType::Double)],
        key_fields: vec![FieldName::new("n").unwrap(), FieldName::new("x").unwrap()],
        sharing_class: SharingClass::Open,
        legal_basis: String::new(),
        update_cycle: String::new(),
        max_cache_age_seconds: 60,
        stale_if_error_seconds: 0,
    })
    .unwrap()
}

fn key(n: i64) -> CacheKey {
    let mut k = HashMap::new();
    k.insert("n".to_owned(), Value::int(n));
    k.insert("x".to_owned(), Value::double(1.0));
    CacheKey::new(&spec(), &k)
}

#[test]
fn keys_are_read_in_key_field_order_with_ints_for_doubles_as_doubles() {
    let mut k = HashMap::new();
    k.insert("x".to_owned(), Value::int(1));
    k.insert("n".to_owned(), Value::int(7));
    assert_eq!(CacheKey::new(&spec(), &k), key(7));
    assert_ne!(key(7), key(8));
}

fn record(text: &str) -> Record {
    let mut r = Record::default();
    r.fields.insert("name".into(), Value::string(text));
    r
}

type Cache = RecordCache<String>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_for_one_key_make_one_call() {
    let cache = Arc::new(Cache::new(1 << 20));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (cache, calls) = (Arc::clone(&cache), Arc::clone(&calls));
        tasks.push(tokio::spawn(async move {
            cache
                .fetch(&key(1), Duration::from_secs(60), || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(Some((record("v1"), SystemTime::now())))
                })
                .await
        }));
    }
    for t in tasks {
        let got = t.await.unwrap().unwrap().unwrap();
        assert_eq!(got.record, record("v1"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(cache.get(&key(1)).await.is_some());
    // A different key is a different call.
    assert!(cache.get(&key(2)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_overtaken_by_an_invalidation_is_not_stored_nor_shared_with_later_arrivals() {
    let cache = Arc::new(Cache::new(1 << 20));
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let slow = {
        let cache = Arc::clone(&cache);
        tokio::spawn(async move {
            cache
                .fetch(&key(1), Duration::from_secs(60), || async {
                    let _ = started_tx.send(());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok(Some((record("old"), SystemTime::now())))
                })
                .await
        })
    };
    started_rx.await.unwrap();
    cache.invalidate(&key(1)).await;
    // Arriving after the change, this one does not wait for the old fetch.
    let fresh = cache
        .fetch(&key(1), Duration::from_secs(60), || async {
            Ok(Some((record("new"), SystemTime::now())))
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fresh.record, record("new"));
    let old = slow.await.unwrap().unwrap().unwrap();
    assert_eq!(old.record, record("old"));
    // The old answer did not overwrite the new entry... and was not stored at all.
    let held = cache.get(&key(1)).await;
    assert!(
        held.is_none_or(|c| c.record == record("new")),
        "an answer from before the change was cached"
    );
}

#[tokio::test]
async fn invalidation_drops_the_entry_and_missing_records_are_not_cached() {
    let cache = Cache::new(1 << 20);
    let got = cache
        .fetch(&key(1), Duration::from_secs(60), || async { Ok(None) })
        .await
        .unwrap();
    assert!(got.is_none());
    assert!(cache.get(&key(1)).await.is_none());
    cache
        .fetch(&key(1), Duration::from_secs(60), || async {
            Ok(Some((record("v1"), SystemTime::now())))
        })
        .await
        .unwrap();
    assert!(cache.get(&key(1)).await.is_some());
    cache.invalidate(&key(1)).await;
    assert!(cache.get(&key(1)).await.is_none());

    for n in 0..5 {
        cache
            .fetch(&key(n), Duration::from_secs(60), || async {
                Ok(Some((record("v"), SystemTime::now())))
            })
            .await
            .unwrap();
    }
    cache.invalidate_resource(key(0).resource());
    for n in 0..5 {
        assert!(cache.get(&key(n)).await.is_none());
    }
}

#[tokio::test]
async fn errors_are_shared_but_not_stored() {
    let cache = Cache::new(1 << 20);
    let got = cache
        .fetch(&key(1), Duration::from_secs(60), || async {
            Err("down".to_owned())
        })
        .await;
    assert_eq!(got.unwrap_err(), "down");
    assert!(cache.get(&key(1)).await.is_none());
}

#[tokio::test]
async fn entries_expire_after_their_lifetime() {
    let cache = Cache::new(1 << 20);
    cache
        .fetch(&key(1), Duration::from_millis(50), || async {
            Ok(Some((record("v1"), SystemTime::now())))
        })
        .await
        .unwrap();
    assert!(cache.get(&key(1)).await.is_some());
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(cache.get(&key(1)).await.is_none());
}

#[tokio::test]
async fn the_cache_is_bounded_by_bytes() {
    let cache = Cache::new(100_000);
    let big = "x".repeat(1000);
    for n in 0..1000 {
        cache
            .fetch(&key(n), Duration::from_secs(60), || async {
                Ok(Some((record(&big), SystemTime::now())))
            })
            .await
            .unwrap();
    }
    cache.entries.run_pending_tasks().await;
    let (entries, bytes) = cache.usage();
    assert!(bytes <= 100_000, "{bytes} bytes held");
    assert!(entries > 10 && entries < 100, "{entries} entries");
}
