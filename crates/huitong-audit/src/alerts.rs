//! The bulk-lookup rule: a consumer whose queries reach more distinct people, or are refused
//! more often, in an hour than a configured threshold.
//!
//! One rule for every surface: `huitong audit alerts` replays the log through [`AlertScan`],
//! and the broker feeds every entry it records through [`Alerts`] for its metrics.
//!
//! The hour slides at minute resolution: at time t it covers t's clock minute and the 59 before
//! it (UTC). A sliding hour, unlike fixed clock hours, cannot be dodged by splitting a burst
//! across an hour boundary; the minute buckets keep the work per entry constant.
//!
//! Only queries count. Deliveries follow the provider's changes under a subscription, not the
//! consumer's choice of whom to look up, so they are not the bulk-lookup pattern. Subjects are
//! the HMACs in `subject` and `subjects`, whatever the outcome: a key tried and refused or not
//! found is an attempt to reach that person, and enumeration shows exactly as such attempts.
//! A refusal is the outcome `refused` (not `not_found` or `failed`).

use std::collections::{BTreeMap, HashMap, VecDeque};

use huitong_proto::v1::ExchangeRecord;
use serde_json::json;

use crate::record::{format_micros, kind, outcome};
use crate::stats::{Table, csv_field};

/// Microseconds in a minute, the resolution of the sliding hour.
const MINUTE: i64 = 60_000_000;
/// Minutes in the sliding window.
const WINDOW_MINUTES: i64 = 60;

/// Distinct subjects tracked per consumer by default when no subjects threshold is set.
const DEFAULT_SUBJECT_CAP: usize = 10_000;

/// The configured thresholds; a consumer is flagged when its count in the sliding hour is
/// greater than the threshold. `None` turns that check off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Thresholds {
    pub subjects_per_hour: Option<u64>,
    pub refusals_per_hour: Option<u64>,
}

/// What an alert is about. The names are the config keys and the metrics' `kind` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertKind {
    SubjectsPerHour,
    RefusalsPerHour,
}

impl AlertKind {
    pub const ALL: [AlertKind; 2] = [AlertKind::SubjectsPerHour, AlertKind::RefusalsPerHour];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::SubjectsPerHour => "subjects_per_hour",
            AlertKind::RefusalsPerHour => "refusals_per_hour",
        }
    }
}

impl Thresholds {
    pub fn get(&self, k: AlertKind) -> Option<u64> {
        match k {
            AlertKind::SubjectsPerHour => self.subjects_per_hour,
            AlertKind::RefusalsPerHour => self.refusals_per_hour,
        }
    }

    /// Whether any check is on.
    pub fn any(&self) -> bool {
        self.subjects_per_hour.is_some() || self.refusals_per_hour.is_some()
    }
}

/// One consumer's counts in the sliding hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Levels {
    /// Distinct subjects its queries named.
    pub subjects: u64,
    /// `subjects` reached the tracking cap: there were at least this many.
    pub subjects_at_least: bool,
    /// Queries refused.
    pub refusals: u64,
}

impl Levels {
    pub fn get(&self, k: AlertKind) -> u64 {
        match k {
            AlertKind::SubjectsPerHour => self.subjects,
            AlertKind::RefusalsPerHour => self.refusals,
        }
    }
}

/// One consumer's sliding hour.
///
/// Memory: each distinct subject once in `last_seen`, plus once per minute it was seen in the
/// bucket lists, for at most the 60 minutes of the window; at most `cap` distinct subjects are
/// kept (the most recently seen), so a consumer reading millions an hour costs the broker no
/// more than `cap` entries and the count reads "at least `cap`".
#[derive(Debug, Default)]
struct HourWindow {
    /// Subject → the minute it was last seen in.
    last_seen: HashMap<[u8; 32], i64>,
    /// Oldest first: per minute, the subjects seen in it (stale when seen again later).
    minutes: VecDeque<(i64, VecDeque<[u8; 32]>)>,
    /// Oldest first: refusals per minute.
    refusals: VecDeque<(i64, u64)>,
    refusal_sum: u64,
    /// The latest minute observed or advanced to.
    now: i64,
    /// Subjects were dropped to stay under the cap since the window was last below it.
    capped: bool,
}

