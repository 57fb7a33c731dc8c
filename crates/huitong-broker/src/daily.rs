//! The people each grant has released today: the count behind a grant's `max_subjects_per_day`.
//!
//! Kept in the policy store (`policy.sled`, tree `subjects-per-day`) so that a cap holds across
//! broker restarts. Only subject HMACs are stored, exactly as the exchange log records them
//! (never an identifier), under the UTC day and the grant; the days before today are dropped
//! when the broker opens the store and when a new day's first answer is counted. Subject keys
//! change by calendar month (UTC), so a person has one HMAC all day.
//!
//! Checking and counting are one step under one lock, so two concurrent answers cannot both
//! slip under a cap. The lock is a plain mutex, taken only inside the caller's blocking section
//! and never held across an await. An answer counted but then not released (the exchange log
//! failed) is uncounted again with its [`Reservation`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use huitong_core::calendar::days_since_epoch;

/// The tree in the policy store.
const TREE: &str = "subjects-per-day";

/// The day's released subjects, per grant.
#[derive(Debug)]
pub struct DailySubjects {
    tree: sled::Tree,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The latest day counted; older days are gone from the tree.
    today: i64,
    /// Subjects counted for (day, grant), read from the tree when a grant is first counted.
    counts: HashMap<(i64, String), u32>,
}

/// Subjects newly counted by one answer, to uncount if the answer is not released after all.
#[derive(Debug, Default)]
pub struct Reservation {
    day: i64,
    grant: String,
    added: Vec<Vec<u8>>,
}

impl Reservation {
    /// Whether the answer counted nobody new.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
    }
}

/// What [`DailySubjects::count`] let through.
#[derive(Debug)]
pub struct Counted<E> {
    /// How many of the subjects, from the first, may be released.
    pub admitted: usize,
    /// Why the rest may not, if any were held back.
    pub refusal: Option<E>,
    /// The subjects newly counted.
    pub reservation: Reservation,
}

/// Whether an answer is released whole or not at all, or (a subscription's batch of
/// deliveries) as far as the cap allows, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Whole,
    Prefix,
}

fn day_of(now: SystemTime) -> i64 {
    days_since_epoch(now)
}

fn prefix(day: i64, grant: &str) -> Vec<u8> {
    // Days are positive and fit in four bytes until the year 11 million; big-endian so that
    // keys sort by day and the days before today are one range. Grant ids are ASCII
    // letters, digits, '-', '_' and '.', so a zero byte cannot occur in them.
    let day = u32::try_from(day.max(0)).unwrap_or(u32::MAX);
    let mut k = Vec::with_capacity(4 + grant.len() + 1 + 32);
    k.extend_from_slice(&day.to_be_bytes());
    k.extend_from_slice(grant.as_bytes());
    k.push(0);
    k
}

fn day_start(day: i64) -> [u8; 4] {
    u32::try_from(day.max(0)).unwrap_or(u32::MAX).to_be_bytes()
}

impl DailySubjects {
    /// Opens the count in `db`, dropping the days before `now`'s.
    pub fn open(db: &sled::Db, now: SystemTime) -> sled::Result<DailySubjects> {
        let tree = db.open_tree(TREE)?;
        let today = day_of(now);
        drop_before(&tree, today)?;
        Ok(DailySubjects {
            tree,
            state: Mutex::new(State {
                today,
                counts: HashMap::new(),
            }),
        })
    }

