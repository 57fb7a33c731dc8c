//! [`MemTable`]: one resource's records held in memory, with a hash index on the key, answering
//! fetches and searches as a [`Source`](crate::Source) must. The built-in file sources are
//! made of these; an integrator can use one for any records small enough to hold in memory.

use std::collections::HashMap;

use huitong_core::{FieldName, ResourceSpec, ValueKind};
use huitong_proto::v1::value::Kind;
use huitong_proto::v1::{Record, Value};

use crate::source::{Page, PageRequest, SourceError};

/// One resource's records: rows of typed values in the resource's field order, in the order
/// they were pushed, with a hash index on the key. Searches return rows in that order; page
/// tokens are offsets into it.
pub struct MemTable {
    spec: ResourceSpec,
    /// One value per field of `spec`, in its field order.
    rows: Vec<Box<[Value]>>,
    /// Canonical key encoding (see [`encode_key`]) -> index into `rows`.
    index: HashMap<Box<[u8]>, usize>,
    key_cols: Vec<usize>,
}

impl std::fmt::Debug for MemTable {
    // Rows hold personal data, which has no place in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MemTable({}, {} records)",
            self.spec.id(),
            self.rows.len()
        )
    }
}

/// A key added, changed or removed between two versions of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    pub key: Vec<(String, Value)>,
    /// The whole record as it is now; `None` if the key is gone.
    pub record: Option<Record>,
}

/// Why a row could not be added to a [`MemTable`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RowError {
    /// The row has not one value per field.
    #[error("the row has {got} values; the resource has {want} fields")]
    Width { got: usize, want: usize },
    /// A key field is null or empty.
    #[error("the key field {0} is empty; every record needs its whole key")]
    EmptyKey(FieldName),
    /// Another row has the same key; `first` is that row's position.
    #[error("it has the same key as record {first}; keys must be unique")]
    DuplicateKey { first: usize },
}

impl MemTable {
    /// An empty table for `spec`.
    pub fn new(spec: ResourceSpec) -> Self {
        let key_cols = spec
            .key_fields()
            .iter()
            .filter_map(|k| column(&spec, k))
            .collect();
        Self {
            spec,
            rows: Vec::new(),
            index: HashMap::new(),
            key_cols,
        }
    }

    pub fn spec(&self) -> &ResourceSpec {
        &self.spec
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Adds a row: one value per field of the resource, in its field order.
    pub fn push(&mut self, row: Box<[Value]>) -> Result<(), RowError> {
        let want = self.spec.fields().len();
        if row.len() != want {
            return Err(RowError::Width {
                got: row.len(),
                want,
            });
        }
        for (&col, name) in self.key_cols.iter().zip(self.spec.key_fields()) {
            let empty = row
                .get(col)
                .is_none_or(|v| v.value_kind() == ValueKind::Null || v.is_empty_text());
            if empty {
                return Err(RowError::EmptyKey(name.clone()));
            }
        }
        let key = encode_key(self.key_cols.iter().filter_map(|&c| row.get(c)));
        if let Some(&first) = self.index.get(&*key) {
            return Err(RowError::DuplicateKey { first });
        }
        self.index.insert(key, self.rows.len());
        self.rows.push(row);
        Ok(())
    }

    /// Frees the spare capacity left by pushing.
    pub fn shrink_to_fit(&mut self) {
        self.rows.shrink_to_fit();
        self.index.shrink_to_fit();
    }

    /// The record with this key (values in key-field order), with the requested fields.
    pub fn fetch(
        &self,
        key: &[(FieldName, Value)],
        fields: &[FieldName],
    ) -> Result<Option<Record>, SourceError> {
        let fields = self.columns(fields.iter().map(|f| (f, f)))?;
        let key = encode_key(key.iter().map(|(_, v)| v));
        Ok(self
            .index
            .get(&key)
            .and_then(|&i| self.rows.get(i))
            .map(|row| record(row, &fields)))
    }

    /// Records equal to all filters, in table order, a page at a time.
    pub fn search(
        &self,
        filters: &[(FieldName, Value)],
        fields: &[FieldName],
        page: PageRequest,
    ) -> Result<Page, SourceError> {
        let fields = self.columns(fields.iter().map(|f| (f, f)))?;
        let filters = self.columns(filters.iter().map(|(f, v)| (f, v)))?;
        let matches = |row: &[Value]| {
            filters
                .iter()
                .all(|&(col, want)| row.get(col).is_some_and(|v| v == want))
        };
        let start = self.resume_at(page.token.as_deref(), matches)?;
        let size = usize::try_from(page.size).unwrap_or(usize::MAX).max(1);
        let mut records = Vec::new();
        let mut next_token = None;
        for (offset, row) in self.rows.iter().enumerate().skip(start) {
            if !matches(row) {
                continue;
            }
            if records.len() == size {
                // Pointing at the next match, not past the last one returned, means a token
                // always leads to a non-empty page.
                next_token = Some(offset.to_string());
                break;
            }
            records.push(record(row, &fields));
        }
        Ok(Page {
            records,
            next_token,
        })
    }

    /// What changed from `self` to `newer` (the same resource, e.g. a file before and after a
    /// reload): one per key added, changed or removed.
    /// Keys in `newer` come in its order, removed ones after them in `self`'s order.
    pub fn changes_to(&self, newer: &MemTable) -> Vec<RowChange> {
        let all: Vec<(usize, &FieldName)> = self
            .spec
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| (i, &f.name))
            .collect();
        let mut out = Vec::new();
        for row in &newer.rows {
            let key = encode_key(newer.key_cols.iter().filter_map(|&c| row.get(c)));
            let same = self
                .index
                .get(&key)
                .and_then(|&i| self.rows.get(i))
                .is_some_and(|old| old == row);
            if !same {
                out.push(RowChange {
                    key: newer.key_of(row),
                    record: Some(record(row, &all)),
                });
            }
        }
        for row in &self.rows {
            let key = encode_key(self.key_cols.iter().filter_map(|&c| row.get(c)));
            if !newer.index.contains_key(&key) {
                out.push(RowChange {
                    key: self.key_of(row),
                    record: None,
                });
            }
        }
        out
    }

    /// The key of a row, as (field name, value) pairs.
    fn key_of(&self, row: &[Value]) -> Vec<(String, Value)> {
        self.key_cols
            .iter()
            .zip(self.spec.key_fields())
            .filter_map(|(&c, name)| row.get(c).map(|v| (name.to_string(), v.clone())))
            .collect()
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

/// A copy of the requested fields of one row.
fn record(row: &[Value], fields: &[(usize, &FieldName)]) -> Record {
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

/// The column of a field in a row.
fn column(spec: &ResourceSpec, name: &FieldName) -> Option<usize> {
    spec.fields().iter().position(|f| &f.name == name)
}

/// A byte string that is equal for two keys exactly when their values are equal. Each value is
/// tagged with its kind and length-prefixed where its length varies, so no two different keys
/// share an encoding.
pub fn encode_key<'a>(values: impl IntoIterator<Item = &'a Value>) -> Box<[u8]> {
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
