//! A built-in source backed by JSON Lines files: one file per resource, one JSON object per
//! line, keys are field names.
//!
//! [`JsonlSource`] reads its files once, when it is loaded, into [`MemTable`]s: rows as arrays of
//! typed values in the resource's field order, plus a hash index on the key. Suited to reference
//! data, demonstrations and tests; a register of millions of rows belongs in a database source.
//! [`read`] reads one file, for sources that reload files when they change.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use huitong_core::{FieldName, ResourceName, ResourceSpec};
use huitong_proto::v1::{Record, Value};

use crate::error::Error;
use crate::source::{Page, PageRequest, Source, SourceError};
use crate::table::{MemTable, RowError};

/// A [`Source`] that serves records loaded from JSON Lines files.
///
/// Values are read with `Value::from_json` for the field's type (dates as `"YYYY-MM-DD"`,
/// timestamps as RFC 3339, bytes as base64); a field missing from a line is null. Searches
/// return records in file order; page tokens are offsets into the file's records.
pub struct JsonlSource {
    tables: Vec<(MemTable, PathBuf)>,
    by_name: HashMap<ResourceName, usize>,
}

impl fmt::Debug for JsonlSource {
    // Rows hold personal data, which has no place in debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for (t, file) in &self.tables {
            list.entry(&format_args!(
                "{} ({} records from {})",
                t.spec().id(),
                t.len(),
                file.display()
            ));
        }
        list.finish()
    }
}

impl JsonlSource {
    /// Reads each resource's file. Any line that does not fit its resource's description
    /// fails the whole load with an [`Error::Data`] naming the file, line and field.
    ///
    /// This reads files synchronously; call it before serving, not from a request handler.
    pub fn load(
        resources: impl IntoIterator<Item = (ResourceSpec, PathBuf)>,
    ) -> Result<Self, Error> {
        let mut tables = Vec::new();
        let mut by_name = HashMap::new();
        for (spec, file) in resources {
            if by_name.contains_key(spec.id().name()) {
                return Err(Error::DuplicateResource(spec.id().clone()));
            }
            let table = read(spec, &file)?;
            tracing::debug!(
                resource = %table.spec().id(),
                records = table.len(),
                file = %file.display(),
                "loaded"
            );
            by_name.insert(table.spec().id().name().clone(), tables.len());
            tables.push((table, file));
        }
        Ok(Self { tables, by_name })
    }

    /// How many records a resource has, or `None` if it is not served.
    pub fn record_count(&self, resource: &ResourceName) -> Option<usize> {
        self.table(resource).ok().map(MemTable::len)
    }

    fn table(&self, resource: &ResourceName) -> Result<&MemTable, SourceError> {
        self.by_name
            .get(resource)
            .and_then(|&i| self.tables.get(i))
            .map(|(t, _)| t)
            .ok_or_else(|| SourceError::Internal(format!("no file is loaded for {resource}")))
    }
}

/// Reads one resource's JSON Lines file into a table. Any line that does not fit the
/// resource's description fails the read with an [`Error::Data`] naming the file, line and
/// field, never the value.
pub fn read(spec: ResourceSpec, file: &Path) -> Result<MemTable, Error> {
    let reader = File::open(file).map_err(|e| Error::io("read", file, e))?;
    read_from(spec, file, BufReader::new(reader))
}

/// Reads JSON Lines text into a table; `file` names it in errors.
pub fn read_from(
    spec: ResourceSpec,
    file: &Path,
    mut reader: impl BufRead,
) -> Result<MemTable, Error> {
    let data_error = |line: usize, field: Option<String>, problem: String| Error::Data {
        file: file.to_owned(),
        line,
        field,
        problem,
    };
    let mut table = MemTable::new(spec);
    // The line of each row, kept during the load to name both lines of a duplicate key.
    let mut row_lines = Vec::new();
    let mut buf = Vec::new();
    let mut line = 0usize;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io("read", file, e))?;
        if n == 0 {
            break;
        }
        line += 1;
        let Ok(text) = std::str::from_utf8(&buf) else {
            return Err(data_error(line, None, "it is not UTF-8 text".into()));
        };
        // Editors on Windows start files with a byte-order mark, which JSON does not allow.
        let text = if line == 1 {
            text.trim_start_matches('\u{feff}')
        } else {
            text
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let row = parse_row(table.spec(), text)
            .map_err(|(field, problem)| data_error(line, field, problem))?;
        table.push(row).map_err(|e| match e {
            RowError::EmptyKey(name) => data_error(
                line,
                Some(name.to_string()),
                "the key field is empty; every record needs its whole key".into(),
            ),
            RowError::DuplicateKey { first } => data_error(
                line,
                None,
                format!(
                    "it has the same key as line {}; keys must be unique",
                    row_lines.get(first).copied().unwrap_or(0)
                ),
            ),
            other => data_error(line, None, other.to_string()),
        })?;
        row_lines.push(line);
    }
    table.shrink_to_fit();
    Ok(table)
}

/// One line's values in field order, or (field, problem).
fn parse_row(spec: &ResourceSpec, text: &str) -> Result<Box<[Value]>, (Option<String>, String)> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| (None, json_problem(&e)))?;
    let serde_json::Value::Object(object) = json else {
        return Err((
            None,
            "it is not a JSON object; write one object per line, with field names as keys".into(),
        ));
    };
    let mut row = vec![Value::null(); spec.fields().len()];
    for (name, json) in &object {
        let Some((col, field)) = spec
            .fields()
            .iter()
            .enumerate()
            .find(|(_, f)| f.name.as_str() == name.as_str())
        else {
            let known: Vec<&str> = spec.fields().iter().map(|f| f.name.as_str()).collect();
            return Err((
                Some(name.chars().take(80).collect()),
                format!(
                    "it is not a field of {}; its fields are: {}",
                    spec.id(),
                    known.join(", ")
                ),
            ));
        };
        let value = Value::from_json(json, field.ty)
            .map_err(|e| (Some(field.name.to_string()), e.to_string()))?;
        if let Some(slot) = row.get_mut(col) {
            *slot = value;
        }
    }
    Ok(row.into_boxed_slice())
}

/// serde_json's syntax errors name a position within the line but never its content; the
/// line number is ours, so only the column is kept.
fn json_problem(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Eof => {
            "it is not valid JSON: the line ends inside a value; write each record on one line"
                .into()
        }
        _ => format!("it is not valid JSON (column {})", e.column()),
    }
}

#[tonic::async_trait]
impl Source for JsonlSource {
    fn resources(&self) -> Vec<ResourceSpec> {
        self.tables.iter().map(|(t, _)| t.spec().clone()).collect()
    }

    fn kind(&self) -> &str {
        "jsonl"
    }

    async fn fetch(
        &self,
        resource: &ResourceName,
        key: &[(FieldName, Value)],
        fields: &[FieldName],
    ) -> Result<Option<Record>, SourceError> {
        self.table(resource)?.fetch(key, fields)
    }

    async fn search(
        &self,
        resource: &ResourceName,
        filters: &[(FieldName, Value)],
        fields: &[FieldName],
        page: PageRequest,
    ) -> Result<Page, SourceError> {
        self.table(resource)?.search(filters, fields, page)
    }
}

#[cfg(test)]
mod tests;
