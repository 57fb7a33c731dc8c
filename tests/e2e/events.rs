//! Publish and subscribe: changes published by a department's adapter reach subscribing
//! departments through the real broker, durably, in order, resumably, under the same grants,
//! minimisation, masking and audit as queries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use huitong_client::{ClientError, Subscribe, SubscribeResponse, Subscription, Value};
use huitong_tests::parcels::{Parcels, Setup};
use tonic::Code;

const PURPOSE: &str = "property registration";

/// Housing may follow parcels and their owners (masked); health may follow parcel numbers only;
/// tax held a grant that has expired.
const POLICY: &str = r#"
[[grants]]
consumer = "housing"
resource = "land-resources/parcels"
fields = ["parcel_no", "owner"]
purposes = ["property registration"]
expires = "2099-12-31"
masks = { owner = "name" }

[[grants]]
consumer = "health"
resource = "land-resources/parcels"
fields = ["parcel_no"]
purposes = ["property registration"]
expires = "2099-12-31"

[[grants]]
consumer = "tax"
resource = "land-resources/parcels"
fields = ["parcel_no", "owner"]
purposes = ["property registration"]
expires = "2020-01-01"
"#;

fn parcels() -> Subscribe {
    Subscribe::new("land-resources/parcels")
        .fields(["parcel_no", "owner"])
        .purpose(PURPOSE)
}

fn owner(r: &SubscribeResponse) -> Option<String> {
    r.event
        .as_ref()
        .and_then(|e| e.record.as_ref())
        .and_then(|r| r.fields.get("owner"))
        .and_then(|v| v.as_str().map(str::to_owned))
}

fn seq(r: &SubscribeResponse) -> u64 {
    r.event.as_ref().unwrap().sequence
}

async fn next(sub: &mut Subscription) -> SubscribeResponse {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("no event within 10 s")
        .unwrap()
}

