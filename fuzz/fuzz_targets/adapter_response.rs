//! What the broker decodes from adapters, which may be another department's own code:
//! descriptions (which become the catalogue), records (masked, digested into the log),
//! change events (keys become cache keys) and error statuses (which become the consumer's).
#![no_main]

use huitong_broker::ExchangeError;
use huitong_broker::cache::CacheKey;
use huitong_broker::error::AdapterCall;
use huitong_core::masking::apply_text;
use huitong_core::{DeptId, Mask, ResourceId};
use huitong_fuzz::{example_specs, sections};
use huitong_proto::convert;
use huitong_proto::v1::value::Kind;
use huitong_proto::v1::{ChangeEvent, DescribeResponse, FetchResponse, Record, SearchResponse};
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// What the broker does to records before they leave: every mask on every text value, the
/// JSON rendering the CLI and log export use, and the answer digest the log records.
fn released(records: &[Record]) {
    for r in records {
        for v in r.fields.values() {
            let _ = v.to_json();
            if let Some(Kind::StringValue(s)) = &v.kind {
                // The fixed masks, and a pattern mask at the edges of its range.
                let patterns = [
                    Mask::Keep {
                        head: 1,
                        tail: 1,
                        fill: '*',
                    },
                    Mask::Keep {
                        head: 0,
                        tail: u16::MAX,
                        fill: '字',
                    },
                ];
                for m in Mask::ALL.iter().chain(patterns.iter()) {
                    let _ = apply_text(*m, s);
                }
            }
        }
    }
    let _ = huitong_audit::record::answer_digest(records);
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => {
            let Ok(d) = DescribeResponse::decode(bytes) else {
                return;
            };
            let Ok(dept) = DeptId::new(&d.dept_id) else {
                return;
            };
            for r in &d.resources {
                if let Ok(spec) = convert::resource_spec(&dept, r) {
                    // The catalogue the broker serves is this description read back.
                    let wire = convert::resource_description(&spec);
                    assert!(
                        convert::resource_spec(&dept, &wire).is_ok(),
                        "an accepted description does not read back: {wire:?}"
                    );
                }
            }
        }
        1 => {
            if let Ok(f) = FetchResponse::decode(bytes) {
                released(&f.record.into_iter().collect::<Vec<_>>());
            }
        }
        2 => {
            if let Ok(s) = SearchResponse::decode(bytes) {
                released(&s.records);
            }
        }
        3 => {
            let Ok(e) = ChangeEvent::decode(bytes) else {
                return;
            };
            let _ = ResourceId::parse(&e.resource);
            for spec in example_specs() {
                let _ = CacheKey::new(spec, &e.key);
            }
            released(&e.record.into_iter().collect::<Vec<_>>());
        }
        // An adapter's error: any code, any message, becomes the consumer's status.
        _ => {
            let parts = sections(bytes, 2);
            let code = parts[0].first().copied().unwrap_or(0) as i32;
            let message = String::from_utf8_lossy(parts[1]);
            let status = tonic::Status::new(tonic::Code::from(code % 20), message.as_ref());
            for spec in example_specs().iter().take(2) {
                for call in [AdapterCall::Fetch, AdapterCall::Search] {
                    let e =
                        ExchangeError::from_adapter(spec.id().provider(), spec.id(), call, &status);
                    let _ = e.recorded();
                    let _ = e.into_status("fuzz-request");
                }
            }
        }
    }
});
