//! [`ChangeFeed`]: the change stream for sources that learn of their own changes.
//!
//! A source that holds its records in memory, or is told of changes by the system behind it,
//! keeps one feed, calls [`ChangeFeed::publish`] for every insert, update or deletion, and
//! answers [`Source::watch`](crate::Source::watch) with [`ChangeFeed::watch`]. The feed keeps
//! the latest changes of each resource in a bounded ring (for watchers that resume from a
//! cursor) and hands new ones to live watchers through a bounded broadcast channel, so
//! publishing never waits for a watcher.
//!
//! Cursors are `<epoch>-<sequence>`: the sequence numbers one resource's changes from 1, and
//! the epoch is drawn afresh for each resource of each feed. A cursor from before an adapter
//! restart therefore names another epoch and is answered as expired, never taken for a
//! position in a history it does not belong to.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use huitong_core::ResourceName;
use huitong_proto::v1::{Record, Value};
use tokio::sync::broadcast;
use tokio_stream::Stream;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::source::{Change, ChangeStream, SourceError};

/// Changes retained per resource by [`ChangeFeed::new`].
pub const DEFAULT_RETAINED: usize = 10_000;
/// Changes a live watcher may fall behind by [`ChangeFeed::new`] before it is moved back to
/// the retained ring (or, past that, told to resynchronise).
pub const DEFAULT_BUFFER: usize = 1_024;

/// Retained and live changes of a source's resources; cheap to clone (clones share the feed).
#[derive(Clone)]
pub struct ChangeFeed {
    shared: Arc<Shared>,
}

struct Shared {
    retain: usize,
    buffer: usize,
    /// Seeds the epochs; random per process.
    seed: std::collections::hash_map::RandomState,
    channels: Mutex<HashMap<ResourceName, Channel>>,
}

struct Channel {
    epoch: u64,
    /// The sequence number the next change gets; changes are numbered from 1.
    next: u64,
    ring: VecDeque<Arc<Entry>>,
    live: broadcast::Sender<Arc<Entry>>,
}

struct Entry {
    seq: u64,
    cursor: String,
    key: Vec<(String, Value)>,
    record: Option<Record>,
}

impl std::fmt::Debug for ChangeFeed {
    // Changes hold personal data; only the counts are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let channels = self.shared.lock();
        let mut list = f.debug_map();
        for (name, ch) in channels.iter() {
            list.entry(
                &name.as_str(),
                &format_args!("{} retained, {} published", ch.ring.len(), ch.next - 1),
            );
        }
        list.finish()
    }
}

impl Default for ChangeFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl ChangeFeed {
    /// A feed retaining [`DEFAULT_RETAINED`] changes per resource, with live watchers allowed to
    /// fall [`DEFAULT_BUFFER`] changes behind.
    pub fn new() -> Self {
        Self::with_limits(DEFAULT_RETAINED, DEFAULT_BUFFER)
    }

