//! Fan-out: ten thousand events to a hundred subscribers through the real broker, with the
//! broker's memory watched. In its own test binary so that it does not share the machine with
//! the other end-to-end tests. `HUITONG_FANOUT_EVENTS` and `HUITONG_FANOUT_SUBSCRIBERS` scale it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use huitong_client::Subscribe;
use huitong_tests::parcels::{Parcels, Setup};

const POLICY: &str = r#"
[[grants]]
consumer = "health"
resource = "land-resources/parcels"
fields = ["parcel_no"]
purposes = ["property registration"]
expires = "2099-12-31"
"#;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident memory of a process, in MiB.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        / 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_events_reach_a_hundred_subscribers_in_bounded_memory() {
    let events = env("HUITONG_FANOUT_EVENTS", 10_000);
    let subscribers = env("HUITONG_FANOUT_SUBSCRIBERS", 100);
    let land = Parcels::conditional("land-resources");
    let s = Setup::start(&[&land], "", POLICY).await;
    let client = s.consumer("health").await;
    let delivered = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..subscribers {
        let mut sub = client
            .clone()
            .subscribe(
                Subscribe::new("land-resources/parcels")
                    .fields(["parcel_no"])
                    .purpose("property registration")
                    .name(&format!("s{i}")),
            )
            .await
            .unwrap();
        let delivered = Arc::clone(&delivered);
        tasks.push(tokio::spawn(async move {
            let mut last = 0;
            for n in 0..events {
                let r = tokio::time::timeout(Duration::from_secs(60), sub.next())
                    .await
                    .unwrap_or_else(|_| panic!("stalled after {n} events (sequence {last})"))
                    .unwrap();
                let seq = r.event.unwrap().sequence;
                assert_eq!(seq, last + 1, "out of order or a gap");
                last = seq;
                delivered.fetch_add(1, Ordering::Relaxed);
            }
            sub.close().await.unwrap();
        }));
    }
    let pid = s.broker.pid();
    let started = Instant::now();
    let idle = rss(pid);
    for i in 0..events {
        land.change_owner(&format!("P-{i}"), "李四");
        if i % 500 == 499 {
            tokio::task::yield_now().await;
        }
    }
    // Resident memory at a quarter, half and all of the deliveries, and at its highest.
    let total = events * subscribers;
    let mut marks: Vec<(usize, u64)> = Vec::new();
    let mut peak = 0;
    while !tasks.iter().all(|t| t.is_finished()) {
        let now = rss(pid);
        peak = peak.max(now);
        let done = delivered.load(Ordering::Relaxed);
        for quarter in [1, 2] {
            if done * 4 >= total * quarter && marks.len() < quarter {
                marks.push((done, now));
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "only {done} of {total} deliveries after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let end = rss(pid);
    assert_eq!(delivered.load(Ordering::Relaxed), total);
    eprintln!(
        "{events} events to {subscribers} subscribers in {:.1} s: broker RSS {idle} MiB idle, {marks:?} (deliveries, MiB) on the way, {end} MiB at the end, peak {peak} MiB",
        started.elapsed().as_secs_f64()
    );
    // Buffers are per subscriber and bounded, and the stores' caches are capped; what grows
    // with the deliveries is on disk. Memory may rise while those fill, then must level off:
    // the second half of the deliveries may not add more than the first quarter did.
    if let [(_, quarter), (_, half)] = marks[..] {
        assert!(
            end.saturating_sub(half) <= quarter.saturating_sub(idle) + 32,
            "memory keeps growing: {idle} MiB idle, {quarter} at a quarter, {half} at half, {end} at the end"
        );
    }
    assert!(peak < 512, "peak RSS {peak} MiB");
}
