//! The server over real loopback gRPC, with a [`JsonlSource`] behind it.

use std::collections::HashSet;

use huitong_core::{FieldType, Sensitivity, SharingClass};
use huitong_proto::v1::adapter_client::AdapterClient;
use huitong_proto::v1::{Date, ResourceDescription};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

use super::*;
use crate::JsonlSource;
use crate::test_support::{TempDir, field, household_register, names, spec, test_pki};
use huitong_tls::{Expect, Role};

const DEPT: &str = "public-security";
const RESOURCE: &str = "household-register";
const OPTIONS: ServeOptions = ServeOptions {
    max_message_bytes: MIN_MESSAGE_BYTES,
    default_page_size: 5,
    max_page_size: 7,
    metrics_listen: None,
    brokers: Vec::new(),
    connections: huitong_tls::ConnectionLimits::DEFAULT,
    shutdown_grace: crate::server::DEFAULT_SHUTDOWN_GRACE,
};

fn id(i: usize) -> String {
    format!("11010119900101{i:04}")
}

fn district(i: usize) -> &'static str {
    ["东城区", "西城区", "朝阳区"][i % 3]
}

/// 30 residents; the values of each are derived from its number.
fn household_lines() -> String {
    (0..30)
        .map(|i| {
            format!(
                "{{\"id_number\":\"{}\",\"name\":\"居民{i}\",\"birth_date\":\"1990-01-{:02}\",\"district\":\"{}\",\"household_size\":{},\"floor_area\":{},\"is_head\":{}}}\n",
                id(i),
                i % 28 + 1,
                district(i),
                i % 4 + 1,
                if i % 2 == 0 { "60" } else { "72.5" },
                i % 5 == 0,
            )
        })
        .collect()
}

fn secret_resource() -> ResourceSpec {
    spec(
        DEPT,
        "criminal-records",
        vec![
            field("id_number", FieldType::String, Sensitivity::Personal),
            field("offence", FieldType::String, Sensitivity::Sensitive),
        ],
        &["id_number"],
        SharingClass::NotShared,
    )
}

struct Running {
    channel: Channel,
    client: AdapterClient<Channel>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), Error>>,
    _dir: TempDir,
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).unwrap();
        }
        (&mut self.task).await.unwrap().unwrap();
    }
}

async fn start() -> Running {
    let dir = TempDir::new("server");
    let hr = dir.write("household-register.jsonl", household_lines());
    let cr = dir.write(
        "criminal-records.jsonl",
        format!("{{\"id_number\":\"{}\",\"offence\":\"x\"}}\n", id(1)),
    );
    let source = JsonlSource::load([(household_register(), hr), (secret_resource(), cr)]).unwrap();
    let listener = transport::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (server_tls, broker_tls) = test_pki(&dir, DEPT);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        DeptId::new(DEPT).unwrap(),
        source,
        listener,
        OPTIONS,
        server_tls,
        async {
            let _ = stopped.await;
        },
    ));
    let channel = huitong_tls::endpoint(&addr.to_string())
        .unwrap()
        .connect_with_connector(broker_tls.connector(Expect::Role(Role::Adapter)))
        .await
        .unwrap();
    let client = AdapterClient::new(channel.clone());
    Running {
        channel,
        client,
        stop: Some(stop),
        task,
        _dir: dir,
    }
}

fn fetch_request(resource: &str, key: Option<&str>, fields: &[&str]) -> FetchRequest {
    FetchRequest {
        resource: resource.into(),
        key: key
            .map(|k| HashMap::from([("id_number".to_owned(), Value::string(k))]))
            .unwrap_or_default(),
        fields: fields.iter().map(|f| (*f).to_owned()).collect(),
    }
}

fn filter(field: &str, value: Value) -> Filter {
    Filter {
        field: field.into(),
        value: Some(value),
    }
}

#[tokio::test]
async fn describe_names_the_department_its_resources_and_the_software() {
    let mut s = start().await;
    let d = s
        .client
        .describe(DescribeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.dept_id, DEPT);
    let want: Vec<ResourceDescription> = [household_register(), secret_resource()]
        .iter()
        .map(convert::resource_description)
        .collect();
    assert_eq!(d.resources, want);
    assert_eq!(
        d.software,
        format!("huitong-adapter/{} jsonl", env!("CARGO_PKG_VERSION"))
    );
    s.stop().await;
}

