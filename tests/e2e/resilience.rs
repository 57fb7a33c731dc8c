//! A broker that stays fast and standing: its cache, its guard around each adapter, load
//! shedding and graceful shutdown, each against the real broker binary.
//!
//! Most departments here are adapters written with the SDK and served in this test process, so
//! that a test can make one slow, make one fail, count its calls and publish its changes; the
//! adapter-killed test uses the demo's real adapter processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use huitong_client::{ClientError, Query, QueryResponse};
use huitong_tests::parcels::{Parcels, Setup};
use huitong_tests::{Exchange, Proc, free_port, http_get};
use tonic::Code;

fn parcel(dept: &str, no: &str) -> Query {
    Query::by_key(&format!("{dept}/parcels"), "parcel_no", no)
        .fields(["parcel_no", "owner"])
        .purpose("property registration")
        .timeout(Duration::from_secs(10))
}

fn owner(a: &QueryResponse) -> String {
    a.records[0].fields["owner"].as_str().unwrap().to_owned()
}

fn provenance(a: &QueryResponse) -> (bool, u64, bool) {
    let p = a.provenance.as_ref().unwrap();
    (p.from_cache, p.age_millis, p.stale)
}

fn status(r: Result<QueryResponse, ClientError>) -> tonic::Status {
    match r {
        Err(ClientError::Status(s)) => s,
        other => panic!("expected an error status, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_cached_record_serves_later_queries_and_says_how_old_it_is() {
    let land = Parcels::new("land-resources", 60, 0);
    let s = Setup::start(&[&land], "", "").await;
    let mut c = s.consumer("housing").await;
    let first = c.query(parcel("land-resources", "P-1")).await.unwrap();
    assert_eq!(provenance(&first), (false, 0, false));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = c.query(parcel("land-resources", "P-1")).await.unwrap();
    let (from_cache, age, stale) = provenance(&second);
    assert!(from_cache && !stale);
    assert!(age >= 50, "age {age} ms");
    assert_eq!(owner(&second), "张三");
    // Only the fields asked for leave, though the whole record is cached.
    let narrow = c
        .query(
            Query::by_key("land-resources/parcels", "parcel_no", "P-1")
                .fields(["parcel_no"])
                .purpose("property registration"),
        )
        .await
        .unwrap();
    assert_eq!(narrow.records[0].fields.len(), 1);
    assert!(provenance(&narrow).0);
    assert_eq!(land.calls(), 1);
    // Another key is another call.
    c.query(parcel("land-resources", "P-2")).await.unwrap();
    assert_eq!(land.calls(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_an_invalidation_no_consumer_gets_the_old_value() {
    let land = Parcels::new("land-resources", 3600, 3600);
    let s = Setup::start(&[&land], "", "").await;
    let c = s.consumer("housing").await;
    let mut probe = c.clone();
    assert_eq!(
        owner(&probe.query(parcel("land-resources", "P-1")).await.unwrap()),
        "张三"
    );
    // Consumers keep asking while the owner changes three times.
    let stop = Arc::new(AtomicBool::new(false));
    type Seen = (Instant, String);
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let (mut c, stop, seen) = (c.clone(), Arc::clone(&stop), Arc::clone(&seen));
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let a = c.query(parcel("land-resources", "P-1")).await.unwrap();
                    seen.lock().unwrap().push((started, owner(&a)));
                }
            })
        })
        .collect();
    let mut first_seen = Vec::new();
    for (n, to) in ["李四", "王五", "赵六"].iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let changed = Instant::now();
        land.change_owner("P-1", to);
        loop {
            let a = probe.query(parcel("land-resources", "P-1")).await.unwrap();
            if owner(&a) == *to {
                first_seen.push((n, Instant::now()));
                break;
            }
            assert!(
                changed.elapsed() < Duration::from_secs(3),
                "the change to {to} never reached the broker's cache"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    // Once a value has been seen, nobody who asks later is given an older one.
    let order = ["张三", "李四", "王五", "赵六"];
    let seen = seen.lock().unwrap();
    for (n, at) in &first_seen {
        for (started, got) in seen.iter().filter(|(started, _)| started > at) {
            let version = order.iter().position(|o| o == got).unwrap();
            assert!(
                version > *n,
                "a query started {:?} after {} was first seen got {got}",
                started.duration_since(*at),
                order[n + 1]
            );
        }
    }
    assert!(seen.len() > 30, "too few queries: {}", seen.len());
    // Most of them were served from the cache: one call per version, give or take a race.
    assert!(land.calls() < 12, "{} adapter calls", land.calls());
}

#[tokio::test(flavor = "multi_thread")]
async fn with_caching_off_every_query_reaches_the_adapter() {
    // Off by the provider's declaration, and off by the exchange's policy for a resource the
    // provider lets be cached.
    let uncached = Parcels::new("land-resources", 0, 0);
    let lowered = Parcels::new("housing-fund", 3600, 0);
    let policy = "[[cache]]\nresource = \"housing-fund/parcels\"\nmax_age_seconds = 0\n";
    let s = Setup::start(&[&uncached, &lowered], "", policy).await;
    let mut c = s.consumer("housing").await;
    for _ in 0..5 {
        for dept in ["land-resources", "housing-fund"] {
            let a = c.query(parcel(dept, "P-1")).await.unwrap();
            assert!(!provenance(&a).0, "{dept} answered from cache");
        }
    }
    assert_eq!(uncached.calls(), 5);
    assert_eq!(lowered.calls(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_misses_for_one_key_make_one_adapter_call() {
    let land = Parcels::new("land-resources", 60, 0);
    land.set_delay(Duration::from_millis(300));
    let s = Setup::start(&[&land], "", "").await;
    let c = s.consumer("housing").await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let mut c = c.clone();
            tokio::spawn(async move { c.query(parcel("land-resources", "P-7")).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(owner(&t.await.unwrap().unwrap()), "张三");
    }
    assert_eq!(land.calls(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_copy_is_served_only_where_allowed_and_flagged() {
    let lenient = Parcels::new("land-resources", 1, 60);
    let strict = Parcels::new("housing-fund", 1, 0);
    let s = Setup::start(&[&lenient, &strict], "", "").await;
    let mut c = s.consumer("housing").await;
    for dept in ["land-resources", "housing-fund"] {
        c.query(parcel(dept, "P-1")).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1300)).await;
    lenient.failing.store(true, Ordering::SeqCst);
    strict.failing.store(true, Ordering::SeqCst);
    let stale = c.query(parcel("land-resources", "P-1")).await.unwrap();
    let (from_cache, age, is_stale) = provenance(&stale);
    assert!(from_cache && is_stale, "{:?}", stale.provenance);
    assert!(age >= 1300, "age {age} ms");
    assert_eq!(owner(&stale), "张三");
    let refused = status(c.query(parcel("housing-fund", "P-1")).await);
    assert_eq!(refused.code(), Code::Unavailable, "{}", refused.message());
    // A key never fetched has no copy to fall back on.
    let missing = status(c.query(parcel("land-resources", "P-9")).await);
    assert_eq!(missing.code(), Code::Unavailable, "{}", missing.message());
    // Once the provider answers again, fresh answers resume.
    lenient.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let fresh = c.query(parcel("land-resources", "P-1")).await.unwrap();
    assert!(!provenance(&fresh).2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_adapter_cannot_take_the_broker_from_the_others() {
    let slow = Parcels::new("land-resources", 0, 0);
    slow.set_delay(Duration::from_secs(2));
    let fast = Parcels::new("housing-fund", 0, 0);
    let s = Setup::start(
        &[&slow, &fast],
        "adapter_max_concurrency = 4\nadapter_max_queue = 4\nadapter_timeout_ms = 10000",
        "",
    )
    .await;
    let c = s.consumer("housing").await;
    let flood: Vec<_> = (0..60)
        .map(|i| {
            let mut c = c.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let r = c.query(parcel("land-resources", &format!("P-{i}"))).await;
                (r.map_err(|e| e.code()), started.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // While the slow department is flooded, the fast one answers promptly.
    let mut fast_client = c.clone();
    for i in 0..20 {
        let started = Instant::now();
        fast_client
            .query(parcel("housing-fund", &format!("F-{i}")))
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "the fast department took {:?}",
            started.elapsed()
        );
    }
    let mut answered = 0;
    let mut refused_fast = 0;
    for t in flood {
        match t.await.unwrap() {
            (Ok(_), _) => answered += 1,
            (Err(code), took) => {
                assert_eq!(code, Some(Code::Unavailable));
                assert!(took < Duration::from_secs(1), "a refusal took {took:?}");
                refused_fast += 1;
            }
        }
    }
    // Four in progress and four waiting: the rest were turned away at once.
    assert_eq!(answered, 8, "{refused_fast} refused");
    assert!(slow.most_running.load(Ordering::SeqCst) <= 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn beyond_max_in_flight_the_broker_sheds_load() {
    let slow = Parcels::new("land-resources", 0, 0);
    slow.set_delay(Duration::from_millis(800));
    let s = Setup::start(&[&slow], "max_in_flight = 3", "").await;
    let c = s.consumer("housing").await;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let mut c = c.clone();
            tokio::spawn(async move { c.query(parcel("land-resources", &format!("P-{i}"))).await })
        })
        .collect();
    let mut shed = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => {}
            Err(ClientError::Status(s)) => {
                assert_eq!(s.code(), Code::Unavailable);
                assert!(s.message().contains("at capacity"), "{}", s.message());
                assert!(s.metadata().get("retry-after-ms").is_some());
                shed += 1;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(shed, 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_finishes_what_is_in_flight_within_its_grace() {
    let land = Parcels::new("land-resources", 0, 0);
    land.set_delay(Duration::from_millis(1000));
    let s = Setup::start(&[&land], "shutdown_grace_seconds = 5", "").await;
    let mut c = s.consumer("housing").await;
    let in_flight = tokio::spawn(async move { c.query(parcel("land-resources", "P-1")).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let Setup { dir, broker, .. } = s;
    let stopping = tokio::task::spawn_blocking(move || broker.terminate());
    assert_eq!(owner(&in_flight.await.unwrap().unwrap()), "张三");
    assert!(stopping.await.unwrap().success());
    drop(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_cancels_what_outlasts_the_grace_and_still_exits_cleanly() {
    let land = Parcels::new("land-resources", 0, 0);
    land.set_delay(Duration::from_secs(30));
    let s = Setup::start(
        &[&land],
        "shutdown_grace_seconds = 1\nadapter_timeout_ms = 60000",
        "",
    )
    .await;
    let mut c = s.consumer("housing").await;
    let in_flight = tokio::spawn(async move {
        c.query(parcel("land-resources", "P-1").timeout(Duration::from_secs(60)))
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let Setup { dir, broker, .. } = s;
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || broker.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(in_flight.await.unwrap().is_err());
    drop(dir);
}

/// Civil affairs' load on two departments while one of them is killed and brought back.
#[tokio::test(flavor = "multi_thread")]
async fn an_adapter_killed_mid_load_fails_fast_opens_its_breaker_and_recovers() {
    let metrics = format!("127.0.0.1:{}", free_port());
    // Cached answers would hide the outage from this test; the policy turns caching off for
    // the register.
    let mut ex = Exchange::start_with_policy(
        &format!("metrics_listen = \"{metrics}\""),
        "\n[[cache]]\nresource = \"public-security/household-register\"\nmax_age_seconds = 0\n",
    );
    let persons: Vec<String> = (0..400).map(|i| ex.person(i)).collect();
    let licences: Vec<String> = ex
        .records("business-licences.jsonl")
        .iter()
        .map(|r| r["credit_code"].as_str().unwrap().to_owned())
        .collect();
    let c = ex.consumer("civil-affairs").await;
    let stop = Arc::new(AtomicBool::new(false));
    // (department, started at, took, code)
    type Outcome = (&'static str, Instant, Duration, Code);
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let mut load = Vec::new();
    for worker in 0..4 {
        let (mut c, stop, outcomes) = (c.clone(), Arc::clone(&stop), Arc::clone(&outcomes));
        let (persons, licences) = (persons.clone(), licences.clone());
        load.push(tokio::spawn(async move {
            let mut i = worker;
            while !stop.load(Ordering::SeqCst) {
                let (dept, q) = if i % 2 == 0 {
                    (
                        "public-security",
                        huitong_tests::marriage_check(&persons[i % persons.len()]),
                    )
                } else {
                    (
                        "market-regulation",
                        Query::by_key(
                            "market-regulation/business-licences",
                            "credit_code",
                            licences[i % licences.len()].as_str(),
                        )
                        .fields(["name", "status"])
                        .purpose("婚姻登记 marriage registration"),
                    )
                };
                let started = Instant::now();
                let code = match c.query(q.timeout(Duration::from_secs(5))).await {
                    Ok(_) => Code::Ok,
                    Err(e) => e.code().unwrap_or(Code::Unknown),
                };
                outcomes
                    .lock()
                    .unwrap()
                    .push((dept, started, started.elapsed(), code));
                i += 4;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let port = ex.adapter("public-security").addr.port();
    let killed_at = Instant::now();
    ex.adapter("public-security").kill();
    let breaker = |dept: &str| -> Option<String> {
        // e.g. huitong_adapter_breaker_state{dept="public-security"} 2
        let text = http_get(&metrics, "/metrics");
        text.lines()
            .find(|l| l.starts_with("huitong_adapter_breaker_state") && l.contains(dept))
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
    };
    // The breaker opens and stays open (or probing) while the department is down.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let state = breaker("public-security");
    assert!(
        matches!(state.as_deref(), Some("2" | "1")),
        "breaker not open: {state:?}"
    );

    // Back on the same address: the broker finds it again without a restart.
    let cfg = ex.dir.path().join("public-security.toml");
    let listen = format!("127.0.0.1:{port}");
    *ex.adapter("public-security") = Proc::start(&[
        "adapter",
        "--config",
        cfg.to_str().unwrap(),
        "--listen",
        &listen,
    ]);
    let restarted_at = Instant::now();
    let recovered = loop {
        let ok = outcomes.lock().unwrap().iter().any(|(d, at, _, code)| {
            *d == "public-security" && *at > restarted_at && *code == Code::Ok
        });
        if ok {
            break true;
        }
        if restarted_at.elapsed() > Duration::from_secs(15) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop.store(true, Ordering::SeqCst);
    for l in load {
        l.await.unwrap();
    }
    assert!(recovered, "the broker never reached the restarted adapter");
    // Gauges are refreshed once a second.
    let closed_by = Instant::now() + Duration::from_secs(5);
    while breaker("public-security").as_deref() != Some("0") {
        assert!(
            Instant::now() < closed_by,
            "the breaker stayed open after recovery"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let outcomes = outcomes.lock().unwrap();
    let during = |dept: &str| -> Vec<&Outcome> {
        outcomes
            .iter()
            .filter(|(d, at, _, _)| {
                *d == dept && *at > killed_at + Duration::from_millis(200) && *at < restarted_at
            })
            .collect()
    };
    let down = during("public-security");
    assert!(
        down.len() > 10,
        "too little load while down: {}",
        down.len()
    );
    for (_, _, took, code) in &down {
        assert_eq!(*code, Code::Unavailable);
        assert!(
            *took < Duration::from_secs(1),
            "a consumer waited {took:?} for a dead department (deadline 5 s)"
        );
    }
    let others = during("market-regulation");
    assert!(others.len() > 10);
    for (_, _, took, code) in &others {
        assert_eq!(*code, Code::Ok);
        assert!(
            *took < Duration::from_millis(500),
            "another department's exchange took {took:?} during the outage"
        );
    }
}