impl HourWindow {
    /// Moves the window to end at `minute`, forgetting what falls out of it.
    fn advance(&mut self, minute: i64) {
        if minute <= self.now {
            return;
        }
        self.now = minute;
        let oldest = minute - WINDOW_MINUTES + 1;
        while let Some((m, _)) = self.minutes.front()
            && *m < oldest
        {
            if let Some((m, subjects)) = self.minutes.pop_front() {
                for s in subjects {
                    if self.last_seen.get(&s) == Some(&m) {
                        self.last_seen.remove(&s);
                    }
                }
            }
        }
        while let Some((m, n)) = self.refusals.front()
            && *m < oldest
        {
            self.refusal_sum -= n;
            self.refusals.pop_front();
        }
        if self.capped && self.minutes.is_empty() {
            self.capped = false;
        }
    }

    fn observe(&mut self, minute: i64, subjects: &[&[u8; 32]], refused: bool, cap: usize) {
        self.advance(minute);
        if minute <= self.now - WINDOW_MINUTES {
            // Older than the window (a replay out of order): it counts for no hour we report.
            return;
        }
        // Entries a few milliseconds out of order across a minute boundary count in the
        // current minute: at most a minute longer in the window.
        let m = self.now;
        for s in subjects {
            match self.last_seen.get_mut(*s) {
                Some(last) if *last == m => continue,
                Some(last) => *last = m,
                None => {
                    if self.last_seen.len() >= cap {
                        self.evict_oldest();
                    }
                    self.last_seen.insert(**s, m);
                }
            }
            match self.minutes.back_mut() {
                Some((bm, list)) if *bm == m => list.push_back(**s),
                _ => self.minutes.push_back((m, VecDeque::from([**s]))),
            }
        }
        if refused {
            self.refusal_sum += 1;
            match self.refusals.back_mut() {
                Some((bm, n)) if *bm == m => *n += 1,
                _ => self.refusals.push_back((m, 1)),
            }
        }
    }

    /// Forgets the subject seen longest ago, to stay within the cap.
    fn evict_oldest(&mut self) {
        self.capped = true;
        while let Some((m, list)) = self.minutes.front_mut() {
            while let Some(s) = list.pop_front() {
                if self.last_seen.get(&s) == Some(m) {
                    self.last_seen.remove(&s);
                    return;
                }
            }
            self.minutes.pop_front();
        }
    }

    fn levels(&self) -> Levels {
        Levels {
            subjects: self.last_seen.len() as u64,
            subjects_at_least: self.capped,
            refusals: self.refusal_sum,
        }
    }

    fn is_empty(&self) -> bool {
        self.last_seen.is_empty() && self.refusal_sum == 0
    }
}

/// The rule's state: every consumer's sliding hour.
#[derive(Debug)]
pub struct Alerts {
    thresholds: Thresholds,
    subject_cap: usize,
    windows: HashMap<String, HourWindow>,
}

impl Alerts {
    /// Counts subjects up to twice the subjects threshold (at least 1,000): enough to say by
    /// how much a consumer is over, bounded for a long-running broker.
    pub fn new(thresholds: Thresholds) -> Alerts {
        let cap = match thresholds.subjects_per_hour {
            Some(t) => usize::try_from(t.saturating_mul(2))
                .unwrap_or(usize::MAX)
                .max(1_000),
            None => DEFAULT_SUBJECT_CAP,
        };
        Self::with_subject_cap(thresholds, cap)
    }

    /// Like [`Alerts::new`], tracking at most `cap` distinct subjects per consumer (never
    /// fewer than the threshold plus one, so that the decision is exact).
    pub fn with_subject_cap(thresholds: Thresholds, cap: usize) -> Alerts {
        let floor = thresholds.subjects_per_hour.map_or(1, |t| {
            usize::try_from(t).unwrap_or(usize::MAX).saturating_add(1)
        });
        Alerts {
            thresholds,
            subject_cap: cap.max(floor),
            windows: HashMap::new(),
        }
    }

    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// Counts one log entry; returns its consumer's levels afterwards, or `None` when the
    /// entry is not a query (see the module's note).
    pub fn observe(&mut self, r: &ExchangeRecord) -> Option<Levels> {
        if r.kind != kind::QUERY {
            return None;
        }
        let subjects: Vec<&[u8; 32]> = std::iter::once(&r.subject)
            .chain(&r.subjects)
            .filter_map(|s| <&[u8; 32]>::try_from(s.as_slice()).ok())
            .collect();
        let refused = r.outcome == outcome::REFUSED;
        let w = match self.windows.get_mut(&r.consumer) {
            Some(w) => w,
            None => self.windows.entry(r.consumer.clone()).or_default(),
        };
        w.observe(
            r.time_micros.div_euclid(MINUTE),
            &subjects,
            refused,
            self.subject_cap,
        );
        Some(w.levels())
    }

