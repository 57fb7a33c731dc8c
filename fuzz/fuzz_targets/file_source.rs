//! CSV and JSON Lines data files, as a department's export job writes them, read by the file
//! source against each example resource's description. What loads must serve: every record
//! is found again by its key, and a reload of the same file reports no change.
#![no_main]

use std::collections::BTreeMap;

use huitong_adapter::PageRequest;
use huitong_core::FieldName;
use huitong_fuzz::{example_specs, scratch, sections};
use huitong_sources::file::{self, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let specs = example_specs();
    let spec = &specs[(which as usize >> 2) % specs.len()];
    let format = match which & 3 {
        0 | 1 => Format::Jsonl,
        2 => Format::Csv {
            delimiter: b',',
            columns: BTreeMap::new(),
        },
        _ => {
            // A delimiter and a column renamed, as a source table may give them.
            let parts = sections(rest, 2);
            let delimiter = parts[0].first().copied().unwrap_or(b';');
            let mut columns = BTreeMap::new();
            if let Some(f) = spec.fields().first() {
                columns.insert(
                    f.name.to_string(),
                    String::from_utf8_lossy(parts[0].get(1..).unwrap_or_default()).into_owned(),
                );
            }
            Format::Csv { delimiter, columns }
        }
    };
    let body = if which & 3 == 3 {
        sections(rest, 2)[1]
    } else {
        rest
    };
    let path = scratch("file-source").join("data");
    huitong_fuzz::write(&path, body);
    let Ok(table) = file::read(spec.clone(), &path, &format) else {
        return;
    };
    assert!(
        table.changes_to(&table).is_empty(),
        "reloading an unchanged file reports changes"
    );
    let fields: Vec<FieldName> = spec.fields().iter().map(|f| f.name.clone()).collect();
    let page = table.search(
        &[],
        &fields,
        PageRequest {
            size: 8,
            token: None,
        },
    );
    let Ok(page) = page else {
        panic!("a loaded table cannot list its records: {page:?}");
    };
    for record in &page.records {
        let key: Vec<_> = spec
            .key_fields()
            .iter()
            .map(|k| {
                (
                    k.clone(),
                    record.fields.get(k.as_str()).cloned().unwrap_or_default(),
                )
            })
            .collect();
        let found = table.fetch(&key, &fields);
        assert!(
            matches!(found, Ok(Some(_))),
            "a loaded record is not found by its key: {found:?}"
        );
    }
});