#[tokio::test]
async fn fetch_returns_each_field_asked_for_and_only_that() {
    let mut s = start().await;
    let i = 7;
    let expected = [
        ("id_number", Value::string(id(i))),
        ("name", Value::string("居民7")),
        (
            "birth_date",
            Value {
                kind: Some(Kind::DateValue(Date {
                    year: 1990,
                    month: 1,
                    day: 8,
                })),
            },
        ),
        ("district", Value::string(district(i))),
        ("household_size", Value::int(4)),
        ("floor_area", Value::double(72.5)),
        ("is_head", Value::bool(false)),
    ];
    for (name, value) in &expected {
        let rec = s
            .client
            .fetch(fetch_request(RESOURCE, Some(&id(i)), &[name]))
            .await
            .unwrap()
            .into_inner()
            .record
            .unwrap();
        assert_eq!(rec.fields.len(), 1, "{name}: {:?}", rec.fields.keys());
        assert_eq!(&rec.fields[*name], value, "{name}");
    }

    // By catalogue id too, several fields at once.
    let rec = s
        .client
        .fetch(fetch_request(
            "public-security/household-register",
            Some(&id(i)),
            &["name", "district"],
        ))
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    let mut got: Vec<&str> = rec.fields.keys().map(String::as_str).collect();
    got.sort_unstable();
    assert_eq!(got, ["district", "name"]);
    s.stop().await;
}

#[tokio::test]
async fn fetch_refusals_are_precise_and_never_quote_the_key() {
    let mut s = start().await;
    let unknown = "110101200012319999";
    let cases: Vec<(FetchRequest, Code, &str)> = vec![
        (
            fetch_request(RESOURCE, Some(unknown), &["name"]),
            Code::NotFound,
            "no record of public-security/household-register has that key",
        ),
        (
            fetch_request("marriage-registrations", Some(unknown), &["name"]),
            Code::NotFound,
            "resource marriage-registrations is not served by department public-security; Describe lists what is",
        ),
        (
            fetch_request("civil-affairs/household-register", Some(unknown), &["name"]),
            Code::NotFound,
            "resource civil-affairs/household-register is not served by department public-security",
        ),
        (
            fetch_request("Household Register", Some(unknown), &["name"]),
            Code::InvalidArgument,
            "resource name \"Household Register\" is not valid",
        ),
        (
            fetch_request(RESOURCE, Some(unknown), &["name", "income"]),
            Code::InvalidArgument,
            "field \"income\" is not a field of public-security/household-register; its fields are: id_number,",
        ),
        (
            fetch_request(RESOURCE, Some(unknown), &[]),
            Code::InvalidArgument,
            "name the fields you need",
        ),
        (
            fetch_request(RESOURCE, Some(unknown), &["name", "name"]),
            Code::InvalidArgument,
            "field \"name\" is named twice",
        ),
        (
            fetch_request(RESOURCE, None, &["name"]),
            Code::InvalidArgument,
            "the key of public-security/household-register is (id_number); 0 of 1 key fields were given",
        ),
        (
            fetch_request(RESOURCE, Some(" "), &["name"]),
            Code::InvalidArgument,
            "the value for id_number is empty",
        ),
        (
            FetchRequest {
                key: HashMap::from([("id_number".to_owned(), Value::int(110101))]),
                ..fetch_request(RESOURCE, None, &["name"])
            },
            Code::InvalidArgument,
            "field \"id_number\" of public-security/household-register holds string values, but an int was given",
        ),
        (
            FetchRequest {
                key: HashMap::from([("name".to_owned(), Value::string(unknown))]),
                ..fetch_request(RESOURCE, None, &["name"])
            },
            Code::InvalidArgument,
            "\"name\" is not a key field",
        ),
        (
            fetch_request("criminal-records", Some(&id(1)), &["offence"]),
            Code::PermissionDenied,
            "resource public-security/criminal-records is catalogued as not shared",
        ),
    ];
    for (req, code, message) in cases {
        let status = s.client.fetch(req).await.unwrap_err();
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(
            status.message().contains(message),
            "expected {message:?} in {:?}",
            status.message()
        );
        assert!(!status.message().contains(unknown), "{}", status.message());
    }
    s.stop().await;
}

/// Pages through a search, checking that each token leads on; returns the ids in order.
async fn all_pages(s: &mut Running, filters: Vec<Filter>, page_size: u32) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let page = s
            .client
            .search(SearchRequest {
                resource: RESOURCE.into(),
                filters: filters.clone(),
                fields: vec!["id_number".into(), "district".into()],
                page_size,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!page.records.is_empty() || ids.is_empty());
        for r in page.records {
            assert_eq!(r.fields.len(), 2);
            ids.push(r.fields["id_number"].as_str().unwrap().to_owned());
        }
        if page.next_page_token.is_empty() {
            return ids;
        }
        token = page.next_page_token;
    }
}

