//! The Adapter service's requests as the broker (or anyone past the TLS guard) sends them:
//! decoded, then answered by the real adapter service over the example data, so that the key,
//! filter, field and cursor checks and the in-memory table's lookups all run.
#![no_main]

use std::sync::OnceLock;

use futures_util::FutureExt;
use huitong_adapter::{AdapterService, JsonlSource, ServeOptions};
use huitong_fuzz::{PUBLIC_SECURITY_TOML, example_adapter, runtime, scratch};
use huitong_proto::v1::adapter_server::Adapter;
use huitong_proto::v1::{FetchRequest, SearchRequest, WatchChangesRequest};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tokio_stream::StreamExt;
use tonic::Request;

fn service() -> &'static AdapterService<JsonlSource> {
    static SERVICE: OnceLock<AdapterService<JsonlSource>> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let config = example_adapter(PUBLIC_SECURITY_TOML, &scratch("adapter"));
        let source = match config.into_source() {
            Ok(s) => s,
            Err(e) => panic!("the example data does not load: {e}"),
        };
        match AdapterService::new(config.dept().clone(), source, &ServeOptions::default()) {
            Ok(s) => s,
            Err(e) => panic!("the example adapter does not start: {e}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let svc = service();
    runtime().block_on(async {
        match which % 3 {
            0 => {
                if let Ok(req) = FetchRequest::decode(bytes) {
                    let _ = svc.fetch(Request::new(req)).await;
                }
            }
            1 => {
                if let Ok(req) = SearchRequest::decode(bytes) {
                    let _ = svc.search(Request::new(req)).await;
                }
            }
            _ => {
                if let Ok(req) = WatchChangesRequest::decode(bytes)
                    && let Ok(stream) = svc.watch_changes(Request::new(req)).await
                {
                    // The changes already retained, without waiting for new ones.
                    let mut stream = stream.into_inner();
                    for _ in 0..4 {
                        match stream.next().now_or_never() {
                            Some(Some(_)) => {}
                            _ => break,
                        }
                    }
                }
            }
        }
    });
});
