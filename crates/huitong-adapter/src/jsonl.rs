//! A built-in source backed by JSON Lines files: one file per resource, one JSON object per
//! line, keys are field names.
//!
//! Files are read once, when the source is loaded, and held in memory: rows as arrays of typed
//! values in the resource's field order, plus a hash index on the key. Suited to reference data,
//! demonstrations and tests; a register of millions of rows belongs in a database source.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use huitong_core::{FieldName, ResourceName, ResourceSpec};
use huitong_proto::v1::value::Kind;
use huitong_proto::v1::{Record, Value};

use crate::error::Error;
use crate::source::{Page, PageRequest, Source, SourceError};

/// A [`Source`] that serves records loaded from JSON Lines files.
///
/// Values are read with `Value::from_json` for the field's type (dates as `"YYYY-MM-DD"`,
/// timestamps as RFC 3339, bytes as base64); a field missing from a line is null. Searches
/// return records in file order; page tokens are offsets into the file's records.
pub struct JsonlSource {
    tables: Vec<Table>,
    by_name: HashMap<ResourceName, usize>,
}

struct Table {
    spec: ResourceSpec,
    file: PathBuf,
    /// One value per field of `spec`, in its field order.
    rows: Vec<Box<[Value]>>,
    /// Canonical key encoding (see [`encode_key`]) -> index into `rows`.
    index: HashMap<Box<[u8]>, usize>,
}

impl fmt::Debug for JsonlSource {
    // Rows hold personal data, which has no place in debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for t in &self.tables {
            list.entry(&format_args!(
                "{} ({} records from {})",
                t.spec.id(),
                t.rows.len(),
                t.file.display()
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
            let reader = File::open(&file).map_err(|e| Error::io("read", &file, e))?;
            let table = read_table(spec, file, BufReader::new(reader))?;
            tracing::debug!(
                resource = %table.spec.id(),
                records = table.rows.len(),
                file = %table.file.display(),
                "loaded"
            );
            by_name.insert(table.spec.id().name().clone(), tables.len());
            tables.push(table);
        }
        Ok(Self { tables, by_name })
    }

    /// How many records a resource has, or `None` if it is not served.
    pub fn record_count(&self, resource: &ResourceName) -> Option<usize> {
        self.table(resource).ok().map(|t| t.rows.len())
    }

    fn table(&self, resource: &ResourceName) -> Result<&Table, SourceError> {
        self.by_name
            .get(resource)
            .and_then(|&i| self.tables.get(i))
            .ok_or_else(|| SourceError::Internal(format!("no file is loaded for {resource}")))
    }
}

/// Reads the lines of a data file; `file` names it in errors and debug output.
fn read_table(spec: ResourceSpec, file: PathBuf, mut reader: impl BufRead) -> Result<Table, Error> {
    let data_error = |line: usize, field: Option<String>, problem: String| Error::Data {
        file: file.clone(),
        line,
        field,
        problem,
    };
    let key_cols: Vec<usize> = spec
        .key_fields()
        .iter()
        .filter_map(|k| column(&spec, k))
        .collect();
    let mut rows = Vec::new();
    let mut index: HashMap<Box<[u8]>, usize> = HashMap::new();
    // The line of each row, kept during the load to name both lines of a duplicate key.
    let mut row_lines = Vec::new();
    let mut buf = Vec::new();
    let mut line = 0usize;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io("read", &file, e))?;
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
        let row =
            parse_row(&spec, text).map_err(|(field, problem)| data_error(line, field, problem))?;
        for (&col, name) in key_cols.iter().zip(spec.key_fields()) {
            let empty = row.get(col).is_none_or(|v| {
                v.value_kind() == huitong_core::ValueKind::Null || v.is_empty_text()
            });
            if empty {
                return Err(data_error(
                    line,
                    Some(name.to_string()),
                    "the key field is empty; every record needs its whole key".into(),
                ));
            }
        }
        let key = encode_key(key_cols.iter().filter_map(|&c| row.get(c)));
        if let Some(&other) = index.get(&*key) {
            let first = row_lines.get(other).copied().unwrap_or(0);
            return Err(data_error(
                line,
                None,
                format!("it has the same key as line {first}; keys must be unique"),
            ));
        }
        index.insert(key, rows.len());
        rows.push(row);
        row_lines.push(line);
    }
    rows.shrink_to_fit();
    Ok(Table {
        spec,
        file,
        rows,
        index,
    })
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

/// The column of a field in a row.
fn column(spec: &ResourceSpec, name: &FieldName) -> Option<usize> {
    spec.fields().iter().position(|f| &f.name == name)
}

