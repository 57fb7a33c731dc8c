//! [`FileSource`]: resources read from JSON Lines or CSV files, held in memory, and reloaded
//! when a file changes, each reload reported as changes to watchers.
//!
//! A file is looked at every [`RELOAD_INTERVAL`] (its size, modification time and inode; no
//! file-system notification, which would be one more dependency and unreliable on network
//! file systems). A changed file is read whole; if it does not parse, or changed again while it
//! was read, the records already loaded stay in service and the next look tries again. Write
//! a new file and rename it over the old one, so that a reader never sees half of it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

use huitong_adapter::config::CsvConfig;
use huitong_adapter::table::RowError;
use huitong_adapter::{
    ChangeFeed, ChangeStream, MemTable, Page, PageRequest, Record, Source, SourceError, Value,
};
use huitong_core::{FieldName, ResourceName, ResourceSpec};

use crate::error::Error;

mod csv;

/// How often files are looked at for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// How a file is written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// One JSON object per line; see [`huitong_adapter::jsonl`].
    Jsonl,
    /// A header row, then one record per row.
    Csv {
        delimiter: u8,
        /// Field name -> header, for fields whose column is not named after them.
        columns: BTreeMap<String, String>,
    },
}

impl Format {
    /// The format a `csv` source table describes; the problem if its delimiter is not one.
    pub fn csv(c: &CsvConfig) -> Result<Format, String> {
        let delimiter = match &c.delimiter {
            None => b',',
            Some(d) => huitong_adapter::config::sources::csv_delimiter(d)?,
        };
        Ok(Format::Csv {
            delimiter,
            columns: c.columns.clone(),
        })
    }
}

/// Resources read from files. See the module documentation.
pub struct FileSource {
    tables: HashMap<ResourceName, Arc<FileTable>>,
    order: Vec<ResourceName>,
    feed: ChangeFeed,
}

struct FileTable {
    spec: ResourceSpec,
    path: PathBuf,
    format: Format,
    current: RwLock<Arc<Loaded>>,
    /// The file as it was when it last failed to load, so that the failure is logged once.
    failed: Mutex<Option<Stamp>>,
}

struct Loaded {
    table: MemTable,
    /// Counts reloads; page tokens carry it, since offsets mean nothing in another version.
    generation: u64,
    stamp: Option<Stamp>,
}

/// What tells one version of a file from another without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: inode(&meta),
        })
    }
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_meta: &std::fs::Metadata) -> u64 {
    0
}

impl std::fmt::Debug for FileSource {
    // Records hold personal data; only counts and files are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        for name in &self.order {
            if let Some(t) = self.tables.get(name) {
                list.entry(&format_args!(
                    "{} ({} records from {})",
                    t.spec.id(),
                    t.loaded().table.len(),
                    t.path.display()
                ));
            }
        }
        list.finish()
    }
}

/// Reads one file into a table.
pub fn read(spec: ResourceSpec, path: &Path, format: &Format) -> Result<MemTable, Error> {
    Ok(match format {
        Format::Jsonl => huitong_adapter::jsonl::read(spec, path)?,
        Format::Csv { delimiter, columns } => csv::read(spec, path, *delimiter, columns)?,
    })
}

impl FileSource {
    /// Reads every resource's file; any file that cannot be read or does not fit its
    /// resource's description fails the load with an error naming the file, line and field.
    pub fn load(
        resources: impl IntoIterator<Item = (ResourceSpec, PathBuf, Format)>,
    ) -> Result<Self, Error> {
        let mut tables = HashMap::new();
        let mut order = Vec::new();
        for (spec, path, format) in resources {
            if tables.contains_key(spec.id().name()) {
                return Err(huitong_adapter::Error::DuplicateResource(spec.id().clone()).into());
            }
            let stamp = Stamp::of(&path);
            let table = read(spec.clone(), &path, &format)?;
            tracing::debug!(resource = %spec.id(), records = table.len(), file = %path.display(), "loaded");
            order.push(spec.id().name().clone());
            tables.insert(
                spec.id().name().clone(),
                Arc::new(FileTable {
                    spec,
                    path,
                    format,
                    current: RwLock::new(Arc::new(Loaded {
                        table,
                        generation: 0,
                        stamp,
                    })),
                    failed: Mutex::new(None),
                }),
            );
        }
        Ok(Self {
            tables,
            order,
            feed: ChangeFeed::new(),
        })
    }

    /// The feed the reloads publish to.
    pub fn feed(&self) -> &ChangeFeed {
        &self.feed
    }

    /// How many records a resource has now, or `None` if it is not served.
    pub fn record_count(&self, resource: &ResourceName) -> Option<usize> {
        self.tables.get(resource).map(|t| t.loaded().table.len())
    }

    /// Looks at every file now and reloads those that changed; returns how many changes were
    /// published. Reads files synchronously.
    pub fn reload(&self) -> usize {
        self.tables
            .values()
            .map(|t| t.reload_if_changed(&self.feed))
            .sum()
    }