    /// Moves every window to `now_micros`; consumers with nothing left in their hour are
    /// forgotten and returned, so that a caller can reset what it shows for them.
    pub fn advance(&mut self, now_micros: i64) -> Vec<String> {
        let minute = now_micros.div_euclid(MINUTE);
        let mut gone = Vec::new();
        self.windows.retain(|consumer, w| {
            w.advance(minute);
            let keep = !w.is_empty();
            if !keep {
                gone.push(consumer.clone());
            }
            keep
        });
        gone
    }

    /// Every consumer with something in its hour, and its levels.
    pub fn levels(&self) -> impl Iterator<Item = (&str, Levels)> {
        self.windows.iter().map(|(c, w)| (c.as_str(), w.levels()))
    }

    /// Whether `levels` break the threshold of `k` (off thresholds never do).
    pub fn exceeds(&self, levels: &Levels, k: AlertKind) -> bool {
        self.thresholds.get(k).is_some_and(|t| levels.get(k) > t)
    }
}

/// A one-shot report over a stretch of the log: feed entries in log order.
#[derive(Debug)]
pub struct AlertScan {
    rule: Alerts,
    flagged: BTreeMap<(String, AlertKind), Flagged>,
    peaks: BTreeMap<String, [Peak; 2]>,
}

/// A consumer over a threshold at some point of the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flagged {
    pub consumer: String,
    pub kind: AlertKind,
    pub threshold: u64,
    /// The entry's time at which the count first went over.
    pub first_micros: i64,
    /// The last entry's time at which it was still over.
    pub last_micros: i64,
    pub peak: Peak,
}

/// The highest count of one kind, and the hour it was counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Peak {
    pub value: u64,
    /// There were at least `value` (the tracking cap was reached).
    pub at_least: bool,
    /// The end of the sliding hour (exclusive, on a minute): the hour is the 60 minutes before.
    pub window_end_micros: i64,
}

impl Peak {
    fn window_start_micros(&self) -> i64 {
        self.window_end_micros - WINDOW_MINUTES * MINUTE
    }

    fn shown(&self) -> String {
        if self.at_least {
            format!("≥{}", self.value)
        } else {
            self.value.to_string()
        }
    }
}

/// What [`AlertScan`] found.
#[derive(Debug, Clone)]
pub struct AlertReport {
    pub thresholds: Thresholds,
    /// Consumers over a threshold, by consumer then kind.
    pub flagged: Vec<Flagged>,
    /// Every consumer that queried in the period, with its peak hours (subjects, refusals).
    pub peaks: Vec<(String, [Peak; 2])>,
}

/// Distinct subjects tracked per consumer in a one-shot report: a million people an hour is
/// far beyond any threshold, and stays within a few hundred MB.
pub const SCAN_SUBJECT_CAP: usize = 1_000_000;

impl AlertScan {
    pub fn new(thresholds: Thresholds) -> AlertScan {
        AlertScan {
            rule: Alerts::with_subject_cap(thresholds, SCAN_SUBJECT_CAP),
            flagged: BTreeMap::new(),
            peaks: BTreeMap::new(),
        }
    }

