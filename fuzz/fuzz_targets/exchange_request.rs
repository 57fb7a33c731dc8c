//! The Exchange service's requests, as a consumer sends them: decoded with the servers' codec
//! rules (prost), then through the broker's own checks against each example resource.
#![no_main]

use huitong_core::{Purpose, ResourceId};
use huitong_fuzz::example_specs;
use huitong_proto::v1::{AcknowledgeRequest, ListCatalogueRequest, QueryRequest, SubscribeRequest};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let specs = example_specs();
    match which % 4 {
        0 => {
            let Ok(q) = QueryRequest::decode(bytes) else {
                return;
            };
            // The resource the request names if it is one of the examples, else each in turn,
            // so that the field, key and filter checks run whatever the name says.
            let named: Vec<_> = specs
                .iter()
                .filter(|s| s.id().to_string() == q.resource)
                .collect();
            let candidates: Vec<_> = if named.is_empty() {
                specs.iter().collect()
            } else {
                named
            };
            for spec in candidates {
                let _ = huitong_broker::exchange::check_request(spec, &q);
            }
            // The subject the log indexes: each key value as text (as `release::subject_of`
            // renders it), normalised.
            let parts: Vec<(&str, String)> = q
                .key
                .iter()
                .map(|(k, v)| (k.as_str(), huitong_broker::release::key_text(v)))
                .collect();
            let parts: Vec<(&str, &str)> = parts.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let _ = huitong_audit::normalise_key(&parts);
        }
        1 => {
            let Ok(s) = SubscribeRequest::decode(bytes) else {
                return;
            };
            // The checks `subscribe::open` makes before policy.
            let _ = ResourceId::parse(&s.resource);
            let _ = Purpose::new(&s.purpose);
            for spec in specs {
                let _ = spec.check_shared();
                let _ = spec.check_requested_fields(s.fields.iter().map(String::as_str));
            }
        }
        2 => {
            let Ok(a) = AcknowledgeRequest::decode(bytes) else {
                return;
            };
            let _ = ResourceId::parse(&a.resource);
        }
        _ => {
            let Ok(l) = ListCatalogueRequest::decode(bytes) else {
                return;
            };
            let _ = huitong_core::DeptId::new(&l.provider);
        }
    }
});