    /// Looks at the files every `interval` from now on, in a task that ends when the source
    /// is dropped. Must be called within a Tokio runtime.
    pub fn reload_every(&self, interval: Duration) {
        let tables: Vec<Weak<FileTable>> = self.tables.values().map(Arc::downgrade).collect();
        let feed = self.feed.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let live: Vec<Arc<FileTable>> = tables.iter().filter_map(Weak::upgrade).collect();
                if live.is_empty() {
                    return;
                }
                let feed = feed.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    for t in live {
                        t.reload_if_changed(&feed);
                    }
                })
                .await;
            }
        });
    }

    fn table(&self, resource: &ResourceName) -> Result<&Arc<FileTable>, SourceError> {
        self.tables
            .get(resource)
            .ok_or_else(|| SourceError::Internal(format!("no file is loaded for {resource}")))
    }
}

impl FileTable {
    fn loaded(&self) -> Arc<Loaded> {
        // A reader that panicked cannot have left the Arc half-written.
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Reloads the file if it changed, publishing what changed; returns how many changes.
    fn reload_if_changed(&self, feed: &ChangeFeed) -> usize {
        let old = self.loaded();
        let Some(before) = Stamp::of(&self.path) else {
            self.failed_once(
                None,
                "the file cannot be read; serving the records loaded before",
            );
            return 0;
        };
        if old.stamp == Some(before) {
            return 0;
        }
        let newer = match read(self.spec.clone(), &self.path, &self.format) {
            Ok(t) => t,
            Err(e) => {
                self.failed_once(
                    Some(before),
                    &format!("{e}; serving the records loaded before"),
                );
                return 0;
            }
        };
        if Stamp::of(&self.path) != Some(before) {
            // Changed while being read: the next look reads it again.
            return 0;
        }
        let changes = old.table.changes_to(&newer);
        let records = newer.len();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Loaded {
            table: newer,
            generation: old.generation + 1,
            stamp: Some(before),
        });
        *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = None;
        // Published after the swap, so that a watcher that reads on a change sees it.
        let name = self.spec.id().name();
        for c in &changes {
            feed.publish(name, c.key.iter().cloned(), c.record.clone());
        }
        tracing::info!(
            resource = %self.spec.id(),
            file = %self.path.display(),
            records,
            changes = changes.len(),
            "reloaded"
        );
        changes.len()
    }

    fn failed_once(&self, stamp: Option<Stamp>, why: &str) {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        if failed.is_none() || *failed != stamp {
            tracing::warn!(resource = %self.spec.id(), file = %self.path.display(), "{why}");
            *failed = stamp;
        }
    }
}

/// `<generation>.<offset>`: an offset into one version of the file.
fn page_token(generation: u64, inner: &str) -> String {
    format!("{generation}.{inner}")
}

#[tonic::async_trait]
impl Source for FileSource {
    fn resources(&self) -> Vec<ResourceSpec> {
        self.order
            .iter()
            .filter_map(|n| self.tables.get(n))
            .map(|t| t.spec.clone())
            .collect()
    }

    fn kind(&self) -> &str {
        "file"
    }

    async fn fetch(
        &self,
        resource: &ResourceName,
        key: &[(FieldName, Value)],
        fields: &[FieldName],
    ) -> Result<Option<Record>, SourceError> {
        self.table(resource)?.loaded().table.fetch(key, fields)
    }

    async fn search(
        &self,
        resource: &ResourceName,
        filters: &[(FieldName, Value)],
        fields: &[FieldName],
        page: PageRequest,
    ) -> Result<Page, SourceError> {
        let loaded = self.table(resource)?.loaded();
        let inner = match page.token.as_deref() {
            None => None,
            Some(t) => {
                let (generation, offset) = t.split_once('.').ok_or(SourceError::BadPageToken)?;
                if generation != loaded.generation.to_string() {
                    // The file was reloaded since: offsets into the old version mean nothing.
                    return Err(SourceError::BadPageToken);
                }
                Some(offset.to_owned())
            }
        };
        let mut out = loaded.table.search(
            filters,
            fields,
            PageRequest {
                size: page.size,
                token: inner,
            },
        )?;
        out.next_token = out.next_token.map(|t| page_token(loaded.generation, &t));
        Ok(out)
    }

    async fn watch(
        &self,
        resource: &ResourceName,
        cursor: Option<&str>,
    ) -> Result<ChangeStream, SourceError> {
        self.table(resource)?;
        self.feed.watch(resource, cursor)
    }
}

#[cfg(test)]
mod tests;

/// Maps a row error of a file to the data error that names its line.
pub(crate) fn row_error(
    file: &Path,
    line: usize,
    lines: &[usize],
    e: RowError,
) -> huitong_adapter::Error {
    let (field, problem) = match e {
        RowError::EmptyKey(name) => (
            Some(name.to_string()),
            "the key field is empty; every record needs its whole key".to_owned(),
        ),
        RowError::DuplicateKey { first } => (
            None,
            format!(
                "it has the same key as line {}; keys must be unique",
                lines.get(first).copied().unwrap_or(0)
            ),
        ),
        other => (None, other.to_string()),
    };
    huitong_adapter::Error::Data {
        file: file.to_owned(),
        line,
        field,
        problem,
    }
}