fn refused(r: Result<Subscription, ClientError>) -> tonic::Status {
    match r {
        Err(ClientError::Status(s)) => s,
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("expected a refusal"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_reach_subscribers_in_order_minimised_masked_and_recorded() {
    let land = Parcels::conditional("land-resources");
    let s = Setup::start(&[&land], "", POLICY).await;
    let mut housing = s
        .consumer("housing")
        .await
        .subscribe(parcels())
        .await
        .unwrap();
    let mut health = s
        .consumer("health")
        .await
        .subscribe(
            Subscribe::new("land-resources/parcels")
                .fields(["parcel_no"])
                .purpose(PURPOSE),
        )
        .await
        .unwrap();
    land.change_owner("P-1", "李四");
    land.change_owner("P-2", "王五");
    land.delete("P-1");

    let got: Vec<SubscribeResponse> = vec![
        next(&mut housing).await,
        next(&mut housing).await,
        next(&mut housing).await,
    ];
    assert_eq!(got.iter().map(seq).collect::<Vec<_>>(), [1, 2, 3]);
    // Masked as housing's grant says, with the receipt of the delivery's log record.
    assert_eq!(owner(&got[0]).as_deref(), Some("李*"));
    assert_eq!(got[0].masked_fields, ["owner"]);
    assert!(
        got.iter()
            .all(|r| r.receipt.is_some() && !r.grant_id.is_empty())
    );
    let deleted = got[2].event.as_ref().unwrap();
    assert!(deleted.deleted && deleted.record.is_none());
    assert_eq!(deleted.key["parcel_no"], Value::string("P-1"));

    // Health asked for the parcel number only, and gets nothing more.
    let h = next(&mut health).await;
    let event = h.event.as_ref().unwrap();
    assert_eq!(
        event
            .record
            .as_ref()
            .unwrap()
            .fields
            .keys()
            .collect::<Vec<_>>(),
        ["parcel_no"]
    );
    assert!(h.masked_fields.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_outside_policy_are_refused_precisely() {
    let land = Parcels::conditional("land-resources");
    let s = Setup::start(&[&land], "", POLICY).await;
    let mut tax = s.consumer("tax").await;
    let mut health = s.consumer("health").await;
    let mut housing = s.consumer("housing").await;

    // An expired grant.
    let st = refused(tax.subscribe(parcels()).await);
    assert_eq!(st.code(), Code::PermissionDenied, "{}", st.message());
    // A field outside the grant.
    let st = refused(health.subscribe(parcels()).await);
    assert_eq!(st.code(), Code::PermissionDenied, "{}", st.message());
    assert!(st.message().contains("owner"), "{}", st.message());
    // A purpose the grant does not name.
    let st = refused(housing.subscribe(parcels().purpose("tax audit")).await);
    assert_eq!(st.code(), Code::PermissionDenied, "{}", st.message());
    // An unknown resource, a malformed name, a position beyond the latest event.
    let st = refused(
        housing
            .subscribe(
                Subscribe::new("land-resources/nothing")
                    .fields(["a"])
                    .purpose(PURPOSE),
            )
            .await,
    );
    assert_eq!(st.code(), Code::NotFound, "{}", st.message());
    let st = refused(housing.subscribe(parcels().name("Bad Name!")).await);
    assert_eq!(st.code(), Code::InvalidArgument, "{}", st.message());
    let st = refused(housing.subscribe(parcels().after(99)).await);
    assert_eq!(st.code(), Code::InvalidArgument, "{}", st.message());
    assert!(
        st.message().contains("beyond the latest event"),
        "{}",
        st.message()
    );
    // No purpose, no fields.
    let st = refused(
        housing
            .subscribe(Subscribe::new("land-resources/parcels").fields(["parcel_no"]))
            .await,
    );
    assert_eq!(st.code(), Code::InvalidArgument, "{}", st.message());
    let st = refused(
        housing
            .subscribe(Subscribe::new("land-resources/parcels").purpose(PURPOSE))
            .await,
    );
    assert_eq!(st.code(), Code::InvalidArgument, "{}", st.message());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grant_withdrawn_while_subscribed_ends_the_stream_before_anything_more_leaves() {
    let land = Parcels::conditional("land-resources");
    let s = Setup::start(&[&land], "", POLICY).await;
    let mut sub = s
        .consumer("housing")
        .await
        .subscribe(parcels())
        .await
        .unwrap();
    land.change_owner("P-1", "李四");
    assert_eq!(seq(&next(&mut sub).await), 1);
    // The policy file loses housing's grant; the broker reloads it on SIGHUP.
    let without: String = POLICY.replacen("consumer = \"housing\"", "consumer = \"tax\"", 1);
    std::fs::write(s.dir.path().join("policy.toml"), without).unwrap();
    let pid = s.broker.pid().to_string();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    land.change_owner("P-2", "王五");
    match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
        Ok(Err(ClientError::Status(st))) => {
            assert_eq!(st.code(), Code::PermissionDenied, "{}", st.message())
        }
        other => panic!("expected PERMISSION_DENIED, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_that_comes_back_resumes_after_what_it_acknowledged() {
    let land = Parcels::conditional("land-resources");
    let s = Setup::start(&[&land], "", POLICY).await;
    let mut client = s.consumer("housing").await;
    let mut sub = client.subscribe(parcels().name("registry")).await.unwrap();
    for i in 1..=3 {
        land.change_owner(&format!("P-{i}"), "李四");
    }
    for want in 1..=3 {
        assert_eq!(seq(&next(&mut sub).await), want);
    }
    // Finished with all three; gone.
    sub.close().await.unwrap();
    for i in 4..=6 {
        land.change_owner(&format!("P-{i}"), "王五");
    }
    let mut sub = client.subscribe(parcels().name("registry")).await.unwrap();
    for want in 4..=6 {
        assert_eq!(seq(&next(&mut sub).await), want);
    }
    // Dropped without close: what was not acknowledged yet is delivered again, at least event
    // 6 (given, but never followed by another next), and nothing is skipped.
    drop(sub);
    let mut sub = client.subscribe(parcels().name("registry")).await.unwrap();
    let mut again = seq(&next(&mut sub).await);
    assert!((4..=6).contains(&again), "resumed at {again}");
    while again < 6 {
        let n = seq(&next(&mut sub).await);
        assert_eq!(n, again + 1);
        again = n;
    }
    // Another name is another position; after = 0 starts at the oldest retained.
    let mut all = client
        .subscribe(parcels().name("replay").after(0))
        .await
        .unwrap();
    assert_eq!(seq(&next(&mut all).await), 1);
    // Acknowledgements refer to open subscriptions and to events that exist.
    let st = match sub.acknowledge(99).await {
        Err(ClientError::Status(st)) => st,
        other => panic!("{other:?}"),
    };
    assert_eq!(st.code(), Code::InvalidArgument, "{}", st.message());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_behind_the_retained_window_is_told_to_resynchronise() {
    let land = Parcels::conditional("land-resources");
    let s = Setup::start(&[&land], "event_retention_max_events = 5", POLICY).await;
    let mut client = s.consumer("housing").await;
    let sub = client.subscribe(parcels().name("slow")).await.unwrap();
    drop(sub);
    for i in 1..=20 {
        land.change_owner(&format!("P-{i}"), "李四");
    }
    // The broker has them (and has kept the last five) within moments.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut probe = client
        .subscribe(parcels().name("probe").after(0))
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), probe.next()).await;
    assert_eq!(
        first.as_ref().ok().and_then(|r| r.as_ref().ok()).map(seq),
        Some(16),
        "{first:?}\n{}",
        s.broker.stderr()
    );
    let st = refused(client.subscribe(parcels().name("slow")).await);
    assert_eq!(st.code(), Code::OutOfRange, "{}", st.message());
    assert!(st.message().contains("resynchronise"), "{}", st.message());
}

/// Two subscribers while the broker is killed (SIGKILL) mid-stream and restarted: each gets
/// every event at least once, in order, none lost.
#[tokio::test(flavor = "multi_thread")]
async fn no_event_is_lost_when_the_broker_is_killed_mid_stream() {
    const EVENTS: usize = 300;
    let land = Parcels::conditional("land-resources");
    let mut s = Setup::start(&[&land], "", POLICY).await;
    let mut collectors = Vec::new();
    for name in ["a", "b"] {
        let mut sub = s
            .consumer("housing")
            .await
            .subscribe(parcels().name(name))
            .await
            .unwrap();
        collectors.push(tokio::spawn(async move {
            // (sequence, parcel) in the order received, duplicates dropped by the SDK.
            let mut got: Vec<(u64, String)> = Vec::new();
            while got.len() < EVENTS {
                let r = tokio::time::timeout(Duration::from_secs(30), sub.next())
                    .await
                    .expect("stalled")
                    .unwrap();
                let e = r.event.unwrap();
                let parcel = e.key["parcel_no"].as_str().unwrap().to_owned();
                got.push((e.sequence, parcel));
            }
            got
        }));
    }
    let publisher = {
        let land = Arc::clone(&land);
        tokio::spawn(async move {
            for i in 0..EVENTS {
                land.change_owner(&format!("P-{i:04}"), "李四");
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.crash_and_restart_broker(Duration::from_millis(300)).await;
    publisher.await.unwrap();
    for c in collectors {
        let got = tokio::time::timeout(Duration::from_secs(120), c)
            .await
            .expect("a subscriber never got everything")
            .unwrap();
        let parcels: Vec<&str> = got.iter().map(|(_, p)| p.as_str()).collect();
        let want: Vec<String> = (0..EVENTS).map(|i| format!("P-{i:04}")).collect();
        assert_eq!(parcels, want, "events lost or out of order");
        let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    }
}

/// A delivery reaches a person as surely as a query does: it is in the report of the record it
/// released, with the subscriber, purpose, official, case and fields.
#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_is_in_the_report_of_the_record_it_released_with_official_and_case() {
    use huitong_tls::{Role, pki};
    let land = Parcels::conditional("land-resources");
    let s = Setup::start(&[&land], "", POLICY).await;
    pki::issue(
        &s.dir.path().join("pki"),
        &pki::IssueOptions::new(
            huitong_core::DeptId::new("discipline-inspection").unwrap(),
            Role::Auditor,
        ),
    )
    .unwrap();
    let mut housing = s
        .consumer("housing")
        .await
        .subscribe(parcels().official("clerk-7").case_ref("FC-2026-88"))
        .await
        .unwrap();
    land.change_owner("P-2", "王五");
    let got = next(&mut housing).await;
    let index = got.receipt.as_ref().unwrap().index;
    let mut audit = huitong_client::Audit::connect(
        &s.broker.endpoint(),
        &s.identity("discipline-inspection", Role::Auditor),
    )
    .await
    .unwrap();
    let report = audit.person_report("P-2", None).await.unwrap();
    let e = report
        .entries
        .iter()
        .find(|e| e.index == index)
        .expect("the delivery is missing from the report of the parcel it released");
    let r = e.record.clone().unwrap();
    assert_eq!(r.kind, "delivery");
    assert_eq!(r.consumer, "housing");
    assert_eq!(r.purpose, PURPOSE);
    assert_eq!(r.case_ref, "FC-2026-88");
    assert_eq!(r.official.len(), 32);
    assert_eq!(r.fields, ["parcel_no", "owner"]);
    assert_eq!(r.masked_fields, ["owner"]);
    let other = audit.person_report("P-1", None).await.unwrap();
    assert!(other.entries.iter().all(|e| e.index != index));
}

/// `huitong subscribe` as a script runs it: killed (SIGKILL) and restarted with `--out`, and
/// stopped (SIGTERM) and restarted on stdout, every event is printed exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn huitong_subscribe_prints_every_event_exactly_once_across_restarts() {
    use std::process::{Command, Stdio};
    let land = Parcels::conditional("land-resources");
    let s = Setup::start(&[&land], "", POLICY).await;
    let id = s.identity("housing", huitong_tests::Role::Consumer);
    let out = s.dir.path().join("events.jsonl");
    let command = |extra: &[&str]| {
        let mut c = Command::new(huitong_tests::huitong_bin());
        c.args([
            "subscribe",
            "land-resources/parcels",
            "--fields",
            "parcel_no,owner",
            "--purpose",
            PURPOSE,
            "--broker",
            &s.broker.endpoint(),
            "--ca",
            id.ca.to_str().unwrap(),
            "--cert",
            id.cert.to_str().unwrap(),
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
        c
    };
    let lines_of = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let wait_for_lines = |n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if text.lines().count() >= n {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // --out: SIGKILL after five events, five more while it is down, then a restart.
    let mut first = command(&[
        "--name",
        "file",
        "--from-start",
        "--out",
        out.to_str().unwrap(),
    ])
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    // Subscribed once the broker has a position for it: publish only then.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 1..=5 {
        land.change_owner(&format!("P-{i}"), "李四");
    }
    wait_for_lines(5);
    first.kill().unwrap();
    first.wait().unwrap();
    for i in 6..=10 {
        land.change_owner(&format!("P-{i}"), "王五");
    }
    let mut second = command(&["--name", "file", "--out", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_lines(10);
    tokio::time::sleep(Duration::from_millis(300)).await;
    second.kill().unwrap();
    second.wait().unwrap();
    let events = lines_of(&std::fs::read_to_string(&out).unwrap());
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>(), "{events:?}");
    // Masked as the grant says, and each delivery recorded in the log.
    assert_eq!(events[0]["record"]["owner"], "李*");
    assert!(events.iter().all(|e| e["log_index"].as_u64().is_some()));

    // stdout: SIGTERM after three events, two more while it is down, then a restart.
    let run = |extra: &[&str]| command(extra).stdout(Stdio::piped()).spawn().unwrap();
    let mut third = run(&["--name", "stdout", "--after", "10", "--count", "1000"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 11..=13 {
        land.change_owner(&format!("P-{i}"), "赵六");
    }
    let mut reader = std::io::BufReader::new(third.stdout.take().unwrap());
    let mut got = Vec::new();
    for _ in 0..3 {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        got.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
    }
    Command::new("kill")
        .args(["-TERM", &third.id().to_string()])
        .status()
        .unwrap();
    assert!(third.wait().unwrap().success());
    for i in 14..=15 {
        land.change_owner(&format!("P-{i}"), "钱七");
    }
    let fourth = run(&["--name", "stdout", "--count", "2"]);
    let output = fourth.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    got.extend(lines_of(&String::from_utf8_lossy(&output.stdout)));
    let seqs: Vec<u64> = got
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (11..=15).collect::<Vec<_>>(), "{got:?}");
}
