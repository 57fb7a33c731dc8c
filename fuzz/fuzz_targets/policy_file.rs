//! The broker's policy file (grants, quotas, cache limits), read as the broker reads it at
//! start-up and on SIGHUP.
#![no_main]

use huitong_broker::policy::{load_cache_limits, load_policy_file, load_quotas};
use huitong_fuzz::{scratch, write};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = scratch("policy").join("policy.toml");
    write(&path, data);
    let _ = load_policy_file(&path);
    let _ = load_quotas(&path);
    let _ = load_cache_limits(&path);
});