    /// A feed retaining `retain` changes per resource for watchers that resume from a cursor,
    /// and buffering `buffer` changes for each live watcher (both at least 1). Memory is
    /// bounded by about `retain + buffer` changes per resource, shared by all watchers.
    pub fn with_limits(retain: usize, buffer: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                retain: retain.max(1),
                buffer: buffer.max(1),
                seed: std::collections::hash_map::RandomState::new(),
                channels: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Records a change to `resource` and hands it to every live watcher; returns its cursor.
    /// `record` is the record as it is now, or `None` for a deletion; `key` gives one value
    /// per key field. Never waits for a watcher.
    pub fn publish<K: Into<String>>(
        &self,
        resource: &ResourceName,
        key: impl IntoIterator<Item = (K, Value)>,
        record: Option<Record>,
    ) -> String {
        let key = key.into_iter().map(|(k, v)| (k.into(), v)).collect();
        let mut channels = self.shared.lock();
        let ch = self.shared.channel(&mut channels, resource);
        let seq = ch.next;
        ch.next += 1;
        let entry = Arc::new(Entry {
            seq,
            cursor: format_cursor(ch.epoch, seq),
            key,
            record,
        });
        ch.ring.push_back(Arc::clone(&entry));
        while ch.ring.len() > self.shared.retain {
            ch.ring.pop_front();
        }
        // An error only means that nobody is watching live.
        let _ = ch.live.send(Arc::clone(&entry));
        entry.cursor.clone()
    }

    /// The cursor of the latest change published for `resource`, if any.
    pub fn latest_cursor(&self, resource: &ResourceName) -> Option<String> {
        let channels = self.shared.lock();
        channels
            .get(resource)
            .and_then(|ch| ch.ring.back())
            .map(|e| e.cursor.clone())
    }

    /// The retained changes of `resource` after `cursor` (all retained ones for `None`), then
    /// the new ones as they are published. See [`Source::watch`](crate::Source::watch) for the
    /// errors.
    pub fn watch(
        &self,
        resource: &ResourceName,
        cursor: Option<&str>,
    ) -> Result<ChangeStream, SourceError> {
        let after = match cursor {
            None => None,
            Some(c) => Some(parse_cursor(c).ok_or(SourceError::BadCursor)?),
        };
        let (backlog, live, after, epoch) = self.open(resource, after)?;
        Ok(Box::pin(FeedStream {
            feed: self.clone(),
            resource: resource.clone(),
            backlog,
            live: BroadcastStream::new(live),
            after,
            epoch,
            done: false,
        }))
    }

    /// Under the lock, so that no change falls between the two: the retained changes after
    /// `after`, and a receiver for those published from now on.
    fn open(
        &self,
        resource: &ResourceName,
        after: Option<(u64, u64)>,
    ) -> Result<Opened, SourceError> {
        let mut channels = self.shared.lock();
        let ch = self.shared.channel(&mut channels, resource);
        let oldest = ch.ring.front().map_or(ch.next, |e| e.seq);
        let after = match after {
            None => oldest - 1,
            Some((epoch, _)) if epoch != ch.epoch => {
                return Err(SourceError::CursorExpired(
                    "the cursor is from an earlier run of the adapter or from another resource"
                        .into(),
                ));
            }
            Some((_, seq)) if seq >= ch.next => return Err(SourceError::BadCursor),
            Some((_, seq)) if seq + 1 < oldest => {
                return Err(SourceError::CursorExpired(format!(
                    "{} changes after the cursor were dropped from the {} retained",
                    oldest - 1 - seq,
                    self.shared.retain
                )));
            }
            Some((_, seq)) => seq,
        };
        let backlog = ch.ring.iter().filter(|e| e.seq > after).cloned().collect();
        Ok((backlog, ch.live.subscribe(), after, ch.epoch))
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, HashMap<ResourceName, Channel>> {
        // A panic while holding the lock cannot leave a channel half-updated in a way that
        // matters more than losing the whole feed would.
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn channel<'a>(
        &self,
        channels: &'a mut HashMap<ResourceName, Channel>,
        resource: &ResourceName,
    ) -> &'a mut Channel {
        channels.entry(resource.clone()).or_insert_with(|| {
            let mut h = self.seed.build_hasher();
            resource.as_str().hash(&mut h);
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
                .hash(&mut h);
            let (live, _) = broadcast::channel(self.buffer);
            Channel {
                epoch: h.finish(),
                next: 1,
                ring: VecDeque::new(),
                live,
            }
        })
    }
}

fn format_cursor(epoch: u64, seq: u64) -> String {
    format!("{epoch:016x}-{seq}")
}

/// (epoch, sequence), or `None` for text no feed issued.
fn parse_cursor(text: &str) -> Option<(u64, u64)> {
    let (epoch, seq) = text.split_once('-')?;
    if epoch.len() != 16 {
        return None;
    }
    let epoch = u64::from_str_radix(epoch, 16).ok()?;
    let seq: u64 = seq.parse().ok()?;
    (format_cursor(epoch, seq) == text && seq > 0).then_some((epoch, seq))
}

/// The backlog, the live receiver, the sequence number streaming resumes after, the epoch.
type Opened = (
    VecDeque<Arc<Entry>>,
    broadcast::Receiver<Arc<Entry>>,
    u64,
    u64,
);

struct FeedStream {
    feed: ChangeFeed,
    resource: ResourceName,
    backlog: VecDeque<Arc<Entry>>,
    live: BroadcastStream<Arc<Entry>>,
    /// The sequence number of the last change streamed.
    after: u64,
    epoch: u64,
    done: bool,
}

impl FeedStream {
    fn change(&mut self, entry: &Entry) -> Change {
        self.after = entry.seq;
        Change {
            key: entry.key.clone(),
            record: entry.record.clone(),
            cursor: entry.cursor.clone(),
        }
    }
}

impl Stream for FeedStream {
    type Item = Result<Change, SourceError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(entry) = this.backlog.pop_front() {
                return Poll::Ready(Some(Ok(this.change(&entry))));
            }
            match Pin::new(&mut this.live).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                // The feed is gone, and with it the source.
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                // Already streamed from the backlog.
                Poll::Ready(Some(Ok(entry))) if entry.seq <= this.after => {}
                Poll::Ready(Some(Ok(entry))) => {
                    return Poll::Ready(Some(Ok(this.change(&entry))));
                }
                Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(_)))) => {
                    // This watcher fell behind its buffer; carry on from the ring if it still
                    // holds everything after the last change streamed.
                    match this
                        .feed
                        .open(&this.resource, Some((this.epoch, this.after)))
                    {
                        Ok((backlog, live, _, _)) => {
                            this.backlog = backlog;
                            this.live = BroadcastStream::new(live);
                        }
                        Err(SourceError::CursorExpired(_)) => {
                            this.done = true;
                            return Poll::Ready(Some(Err(SourceError::CursorExpired(format!(
                                "the watcher fell more than {} changes behind",
                                this.feed.shared.retain
                            )))));
                        }
                        Err(e) => {
                            this.done = true;
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