/// A byte string that is equal for two keys exactly when their values are equal. Each value is
/// tagged with its kind and length-prefixed where its length varies, so no two different keys
/// share an encoding.
fn encode_key<'a>(values: impl IntoIterator<Item = &'a Value>) -> Box<[u8]> {
    fn with_len(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
        out.push(tag);
        out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    let mut out = Vec::new();
    for v in values {
        match &v.kind {
            None | Some(Kind::NullValue(_)) => out.push(0),
            Some(Kind::StringValue(s)) => with_len(&mut out, 1, s.as_bytes()),
            Some(Kind::IntValue(i)) => {
                out.push(2);
                out.extend_from_slice(&i.to_be_bytes());
            }
            Some(Kind::DoubleValue(d)) => {
                out.push(3);
                // -0.0 == 0.0, so both must encode alike.
                let d = if *d == 0.0 { 0.0f64 } else { *d };
                out.extend_from_slice(&d.to_bits().to_be_bytes());
            }
            Some(Kind::BoolValue(b)) => out.extend_from_slice(&[4, u8::from(*b)]),
            Some(Kind::BytesValue(b)) => with_len(&mut out, 5, b),
            Some(Kind::DateValue(d)) => {
                out.push(6);
                for part in [d.year, d.month, d.day] {
                    out.extend_from_slice(&part.to_be_bytes());
                }
            }
            Some(Kind::TimestampValue(t)) => {
                let t = t.normalized();
                out.push(7);
                out.extend_from_slice(&t.seconds.to_be_bytes());
                out.extend_from_slice(&t.nanos.to_be_bytes());
            }
        }
    }
    out.into_boxed_slice()
}

impl Table {
    /// A copy of the requested fields of one row.
    fn record(&self, row: &[Value], fields: &[(usize, &FieldName)]) -> Record {
        let mut record = Record {
            fields: HashMap::with_capacity(fields.len()),
        };
        for &(col, name) in fields {
            if let Some(v) = row.get(col) {
                record.fields.insert(name.to_string(), v.clone());
            }
        }
        record
    }

    fn columns<'a, T>(
        &self,
        names: impl IntoIterator<Item = (&'a FieldName, T)>,
    ) -> Result<Vec<(usize, T)>, SourceError> {
        names
            .into_iter()
            .map(|(name, extra)| {
                column(&self.spec, name).map(|c| (c, extra)).ok_or_else(|| {
                    SourceError::Internal(format!(
                        "field {name} is not a field of {}",
                        self.spec.id()
                    ))
                })
            })
            .collect()
    }

    /// Where a search resumes: the offset a page token names. Tokens are issued only for a
    /// row that matches the search, so one that points past the end or at a row that does
    /// not match came from elsewhere.
    fn resume_at(
        &self,
        token: Option<&str>,
        matches: impl Fn(&[Value]) -> bool,
    ) -> Result<usize, SourceError> {
        let Some(token) = token else {
            return Ok(0);
        };
        let offset: usize = token.parse().map_err(|_| SourceError::BadPageToken)?;
        if offset.to_string() != token {
            return Err(SourceError::BadPageToken);
        }
        match self.rows.get(offset) {
            Some(row) if matches(row) => Ok(offset),
            _ => Err(SourceError::BadPageToken),
        }
    }
}

#[tonic::async_trait]
impl Source for JsonlSource {
    fn resources(&self) -> Vec<ResourceSpec> {
        self.tables.iter().map(|t| t.spec.clone()).collect()
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
        let table = self.table(resource)?;
        let fields = table.columns(fields.iter().map(|f| (f, f)))?;
        let key = encode_key(key.iter().map(|(_, v)| v));
        Ok(table
            .index
            .get(&key)
            .and_then(|&i| table.rows.get(i))
            .map(|row| table.record(row, &fields)))
    }

    async fn search(
        &self,
        resource: &ResourceName,
        filters: &[(FieldName, Value)],
        fields: &[FieldName],
        page: PageRequest,
    ) -> Result<Page, SourceError> {
        let table = self.table(resource)?;
        let fields = table.columns(fields.iter().map(|f| (f, f)))?;
        let filters = table.columns(filters.iter().map(|(f, v)| (f, v)))?;
        let matches = |row: &[Value]| {
            filters
                .iter()
                .all(|&(col, want)| row.get(col).is_some_and(|v| v == want))
        };
        let start = table.resume_at(page.token.as_deref(), matches)?;
        let size = usize::try_from(page.size).unwrap_or(usize::MAX).max(1);
        let mut records = Vec::new();
        let mut next_token = None;
        for (offset, row) in table.rows.iter().enumerate().skip(start) {
            if !matches(row) {
                continue;
            }
            if records.len() == size {
                // Pointing at the next match, not past the last one returned, means a token
                // always leads to a non-empty page.
                next_token = Some(offset.to_string());
                break;
            }
            records.push(table.record(row, &fields));
        }
        Ok(Page {
            records,
            next_token,
        })
    }
}

#[cfg(test)]
mod tests;
