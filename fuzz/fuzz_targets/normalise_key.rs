//! The id-number normaliser that queries and subject reports share: whatever a consumer or an
//! auditor types must give one subject, so the function must be total and its output must not
//! depend on the order the key fields come in.
#![no_main]

use huitong_audit::normalise_key;
use huitong_fuzz::sections;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let texts: Vec<String> = sections(data, 2)
        .into_iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    let parts: Vec<(&str, &str)> = texts
        .chunks(2)
        .map(|p| (p[0].as_str(), p.get(1).map_or("", String::as_str)))
        .collect();
    let once = normalise_key(&parts);
    let mut reversed = parts.clone();
    reversed.reverse();
    assert_eq!(
        normalise_key(&reversed),
        once,
        "the key fields' order changed the subject"
    );
});
