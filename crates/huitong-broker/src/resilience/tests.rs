use super::*;

fn limits() -> Limits {
    Limits {
        concurrency: 2,
        queue: 1,
        breaker_failures: 3,
        breaker_open: Duration::from_millis(50),
        breaker_max_open: Duration::from_millis(150),
        retry_ratio: 0.5,
    }
}

#[tokio::test]
async fn the_breaker_opens_after_consecutive_failures_and_a_probe_closes_it() {
    let g = AdapterGuard::new(limits());
    for _ in 0..2 {
        g.admit(Duration::from_secs(1)).await.unwrap().finish(true);
    }
    // A success in between resets the count.
    g.admit(Duration::from_secs(1)).await.unwrap().finish(false);
    for _ in 0..3 {
        g.admit(Duration::from_secs(1)).await.unwrap().finish(true);
    }
    assert_eq!(g.breaker_state(), BreakerState::Open);
    match g.admit(Duration::from_secs(1)).await {
        Err(Refusal::BreakerOpen(after)) => assert!(after <= Duration::from_millis(50)),
        other => panic!("expected an open breaker, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(60)).await;
    let probe = g.admit(Duration::from_secs(1)).await.unwrap();
    assert_eq!(g.breaker_state(), BreakerState::HalfOpen);
    // While the probe is out, others are refused.
    assert!(matches!(
        g.admit(Duration::from_secs(1)).await,
        Err(Refusal::BreakerOpen(_))
    ));
    probe.finish(false);
    assert_eq!(g.breaker_state(), BreakerState::Closed);
}

#[tokio::test]
async fn a_failed_probe_opens_for_longer_up_to_the_cap() {
    let g = AdapterGuard::new(limits());
    for _ in 0..3 {
        g.admit(Duration::from_secs(1)).await.unwrap().finish(true);
    }
    let mut waits = Vec::new();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(160)).await;
        g.admit(Duration::from_secs(1)).await.unwrap().finish(true);
        match g.admit(Duration::from_secs(1)).await {
            Err(Refusal::BreakerOpen(after)) => waits.push(after),
            other => panic!("expected an open breaker, got {other:?}"),
        }
    }
    assert!(waits[0] > Duration::from_millis(60), "{waits:?}");
    assert!(waits[1] <= Duration::from_millis(150), "{waits:?}");
    assert!(waits[2] <= Duration::from_millis(150), "{waits:?}");
}

#[tokio::test]
async fn trip_and_reset_follow_the_health_stream() {
    let g = AdapterGuard::new(limits());
    g.trip();
    assert!(matches!(
        g.admit(Duration::from_secs(1)).await,
        Err(Refusal::BreakerOpen(_))
    ));
    g.reset();
    assert!(g.admit(Duration::from_secs(1)).await.is_ok());
}

#[tokio::test]
async fn work_beyond_the_slots_and_queue_is_refused_at_once() {
    let g = AdapterGuard::new(limits());
    let a = g.admit(Duration::from_secs(1)).await.unwrap();
    let b = g.admit(Duration::from_secs(1)).await.unwrap();
    // The third waits for a slot (the queue holds one) and gives up at its deadline.
    let started = Instant::now();
    assert_eq!(
        g.admit(Duration::from_millis(30)).await.unwrap_err(),
        Refusal::Deadline
    );
    assert!(started.elapsed() >= Duration::from_millis(30));
    // With one waiting, a fourth is refused without waiting.
    let waiting = g.admit(Duration::from_secs(5));
    tokio::pin!(waiting);
    assert!(
        tokio::time::timeout(Duration::from_millis(10), &mut waiting)
            .await
            .is_err()
    );
    let started = Instant::now();
    assert_eq!(
        g.admit(Duration::from_secs(5)).await.unwrap_err(),
        Refusal::Saturated
    );
    assert!(started.elapsed() < Duration::from_millis(100));
    // A slot given back goes to the waiter.
    a.finish(false);
    let c = waiting.await.unwrap();
    drop((b, c));
}

#[test]
fn the_retry_budget_is_a_fraction_of_first_attempts() {
    let b = RetryBudget::new(0.5);
    // The floor allows ten retries at once.
    for _ in 0..10 {
        assert!(b.withdraw());
    }
    assert!(!b.withdraw());
    for _ in 0..4 {
        b.deposit();
    }
    assert!(b.withdraw());
    assert!(b.withdraw());
    assert!(!b.withdraw());
    // Deposits are capped.
    for _ in 0..1000 {
        b.deposit();
    }
    let mut n = 0;
    while b.withdraw() {
        n += 1;
    }
    assert_eq!(n, 100);
}

#[test]
fn backoff_is_jittered_within_its_ceiling() {
    let base = Duration::from_millis(10);
    let samples: Vec<Duration> = (0..200).map(|_| backoff(2, base)).collect();
    assert!(samples.iter().all(|d| *d <= Duration::from_millis(40)));
    let distinct: std::collections::HashSet<_> = samples.iter().collect();
    assert!(distinct.len() > 100, "not jittered: {distinct:?}");
    assert_eq!(backoff(0, Duration::ZERO), Duration::ZERO);
}
