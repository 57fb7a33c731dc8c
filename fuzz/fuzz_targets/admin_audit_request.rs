//! The Admin and Audit services' requests, and the grants and access requests the CLI reads
//! back: decoded, then through the checks the broker makes (`AccessRequest::file`, `approve`,
//! `deny`, `revoke`, the wire conversions) and the proof checks an auditor's client makes.
#![no_main]

use std::time::SystemTime;

use huitong_audit::merkle::{self, Hash};
use huitong_core::calendar::WorkCalendar;
use huitong_core::policy::{AccessRequest, AccessRequestForm};
use huitong_core::{DeptId, ResourceId};
use huitong_fuzz::{example_specs, sections};
use huitong_proto::convert;
use huitong_proto::v1::{
    self, AccessRequestState, ApproveAccessRequestRequest, ConsistencyProof,
    DenyAccessRequestRequest, FileAccessRequestRequest, InclusionProof, ListAccessRequestsRequest,
    ListEntriesRequest, RevokeGrantRequest, SubjectReportRequest,
};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn hashes(raw: &[Vec<u8>]) -> Option<Vec<Hash>> {
    raw.iter()
        .map(|h| merkle::hash_from_slice(h).ok())
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let now = SystemTime::now();
    match which % 6 {
        // File, then approve or deny, then revoke: the life of an access request.
        0 => {
            let parts = sections(rest, 3);
            let Ok(file) = FileAccessRequestRequest::decode(parts[0]) else {
                return;
            };
            let Ok(resource) = ResourceId::parse(&file.resource) else {
                return;
            };
            let Some(spec) = example_specs().iter().find(|s| s.id() == &resource) else {
                return;
            };
            let Ok(consumer) = DeptId::new("fuzz-consumer") else {
                return;
            };
            let Ok(mut request) = AccessRequest::file(
                AccessRequestForm {
                    id: "AR-1".into(),
                    consumer,
                    fields: file.fields,
                    purposes: file.purposes,
                    legal_basis: file.legal_basis,
                    duration_days: file.duration_days,
                },
                spec,
                now,
                10,
                &WorkCalendar::default(),
            ) else {
                return;
            };
            let back = convert::request_to_wire(&request, now);
            assert!(
                convert::request_from_wire(&back).is_ok(),
                "a filed request does not read back from the wire: {back:?}"
            );
            let provider = resource.provider().clone();
            if let Ok(approve) = ApproveAccessRequestRequest::decode(parts[1]) {
                // The broker's own reading of an approval: fields, masks, matching, bounds.
                let Ok(terms) = convert::terms_from_wire(&approve) else {
                    return;
                };
                let mut pending = request.clone();
                if let Ok(mut grant) = pending.approve(&provider, now, "G-1".into(), terms) {
                    let wire = convert::grant_to_wire(&grant, now);
                    assert!(
                        convert::grant_from_wire(&wire).is_ok(),
                        "an approved grant does not read back from the wire: {wire:?}"
                    );
                    if let Ok(revoke) = RevokeGrantRequest::decode(parts[2]) {
                        let _ = grant.revoke(&provider, now, &revoke.reason);
                    }
                }
            }
            if let Ok(deny) = DenyAccessRequestRequest::decode(parts[2]) {
                let _ = request.deny(&provider, now, &deny.reason);
            }
        }
        1 => {
            if let Ok(l) = ListAccessRequestsRequest::decode(rest) {
                let _ = AccessRequestState::try_from(l.state);
            }
        }
        // What `huitong admin` reads back from the broker.
        2 => {
            if let Ok(g) = v1::Grant::decode(rest)
                && let Ok(grant) = convert::grant_from_wire(&g)
            {
                let _ = convert::grant_to_wire(&grant, now);
            }
        }
        3 => {
            if let Ok(r) = v1::AccessRequest::decode(rest)
                && let Ok(request) = convert::request_from_wire(&r)
            {
                let _ = convert::request_to_wire(&request, now);
            }
        }
        // Audit requests, and the proofs an auditor's client checks.
        4 => {
            let parts = sections(rest, 4);
            if let Ok(r) = ListEntriesRequest::decode(parts[0]) {
                for id in [&r.consumer, &r.provider] {
                    let _ = DeptId::new(id);
                }
                let _ = ResourceId::parse(&r.resource);
            }
            if let Ok(r) = SubjectReportRequest::decode(parts[1]) {
                let _ = ResourceId::parse(&r.resource);
                let key: Vec<(&str, &str)> = r
                    .key
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let _ = huitong_audit::normalise_key(&key);
            }
            let root = merkle::leaf_hash(parts[3]);
            if let Ok(p) = InclusionProof::decode(parts[2])
                && let (Ok(leaf), Some(proof)) =
                    (merkle::hash_from_slice(&p.leaf_hash), hashes(&p.hashes))
            {
                let _ = merkle::verify_inclusion(p.index, p.tree_size, &leaf, &proof, &root);
            }
        }
        _ => {
            let parts = sections(rest, 2);
            if let Ok(p) = ConsistencyProof::decode(parts[0])
                && let Some(proof) = hashes(&p.hashes)
            {
                let roots = sections(parts[1], 2);
                let (r1, r2) = (merkle::leaf_hash(roots[0]), merkle::leaf_hash(roots[1]));
                let _ = merkle::verify_consistency(p.old_size, p.new_size, &r1, &r2, &proof);
            }
        }
    }
});