    pub fn add(&mut self, r: &ExchangeRecord) {
        let Some(levels) = self.rule.observe(r) else {
            return;
        };
        let window_end = (r.time_micros.div_euclid(MINUTE) + 1) * MINUTE;
        let peaks = self.peaks.entry(r.consumer.clone()).or_default();
        for (i, k) in AlertKind::ALL.into_iter().enumerate() {
            let v = levels.get(k);
            if v > peaks[i].value {
                peaks[i] = Peak {
                    value: v,
                    at_least: k == AlertKind::SubjectsPerHour && levels.subjects_at_least,
                    window_end_micros: window_end,
                };
            }
            if !self.rule.exceeds(&levels, k) {
                continue;
            }
            let f = self
                .flagged
                .entry((r.consumer.clone(), k))
                .or_insert_with(|| Flagged {
                    consumer: r.consumer.clone(),
                    kind: k,
                    threshold: self.rule.thresholds.get(k).unwrap_or(0),
                    first_micros: r.time_micros,
                    last_micros: r.time_micros,
                    peak: Peak::default(),
                });
            f.last_micros = r.time_micros;
            f.peak = peaks[i];
        }
    }

    pub fn report(&self) -> AlertReport {
        AlertReport {
            thresholds: self.rule.thresholds,
            flagged: self.flagged.values().cloned().collect(),
            peaks: self.peaks.iter().map(|(c, p)| (c.clone(), *p)).collect(),
        }
    }
}

impl AlertReport {
    pub fn to_json(&self) -> serde_json::Value {
        let peak = |p: &Peak| {
            json!({
                "value": p.value,
                "at_least": p.at_least,
                "window_start": (p.value > 0).then(|| format_micros(p.window_start_micros())),
                "window_end": (p.value > 0).then(|| format_micros(p.window_end_micros)),
            })
        };
        json!({
            "window": "sliding hour at minute resolution (UTC minutes)",
            "thresholds": {
                "subjects_per_hour": self.thresholds.subjects_per_hour,
                "refusals_per_hour": self.thresholds.refusals_per_hour,
            },
            "alerts": self.flagged.iter().map(|f| json!({
                "consumer": f.consumer,
                "kind": f.kind.as_str(),
                "threshold": f.threshold,
                "first_exceeded": format_micros(f.first_micros),
                "last_exceeded": format_micros(f.last_micros),
                "peak": peak(&f.peak),
            })).collect::<Vec<_>>(),
            "consumers": self.peaks.iter().map(|(c, [s, r])| json!({
                "consumer": c,
                "peak_subjects_per_hour": peak(s),
                "peak_refusals_per_hour": peak(r),
            })).collect::<Vec<_>>(),
        })
    }

    /// One row per alert; no rows when no consumer went over.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "consumer,kind,threshold,peak,peak_at_least,peak_window_start,peak_window_end,first_exceeded,last_exceeded\n",
        );
        for f in &self.flagged {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{}\n",
                csv_field(&f.consumer),
                f.kind.as_str(),
                f.threshold,
                f.peak.value,
                f.peak.at_least,
                format_micros(f.peak.window_start_micros()),
                format_micros(f.peak.window_end_micros),
                format_micros(f.first_micros),
                format_micros(f.last_micros),
            ));
        }
        out
    }

    pub fn to_text(&self) -> String {
        let t = |v: Option<u64>| v.map_or("off".to_owned(), |v| v.to_string());
        let mut out = format!(
            "Thresholds per sliding hour: distinct subjects {}, refusals {}.\n\n",
            t(self.thresholds.subjects_per_hour),
            t(self.thresholds.refusals_per_hour)
        );
        if self.flagged.is_empty() {
            out.push_str("No consumer went over a threshold.\n");
        } else {
            out.push_str("Consumers over a threshold:\n");
            let mut table = Table::new(&[
                "consumer",
                "kind",
                ">threshold",
                "peak",
                "peak hour (UTC)",
                "first over",
                "last over",
            ]);
            for f in &self.flagged {
                table.row(vec![
                    f.consumer.clone(),
                    f.kind.as_str().to_owned(),
                    f.threshold.to_string(),
                    f.peak.shown(),
                    hour_span(&f.peak),
                    short_time(f.first_micros),
                    short_time(f.last_micros),
                ]);
            }
            out.push_str(&table.render());
        }
        if !self.peaks.is_empty() {
            out.push_str("\nPeak hour of every consumer that queried:\n");
            let mut table = Table::new(&[
                "consumer",
                "subjects",
                "in the hour (UTC)",
                "refusals",
                "in the hour (UTC)",
            ]);
            for (c, [s, r]) in &self.peaks {
                table.row(vec![
                    c.clone(),
                    s.shown(),
                    hour_span(s),
                    r.shown(),
                    hour_span(r),
                ]);
            }
            out.push_str(&table.render());
        }
        out
    }
}

