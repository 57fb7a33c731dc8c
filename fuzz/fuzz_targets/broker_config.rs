//! The broker's configuration file, read and checked as `huitong broker` and
//! `huitong config check` read it.
#![no_main]

use huitong_broker::BrokerConfig;
use huitong_fuzz::{scratch, write};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = scratch("broker-config").join("broker.toml");
    write(&path, data);
    let _ = BrokerConfig::load(&path);
});
