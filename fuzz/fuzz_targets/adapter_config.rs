//! An adapter's configuration file, read and checked as `huitong adapter` reads it, then the
//! checks `huitong config check` makes on its file sources (data files read, when the input
//! names the example data next to it).
#![no_main]

use huitong_adapter::AdapterConfig;
use huitong_fuzz::{PUBLIC_SECURITY_TOML, example_adapter, scratch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = scratch("adapter-config");
    static DATA: std::sync::Once = std::sync::Once::new();
    // The example data in `data/`, where the example configurations point.
    DATA.call_once(|| drop(example_adapter(PUBLIC_SECURITY_TOML, &dir)));
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = AdapterConfig::from_toml_str(text, dir.join("adapter.toml")) else {
        return;
    };
    let _ = config.raw().to_toml_string();
    let _ = huitong_sources::check(&config);
});
