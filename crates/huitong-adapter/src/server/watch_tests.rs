//! `WatchChanges` over real loopback gRPC, with a source that publishes to a [`ChangeFeed`].

use std::time::Duration;

use huitong_proto::v1::adapter_client::AdapterClient;
use huitong_tls::{ClientTls, Expect, Role, TlsFiles, pki};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

use super::*;
use crate::source::{Page, SourceError};
use crate::test_support::{TempDir, household_register, test_pki};
use crate::{ChangeFeed, Record};

const DEPT: &str = "public-security";
const RESOURCE: &str = "household-register";

/// The household register, its changes published by the test.
struct FeedSource {
    feed: ChangeFeed,
}

#[tonic::async_trait]
impl Source for FeedSource {
    fn resources(&self) -> Vec<ResourceSpec> {
        vec![household_register()]
    }

    async fn fetch(
        &self,
        _resource: &ResourceName,
        _key: &[(FieldName, Value)],
        _fields: &[FieldName],
    ) -> Result<Option<Record>, SourceError> {
        Ok(None)
    }

    async fn search(
        &self,
        _resource: &ResourceName,
        _filters: &[(FieldName, Value)],
        _fields: &[FieldName],
        _page: PageRequest,
    ) -> Result<Page, SourceError> {
        Ok(Page::default())
    }

    async fn watch(
        &self,
        resource: &ResourceName,
        cursor: Option<&str>,
    ) -> Result<ChangeStream, SourceError> {
        self.feed.watch(resource, cursor)
    }
}

struct Running {
    feed: ChangeFeed,
    client: AdapterClient<Channel>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), Error>>,
    addr: std::net::SocketAddr,
    dir: TempDir,
}

async fn start(feed: ChangeFeed) -> Running {
    let dir = TempDir::new("watch");
    let listener = transport::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (server_tls, broker_tls) = test_pki(&dir, DEPT);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        DeptId::new(DEPT).unwrap(),
        FeedSource { feed: feed.clone() },
        listener,
        ServeOptions::default(),
        server_tls,
        async {
            let _ = stopped.await;
        },
    ));
    let client = AdapterClient::new(connect(addr, &broker_tls).await);
    Running {
        feed,
        client,
        stop: Some(stop),
        task,
        addr,
        dir,
    }
}

async fn connect(addr: std::net::SocketAddr, tls: &ClientTls) -> Channel {
    huitong_tls::endpoint(&addr.to_string())
        .unwrap()
        .connect_with_connector(tls.connector(Expect::Role(Role::Adapter)))
        .await
        .unwrap()
}

fn rn() -> ResourceName {
    ResourceName::new(RESOURCE).unwrap()
}

fn person(id: &str, name: &str) -> Record {
    let mut r = Record::default();
    r.fields.insert("id_number".into(), Value::string(id));
    r.fields.insert("name".into(), Value::string(name));
    // Not a declared field: must not leave the adapter.
    r.fields.insert("internal_note".into(), Value::string("x"));
    r
}

fn publish(feed: &ChangeFeed, id: &str, name: Option<&str>) -> String {
    feed.publish(
        &rn(),
        [("id_number", Value::string(id))],
        name.map(|n| person(id, n)),
    )
}

fn watch_request(resource: &str, cursor: &str) -> WatchChangesRequest {
    WatchChangesRequest {
        resource: resource.into(),
        cursor: cursor.into(),
    }
}

async fn next(stream: &mut tonic::Streaming<ChangeEvent>) -> Result<ChangeEvent, Status> {
    match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
        Ok(Some(item)) => item,
        Ok(None) => panic!("the stream ended"),
        Err(_) => panic!("no event within 5 s"),
    }
}