    /// Counts `subjects` (subject HMACs, in order of release) as released under `grant` at
    /// `now`. `over(used, new)` is the grant's rule: given the people already released today
    /// and those the answer would add, the refusal if that is too many. With [`Admit::Whole`]
    /// the answer is counted whole or not at all; with [`Admit::Prefix`], subject by subject
    /// until one would be too many. A subject already counted today costs nothing.
    ///
    /// Blocks on the store: call it from a blocking section. The new subjects are written but
    /// not flushed; the caller flushes before anything is released.
    pub fn count<E>(
        &self,
        grant: &str,
        subjects: &[Vec<u8>],
        now: SystemTime,
        admit: Admit,
        over: impl Fn(u32, u32) -> Option<E>,
    ) -> sled::Result<Counted<E>> {
        let day = day_of(now);
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if day > state.today {
            drop_before(&self.tree, day)?;
            state.counts.retain(|(d, _), _| *d >= day);
            state.today = day;
        }
        let base = prefix(day, grant);
        let key = |mac: &[u8]| {
            let mut k = base.clone();
            k.extend_from_slice(mac);
            k
        };
        let slot = (day, grant.to_owned());
        let used = match state.counts.get(&slot) {
            Some(n) => *n,
            None => {
                let n = self.tree.scan_prefix(&base).keys().count();
                u32::try_from(n).unwrap_or(u32::MAX)
            }
        };
        let mut added: Vec<Vec<u8>> = Vec::new();
        let mut admitted = 0;
        let mut refusal = None;
        match admit {
            Admit::Whole => {
                for mac in subjects {
                    if !added.contains(mac) && !self.tree.contains_key(key(mac))? {
                        added.push(mac.clone());
                    }
                }
                let new = u32::try_from(added.len()).unwrap_or(u32::MAX);
                match over(used, new) {
                    Some(e) => {
                        refusal = Some(e);
                        added.clear();
                    }
                    None => admitted = subjects.len(),
                }
            }
            Admit::Prefix => {
                for mac in subjects {
                    if added.contains(mac) || self.tree.contains_key(key(mac))? {
                        admitted += 1;
                        continue;
                    }
                    let so_far =
                        used.saturating_add(u32::try_from(added.len()).unwrap_or(u32::MAX));
                    if let Some(e) = over(so_far, 1) {
                        refusal = Some(e);
                        break;
                    }
                    added.push(mac.clone());
                    admitted += 1;
                }
            }
        }
        if !added.is_empty() {
            let mut batch = sled::Batch::default();
            for mac in &added {
                batch.insert(key(mac), &[][..]);
            }
            self.tree.apply_batch(batch)?;
        }
        let n = used.saturating_add(u32::try_from(added.len()).unwrap_or(u32::MAX));
        state.counts.insert(slot, n);
        Ok(Counted {
            admitted,
            refusal,
            reservation: Reservation {
                day,
                grant: grant.to_owned(),
                added,
            },
        })
    }

    /// Uncounts an answer that was counted but not released. Blocks on the store.
    pub fn uncount(&self, r: Reservation) -> sled::Result<()> {
        if r.added.is_empty() {
            return Ok(());
        }
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if r.day < state.today {
            // That day is gone already.
            return Ok(());
        }
        let base = prefix(r.day, &r.grant);
        let mut batch = sled::Batch::default();
        for mac in &r.added {
            let mut k = base.clone();
            k.extend_from_slice(mac);
            batch.remove(k);
        }
        self.tree.apply_batch(batch)?;
        if let Some(n) = state.counts.get_mut(&(r.day, r.grant)) {
            *n = n.saturating_sub(u32::try_from(r.added.len()).unwrap_or(u32::MAX));
        }
        Ok(())
    }

    /// Makes the counts durable.
    pub fn flush(&self) -> sled::Result<()> {
        self.tree.flush().map(drop)
    }
}