#[tokio::test]
async fn search_pages_are_stable_complete_and_without_duplicates() {
    let mut s = start().await;
    let east = vec![filter("district", Value::string("东城区"))];
    let want: Vec<String> = (0..30).filter(|i| i % 3 == 0).map(id).collect();
    for page_size in [1, 3, 4, 0, 100] {
        let got = all_pages(&mut s, east.clone(), page_size).await;
        assert_eq!(got, want, "page size {page_size}");
        assert_eq!(got.iter().collect::<HashSet<_>>().len(), got.len());
    }
    // The same search twice gives the same answer.
    assert_eq!(all_pages(&mut s, east.clone(), 3).await, want);

    // Every filter must hold; an int filter on a double field compares as a double.
    let both = vec![
        filter("district", Value::string("东城区")),
        filter("floor_area", Value::int(60)),
    ];
    let want: Vec<String> = (0..30).filter(|i| i % 6 == 0).map(id).collect();
    assert_eq!(all_pages(&mut s, both, 2).await, want);

    // No filters: every record, in file order.
    let all: Vec<String> = (0..30).map(id).collect();
    assert_eq!(all_pages(&mut s, vec![], 7).await, all);
    s.stop().await;
}

#[tokio::test]
async fn page_sizes_default_and_are_capped() {
    let mut s = start().await;
    let mut size_of_first_page = async |page_size| {
        s.client
            .search(SearchRequest {
                resource: RESOURCE.into(),
                fields: vec!["name".into()],
                page_size,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .records
            .len()
    };
    assert_eq!(size_of_first_page(0).await, 5);
    assert_eq!(size_of_first_page(2).await, 2);
    assert_eq!(size_of_first_page(1000).await, 7);
    s.stop().await;
}

#[tokio::test]
async fn search_refusals_are_precise() {
    let mut s = start().await;
    let base = SearchRequest {
        resource: RESOURCE.into(),
        fields: vec!["name".into()],
        ..Default::default()
    };
    let cases: Vec<(SearchRequest, Code, &str)> = vec![
        (
            SearchRequest {
                page_token: "not-a-token".into(),
                ..base.clone()
            },
            Code::InvalidArgument,
            "the page_token is not one this adapter issued; start again without one",
        ),
        (
            SearchRequest {
                page_token: "30".into(),
                ..base.clone()
            },
            Code::InvalidArgument,
            "the page_token is not one this adapter issued",
        ),
        (
            SearchRequest {
                filters: vec![filter("income", Value::int(1))],
                ..base.clone()
            },
            Code::InvalidArgument,
            "field \"income\" is not a field of public-security/household-register",
        ),
        (
            SearchRequest {
                filters: vec![filter("household_size", Value::string("3"))],
                ..base.clone()
            },
            Code::InvalidArgument,
            "field \"household_size\" of public-security/household-register holds int values, but a string was given",
        ),
        (
            SearchRequest {
                filters: vec![
                    filter("district", Value::string("东城区")),
                    filter("district", Value::string("西城区")),
                ],
                ..base.clone()
            },
            Code::InvalidArgument,
            "field \"district\" is named twice",
        ),
        (
            SearchRequest {
                fields: vec![],
                ..base.clone()
            },
            Code::InvalidArgument,
            "name the fields you need",
        ),
        (
            SearchRequest {
                resource: "criminal-records".into(),
                fields: vec!["offence".into()],
                ..base.clone()
            },
            Code::PermissionDenied,
            "not shared",
        ),
    ];
    for (req, code, message) in cases {
        let status = s.client.search(req).await.unwrap_err();
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(
            status.message().contains(message),
            "expected {message:?} in {:?}",
            status.message()
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn watch_changes_is_unimplemented_with_a_reason() {
    let mut s = start().await;
    let status = s
        .client
        .watch_changes(WatchChangesRequest {
            resource: RESOURCE.into(),
            cursor: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    assert_eq!(
        status.message(),
        "the source of public-security/household-register does not report changes, so they \
         cannot be watched; read it with Fetch or Search instead"
    );
    s.stop().await;
}

async fn oversized_fetch() -> Status {
    let mut s = start().await;
    let huge = "f".repeat(MIN_MESSAGE_BYTES + 1);
    let status = s
        .client
        .fetch(fetch_request(RESOURCE, Some(&id(1)), &[&huge]))
        .await
        .unwrap_err();
    s.stop().await;
    status
}

#[tokio::test]
async fn an_oversized_request_is_refused_at_the_configured_limit() {
    let status = oversized_fetch().await;
    assert!(
        matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange),
        "{status:?}"
    );
    assert!(
        status.message().contains("16384 bytes"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn an_oversized_request_is_resource_exhausted() {
    let status = oversized_fetch().await;
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn health_is_serving_and_reflection_lists_the_services() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let s = start().await;
    let channel = s.channel.clone();
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "huitong.v1.Adapter"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a service list: {answer:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "huitong.v1.Adapter"
        ]
    );
    s.stop().await;
}

#[tokio::test]
async fn health_turns_not_serving_when_shutdown_begins() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let mut s = start().await;
    let mut health = HealthClient::new(s.channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "huitong.v1.Adapter".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    if let Some(stop) = s.stop.take() {
        stop.send(()).unwrap();
    }
    let next = watch.next().await.unwrap().unwrap();
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    drop(watch);
    s.stop().await;
}

async fn serve_error(source: JsonlSource, options: ServeOptions) -> String {
    let listener = transport::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let dir = TempDir::new("serve-error");
    let (server_tls, _) = test_pki(&dir, DEPT);
    serve(
        DeptId::new(DEPT).unwrap(),
        source,
        listener,
        options,
        server_tls,
        std::future::pending(),
    )
    .await
    .unwrap_err()
    .to_string()
}

#[tokio::test]
async fn serve_refuses_sources_it_cannot_serve_before_listening() {
    let dir = TempDir::new("server-refuse");
    let path = dir.write("x.jsonl", "");
    let foreign = spec(
        "civil-affairs",
        "marriage-registrations",
        vec![field("id", FieldType::String, Sensitivity::Personal)],
        &["id"],
        SharingClass::Open,
    );
    let source =
        JsonlSource::load([(household_register(), path.clone()), (foreign, path)]).unwrap();
    let e = serve_error(source, ServeOptions::default()).await;
    assert_eq!(
        e,
        "the source describes civil-affairs/marriage-registrations, but this adapter serves \
         department public-security; an adapter serves only its own department's resources"
    );

    let empty = JsonlSource::load([]).unwrap();
    let e = serve_error(empty, ServeOptions::default()).await;
    assert!(e.contains("describes no resources"), "{e}");

    let source = JsonlSource::load([]).unwrap();
    let e = serve_error(
        source,
        ServeOptions {
            default_page_size: 10,
            max_page_size: 5,
            ..ServeOptions::default()
        },
    )
    .await;
    assert!(
        e.starts_with("invalid serve options: max_page_size: 5 is smaller"),
        "{e}"
    );
}

#[test]
fn answers_are_trimmed_and_values_made_canonical() {
    let record = Record {
        fields: HashMap::from([
            ("name".to_owned(), Value::string("a")),
            ("district".to_owned(), Value::string("b")),
            ("floor_area".to_owned(), Value::double(1.0)),
        ]),
    };
    let trimmed = trimmed(record, &names(&["name", "floor_area"]));
    let mut keys: Vec<&str> = trimmed.fields.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["floor_area", "name"]);

    assert_eq!(
        coerced(Some(FieldType::Double), Value::int(3)),
        Value::double(3.0)
    );
    assert_eq!(coerced(Some(FieldType::Int), Value::int(3)), Value::int(3));
    assert_eq!(
        coerced(
            Some(FieldType::String),
            Value {
                kind: Some(Kind::NullValue(false))
            }
        ),
        Value::null()
    );
    assert_eq!(
        coerced(Some(FieldType::String), Value { kind: None }),
        Value::null()
    );
}

#[test]
fn the_brokers_served_are_the_configured_ones_of_this_exchange_or_the_default() {
    let own = PeerId::new(
        "gov.example",
        DeptId::new("public-security").unwrap(),
        Role::Adapter,
    )
    .unwrap();
    let broker =
        |td: &str, dept: &str, role| PeerId::new(td, DeptId::new(dept).unwrap(), role).unwrap();
    let default = accepted_brokers(&ServeOptions::default(), &own).unwrap();
    assert_eq!(
        default,
        [broker("gov.example", "exchange-office", Role::Broker)]
    );
    let two = ServeOptions {
        brokers: vec![
            broker("gov.example", "exchange-a", Role::Broker),
            broker("gov.example", "exchange-b", Role::Broker),
        ],
        ..ServeOptions::default()
    };
    assert_eq!(accepted_brokers(&two, &own).unwrap(), two.brokers);
    let foreign = ServeOptions {
        brokers: vec![broker("other.example", "exchange-office", Role::Broker)],
        ..ServeOptions::default()
    };
    let e = accepted_brokers(&foreign, &own).unwrap_err().to_string();
    assert!(e.contains("brokers[0]") && e.contains("gov.example"), "{e}");
    let consumer = ServeOptions {
        brokers: vec![broker("gov.example", "civil-affairs", Role::Consumer)],
        ..ServeOptions::default()
    };
    let e = accepted_brokers(&consumer, &own).unwrap_err().to_string();
    assert!(e.contains("not a broker identity"), "{e}");
}