#[tokio::test]
async fn replays_resumes_and_streams_live_events() {
    let mut s = start(ChangeFeed::new()).await;
    let c1 = publish(&s.feed, "110101199001010001", Some("张三"));
    publish(&s.feed, "110101199001010002", Some("李四"));
    publish(&s.feed, "110101199001010001", None);

    let mut all = s
        .client
        .watch_changes(watch_request(RESOURCE, ""))
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut all).await.unwrap();
    assert_eq!(first.resource, "public-security/household-register");
    assert_eq!(first.cursor, c1);
    assert_eq!(
        first.key,
        HashMap::from([("id_number".to_owned(), Value::string("110101199001010001"))])
    );
    let record = first.record.unwrap();
    assert_eq!(record.fields["name"], Value::string("张三"));
    assert!(!record.fields.contains_key("internal_note"));
    assert!(next(&mut all).await.unwrap().record.is_some());
    let deleted = next(&mut all).await.unwrap();
    assert!(deleted.record.is_none(), "a deletion carries no record");

    // Strictly after c1, by catalogue id this time.
    let mut resumed = s
        .client
        .watch_changes(watch_request("public-security/household-register", &c1))
        .await
        .unwrap()
        .into_inner();
    let second = next(&mut resumed).await.unwrap();
    assert_eq!(second.key["id_number"], Value::string("110101199001010002"));
    assert_eq!(next(&mut resumed).await.unwrap().cursor, deleted.cursor);

    // Live, to both.
    let c4 = publish(&s.feed, "110101199001010003", Some("王五"));
    assert_eq!(next(&mut all).await.unwrap().cursor, c4);
    assert_eq!(next(&mut resumed).await.unwrap().cursor, c4);

    // Shutting down ends open streams with UNAVAILABLE, and the server stops.
    s.stop.take().unwrap().send(()).unwrap();
    let status = next(&mut all).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("shutting down"), "{status:?}");
    tokio::time::timeout(Duration::from_secs(10), &mut s.task)
        .await
        .expect("the server stops with streams open")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn refusals_have_the_contract_codes() {
    let feed = ChangeFeed::with_limits(2, 2);
    let mut s = start(feed).await;
    let old = publish(&s.feed, "110101199001010001", Some("a"));
    for i in 2..=4 {
        publish(&s.feed, &format!("11010119900101000{i}"), Some("b"));
    }
    let cases = [
        (
            watch_request("tax-returns", ""),
            Code::NotFound,
            "resource tax-returns is not served by department public-security",
        ),
        (
            watch_request("civil-affairs/household-register", ""),
            Code::NotFound,
            "not served",
        ),
        (
            watch_request(RESOURCE, "not-a-cursor"),
            Code::InvalidArgument,
            "the cursor is not one this adapter issued",
        ),
        (
            watch_request(RESOURCE, &"9".repeat(MAX_CURSOR_BYTES + 1)),
            Code::InvalidArgument,
            "longer than any this adapter issues",
        ),
        (
            watch_request(RESOURCE, &old),
            Code::OutOfRange,
            "resynchronise: read public-security/household-register afresh, then watch again \
             with an empty cursor",
        ),
    ];
    for (req, code, message) in cases {
        let status = s.client.watch_changes(req).await.unwrap_err();
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(
            status.message().contains(message),
            "expected {message:?} in {:?}",
            status.message()
        );
    }
    s.stop.take().unwrap().send(()).unwrap();
    s.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn only_the_broker_may_watch() {
    let mut s = start(ChangeFeed::new()).await;
    let pki_dir = s.dir.path().join("pki");
    let consumer = DeptId::new("civil-affairs").unwrap();
    pki::issue(
        &pki_dir,
        &pki::IssueOptions::new(consumer.clone(), Role::Consumer),
    )
    .unwrap();
    let tls =
        ClientTls::load(&TlsFiles::from_pki_dir(&pki_dir, &consumer, Role::Consumer)).unwrap();
    let mut client = AdapterClient::new(connect(s.addr, &tls).await);
    let status = client
        .watch_changes(watch_request(RESOURCE, ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    s.stop.take().unwrap().send(()).unwrap();
    s.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_change_with_a_malformed_key_ends_the_stream_with_internal() {
    let mut s = start(ChangeFeed::new()).await;
    let mut stream = s
        .client
        .watch_changes(watch_request(RESOURCE, ""))
        .await
        .unwrap()
        .into_inner();
    s.feed
        .publish(&rn(), [("name", Value::string("x"))], None::<Record>);
    let status = next(&mut stream).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(status.message().contains("malformed change"), "{status:?}");
    s.stop.take().unwrap().send(()).unwrap();
    s.task.await.unwrap().unwrap();
}