/// Drops every day before `day`.
fn drop_before(tree: &sled::Tree, day: i64) -> sled::Result<()> {
    let mut batch = sled::Batch::default();
    let mut any = false;
    for k in tree.range(..day_start(day)).keys() {
        batch.remove(k?);
        any = true;
    }
    if any {
        tree.apply_batch(batch)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn mac(n: u8) -> Vec<u8> {
        vec![n; 32]
    }

    fn store() -> (sled::Db, DailySubjects) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let d = DailySubjects::open(&db, SystemTime::now()).unwrap();
        (db, d)
    }

    /// The grant's rule, as `Decision::over_subjects_per_day` states it.
    fn cap(n: u32) -> impl Fn(u32, u32) -> Option<(u32, u32)> {
        move |used, new| (used + new > n).then_some((used, new))
    }

    #[test]
    fn a_whole_answer_is_counted_only_if_it_fits() {
        let (_db, d) = store();
        let now = SystemTime::now();
        let c = d
            .count("G-1", &[mac(1), mac(2), mac(2)], now, Admit::Whole, cap(3))
            .unwrap();
        assert_eq!((c.admitted, c.refusal), (3, None));
        // Two new people on top of two: refused, and nothing of it counted.
        let c = d
            .count("G-1", &[mac(1), mac(3), mac(4)], now, Admit::Whole, cap(3))
            .unwrap();
        assert_eq!((c.admitted, c.refusal), (0, Some((2, 2))));
        // People already counted today cost nothing; one more fits.
        let c = d
            .count("G-1", &[mac(1), mac(2), mac(3)], now, Admit::Whole, cap(3))
            .unwrap();
        assert_eq!((c.admitted, c.refusal), (3, None));
        // Another grant has its own count.
        let c = d
            .count("G-2", &[mac(9)], now, Admit::Whole, cap(1))
            .unwrap();
        assert_eq!(c.admitted, 1);
    }

    #[test]
    fn a_prefix_is_admitted_up_to_the_cap() {
        let (_db, d) = store();
        let now = SystemTime::now();
        let c = d
            .count(
                "G-1",
                &[mac(1), mac(2), mac(1), mac(3), mac(4)],
                now,
                Admit::Prefix,
                cap(2),
            )
            .unwrap();
        assert_eq!((c.admitted, c.refusal), (3, Some((2, 1))));
    }

    #[test]
    fn counts_survive_a_reopen_and_old_days_are_dropped() {
        let dir = std::env::temp_dir().join(format!("huitong-daily-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let now = SystemTime::now();
        {
            let db = sled::open(&dir).unwrap();
            let d = DailySubjects::open(&db, now).unwrap();
            d.count("G-1", &[mac(1), mac(2)], now, Admit::Whole, cap(3))
                .unwrap();
            d.flush().unwrap();
        }
        let db = sled::open(&dir).unwrap();
        let d = DailySubjects::open(&db, now).unwrap();
        let c = d
            .count("G-1", &[mac(3), mac(4)], now, Admit::Whole, cap(3))
            .unwrap();
        assert_eq!(c.refusal, Some((2, 2)), "the count was lost on reopening");
        // Tomorrow the count starts again, and today's subjects are gone from the store.
        let tomorrow = now + Duration::from_secs(86_400);
        let c = d
            .count("G-1", &[mac(3), mac(4)], tomorrow, Admit::Whole, cap(3))
            .unwrap();
        assert_eq!(c.refusal, None);
        assert_eq!(d.tree.len(), 2);
        drop(d);
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_answer_not_released_is_uncounted() {
        let (_db, d) = store();
        let now = SystemTime::now();
        let c = d
            .count("G-1", &[mac(1), mac(2)], now, Admit::Whole, cap(2))
            .unwrap();
        d.uncount(c.reservation).unwrap();
        let c = d
            .count("G-1", &[mac(3), mac(4)], now, Admit::Whole, cap(2))
            .unwrap();
        assert_eq!(c.refusal, None);
    }

    #[test]
    fn concurrent_answers_cannot_both_slip_under_the_cap() {
        let (_db, d) = store();
        let d = std::sync::Arc::new(d);
        let now = SystemTime::now();
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let d = d.clone();
                std::thread::spawn(move || {
                    let mine = [mac(t * 2), mac(t * 2 + 1)];
                    d.count("G-1", &mine, now, Admit::Whole, cap(5))
                        .unwrap()
                        .admitted
                })
            })
            .collect();
        let admitted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        // Two people per answer, five allowed: exactly two answers fit.
        assert_eq!(admitted, 4);
    }
}