/// "2026-12-02 14:37–15:37", or "-" for a count of zero.
fn hour_span(p: &Peak) -> String {
    if p.value == 0 {
        return "-".into();
    }
    let start = format_micros(p.window_start_micros());
    let end = format_micros(p.window_end_micros);
    format!("{} {}–{}", &start[..10], &start[11..16], &end[11..16])
}

/// "2026-12-02 14:37:05".
fn short_time(us: i64) -> String {
    let s = format_micros(us);
    format!("{} {}", &s[..10], &s[11..19])
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_764_633_600_000_000; // 2025-12-02T00:00:00Z

    fn subject(n: u32) -> Vec<u8> {
        let mut s = vec![0u8; 32];
        s[..4].copy_from_slice(&n.to_be_bytes());
        s
    }

    fn query(consumer: &str, at: i64, subj: u32, outcome: &str) -> ExchangeRecord {
        ExchangeRecord {
            kind: kind::QUERY.into(),
            consumer: consumer.into(),
            time_micros: at,
            subject: subject(subj),
            outcome: outcome.into(),
            ..Default::default()
        }
    }

    fn thresholds(s: u64, r: u64) -> Thresholds {
        Thresholds {
            subjects_per_hour: Some(s),
            refusals_per_hour: Some(r),
        }
    }

    #[test]
    fn distinct_subjects_in_the_sliding_hour_are_counted_once() {
        let mut a = Alerts::new(thresholds(3, 100));
        for (i, s) in [1, 2, 1, 3, 2].into_iter().enumerate() {
            a.observe(&query("c", T0 + i as i64 * MINUTE, s, outcome::ANSWERED));
        }
        let l = a.observe(&query("c", T0 + 10 * MINUTE, 3, outcome::ANSWERED));
        assert_eq!(l.map(|l| l.subjects), Some(3));
        assert!(!a.exceeds(&l.unwrap_or_default(), AlertKind::SubjectsPerHour));
        let l = a
            .observe(&query("c", T0 + 11 * MINUTE, 4, outcome::NOT_FOUND))
            .unwrap_or_default();
        assert_eq!(l.subjects, 4, "a key tried and not found counts");
        assert!(a.exceeds(&l, AlertKind::SubjectsPerHour));
    }

    #[test]
    fn the_hour_slides_by_the_minute_and_a_resighting_keeps_a_subject_in() {
        let mut a = Alerts::new(thresholds(10, 10));
        a.observe(&query("c", T0, 1, outcome::ANSWERED));
        a.observe(&query("c", T0 + 30 * MINUTE, 2, outcome::ANSWERED));
        a.observe(&query("c", T0 + 50 * MINUTE, 1, outcome::ANSWERED));
        // At minute 59 everything is still in; at 60 subject 1's first sighting has gone but
        // its second keeps it; at 81 subject 2 is gone; at 111 nothing is left.
        let count = |a: &mut Alerts, m: i64| {
            a.advance(T0 + m * MINUTE);
            a.levels().map(|(_, l)| l.subjects).sum::<u64>()
        };
        assert_eq!(count(&mut a, 59), 2);
        assert_eq!(count(&mut a, 60), 2);
        assert_eq!(count(&mut a, 89), 2);
        assert_eq!(count(&mut a, 90), 1);
        assert_eq!(count(&mut a, 109), 1);
        let gone = a.advance(T0 + 110 * MINUTE);
        assert_eq!(gone, ["c"]);
        assert_eq!(a.levels().count(), 0, "an idle consumer is forgotten");
    }

    #[test]
    fn a_burst_across_an_hour_boundary_is_caught() {
        // 30 subjects at 10:45–10:59 and 30 at 11:00–11:14: no clock hour holds more than
        // 30, the sliding hour holds 60.
        let mut scan = AlertScan::new(thresholds(50, 100));
        for i in 0..60u32 {
            let at = T0 + 10 * 60 * MINUTE + 45 * MINUTE + i64::from(i / 2) * MINUTE;
            scan.add(&query("bulk", at, i, outcome::ANSWERED));
        }
        let r = scan.report();
        assert_eq!(r.flagged.len(), 1, "{r:?}");
        let f = &r.flagged[0];
        assert_eq!(
            (f.consumer.as_str(), f.kind),
            ("bulk", AlertKind::SubjectsPerHour)
        );
        assert_eq!(f.peak.value, 60);
        assert_eq!(
            format_micros(f.peak.window_end_micros),
            "2025-12-02T11:15:00.000000Z"
        );
        assert_eq!(format_micros(f.first_micros), "2025-12-02T11:10:00.000000Z");
    }

    #[test]
    fn refusals_count_only_refused_queries_and_deliveries_do_not_count() {
        let mut scan = AlertScan::new(thresholds(1000, 2));
        for (i, o) in [
            outcome::REFUSED,
            outcome::NOT_FOUND,
            outcome::FAILED,
            outcome::REFUSED,
            outcome::REFUSED,
        ]
        .into_iter()
        .enumerate()
        {
            scan.add(&query("a", T0 + i as i64, 0, o));
        }
        for i in 0..5 {
            let mut d = query("b", T0 + i, i as u32, outcome::REFUSED);
            d.kind = kind::DELIVERY.into();
            scan.add(&d);
            let mut g = query("b", T0 + i, i as u32, outcome::REFUSED);
            g.kind = kind::GRANT_REVOKED.into();
            scan.add(&g);
        }
        let r = scan.report();
        assert_eq!(
            r.flagged
                .iter()
                .map(|f| (f.consumer.as_str(), f.kind, f.peak.value))
                .collect::<Vec<_>>(),
            [("a", AlertKind::RefusalsPerHour, 3)]
        );
        assert_eq!(r.peaks.len(), 1, "b made no query: {:?}", r.peaks);
        assert!(r.to_csv().contains("a,refusals_per_hour,2,3,false,"));
    }

    #[test]
    fn subjects_beyond_the_cap_read_as_at_least_and_the_newest_are_kept() {
        let mut a = Alerts::with_subject_cap(
            Thresholds {
                subjects_per_hour: Some(5),
                refusals_per_hour: None,
            },
            10,
        );
        let mut last = Levels::default();
        for i in 0..100u32 {
            last = a
                .observe(&query(
                    "c",
                    T0 + i64::from(i / 10) * MINUTE,
                    i,
                    outcome::ANSWERED,
                ))
                .unwrap_or_default();
        }
        assert_eq!(last.subjects, 10);
        assert!(last.subjects_at_least);
        assert!(a.exceeds(&last, AlertKind::SubjectsPerHour));
        // The ten kept are the newest, so the count stays at the cap until they leave.
        a.advance(T0 + 68 * MINUTE);
        assert_eq!(a.levels().next().map(|(_, l)| l.subjects), Some(10));
        a.advance(T0 + 69 * MINUTE);
        assert_eq!(a.levels().count(), 0);
        // The cap is never below the threshold plus one, so the decision stays exact.
        let a = Alerts::with_subject_cap(
            Thresholds {
                subjects_per_hour: Some(50),
                refusals_per_hour: None,
            },
            3,
        );
        assert_eq!(a.subject_cap, 51);
    }

    #[test]
    fn subjects_of_searches_count_and_malformed_ones_are_skipped() {
        let mut a = Alerts::new(thresholds(2, 2));
        let mut r = query("c", T0, 1, outcome::ANSWERED);
        r.subject.clear();
        r.subjects = vec![subject(1), subject(2), subject(3), vec![1, 2, 3]];
        assert_eq!(a.observe(&r).map(|l| l.subjects), Some(3));
    }

    #[test]
    fn off_thresholds_never_flag() {
        let mut scan = AlertScan::new(Thresholds::default());
        for i in 0..10_000 {
            scan.add(&query("c", T0 + i64::from(i), i, outcome::REFUSED));
        }
        let r = scan.report();
        assert!(r.flagged.is_empty());
        assert_eq!(r.peaks[0].1[0].value, 10_000);
        assert!(r.to_text().contains("No consumer went over a threshold."));
    }
}
