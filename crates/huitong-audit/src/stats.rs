//! Summaries of the exchange log over a period: who exchanged with whom, how it ended, why
//! refusals happened, how many people each consumer reached, how long answers took.
//!
//! One place for these rules, for `huitong audit stats` and any later console: feed the
//! entries of the period to [`Summary::add`] and render [`Summary::report`].
//!
//! - Counted: exchange entries ([`kind::is_exchange`]: queries, deliveries, subscription
//!   openings); governance entries are only counted as skipped.
//! - Not-found rate: `not_found / (answered + not_found)` over queries, that is, the share of
//!   queries the provider answered that found nobody. A high rate is what guessing keys looks
//!   like.
//! - Distinct subjects: the subject HMACs in `subject` and `subjects`, counted exactly with a
//!   set of 32-byte hashes (34 bytes a slot in the hash table, 40 to 80 bytes a person with its
//!   spare capacity; 10^6 people measured 69 MB, see `measure`). "Asked" is
//!   every subject an entry names, whatever its outcome; "reached" only those of answered
//!   entries, whose records were released. Past [`DEFAULT_SUBJECT_CAP`] distinct subjects in
//!   one summary, new ones are no longer tracked and the counts read "at least". Subject keys
//!   change every period (a month), so a person reached in two periods counts twice.
//! - Latency: `latency_micros` of queries that were routed (answered, not found, failed),
//!   per resource and overall; refusals are decided by policy in microseconds and would hide
//!   the providers' times. Kept in HDR histograms of two significant digits: percentiles are
//!   within 1 %, the maximum is exact; memory is a few tens of KB per resource.

use std::collections::{BTreeMap, HashMap};

use hdrhistogram::Histogram;
use huitong_proto::v1::ExchangeRecord;
use serde_json::json;

use crate::record::{format_micros, kind, outcome};

/// Distinct subjects one summary tracks (200 to 400 MB); beyond, counts are lower bounds.
pub const DEFAULT_SUBJECT_CAP: usize = 5_000_000;

/// Outcome counts of a group of entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub total: u64,
    pub answered: u64,
    pub not_found: u64,
    pub refused: u64,
    pub failed: u64,
    /// Records released.
    pub records: u64,
}

impl Counts {
    fn add(&mut self, r: &ExchangeRecord) {
        self.total += 1;
        match r.outcome.as_str() {
            outcome::ANSWERED => self.answered += 1,
            outcome::NOT_FOUND => self.not_found += 1,
            outcome::REFUSED => self.refused += 1,
            outcome::FAILED => self.failed += 1,
            _ => {}
        }
        self.records += u64::from(r.record_count);
    }
}

/// One consumer × provider × resource × kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeRow {
    pub consumer: String,
    pub provider: String,
    pub resource: String,
    pub kind: String,
    pub counts: Counts,
}

/// Refusals (and failures) of one consumer with one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonRow {
    pub outcome: String,
    pub consumer: String,
    /// The gRPC status code, as its name (e.g. `PERMISSION_DENIED`).
    pub code: String,
    pub reason: String,
    pub count: u64,
}

/// One consumer over the period.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerRow {
    pub consumer: String,
    pub counts: Counts,
    /// Of its queries, `not_found / (answered + not_found)`; `None` when neither happened.
    pub not_found_rate: Option<f64>,
    /// Distinct subjects its entries named, whatever the outcome.
    pub subjects_asked: u64,
    /// Distinct subjects of its answered entries.
    pub subjects_reached: u64,
    /// The subject cap was reached: both subject counts are lower bounds.
    pub subjects_at_least: bool,
}

/// Latency percentiles of one resource's routed queries (or of all, `resource` empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyRow {
    pub resource: String,
    pub count: u64,
    pub p50_micros: u64,
    pub p90_micros: u64,
    pub p99_micros: u64,
    pub max_micros: u64,
}

/// What [`Summary`] computed.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryReport {
    /// Exchange entries counted.
    pub entries: u64,
    /// Governance entries in the period, not counted.
    pub governance_entries: u64,
    pub first_micros: Option<i64>,
    pub last_micros: Option<i64>,
    pub exchanges: Vec<ExchangeRow>,
    pub reasons: Vec<ReasonRow>,
    pub consumers: Vec<ConsumerRow>,
    /// Overall first (empty resource), then per resource.
    pub latency: Vec<LatencyRow>,
}

#[derive(Debug, Default)]
struct ConsumerAcc {
    counts: Counts,
    query_answered: u64,
    query_not_found: u64,
    /// Subject → whether an answered entry released it.
    subjects: HashMap<[u8; 32], bool>,
    reached: u64,
    at_least: bool,
}

/// Accumulates entries; see the module's note for what is counted how.
#[derive(Debug)]
pub struct Summary {
    entries: u64,
    governance: u64,
    first: Option<i64>,
    last: Option<i64>,
    exchanges: BTreeMap<(String, String, String, String), Counts>,
    reasons: BTreeMap<(String, String, i32, String), u64>,
    consumers: BTreeMap<String, ConsumerAcc>,
    latency: BTreeMap<String, Latency>,
    all_latency: Latency,
    subject_cap: usize,
    subjects_tracked: usize,
}

impl Default for Summary {
    fn default() -> Self {
        Self::new()
    }
}

/// Latencies of one group: a histogram for the percentiles, the maximum exactly.
#[derive(Debug)]
struct Latency {
    /// `None` only if the histogram could not be made, which its fixed parameters rule out.
    histogram: Option<Histogram<u64>>,
    max: u64,
}

impl Latency {
    fn new() -> Latency {
        Latency {
            // Two significant digits, auto-resizing: only the magnitudes seen take memory.
            histogram: Histogram::new(2).ok(),
            max: 0,
        }
    }

    fn record(&mut self, micros: u64) {
        // `record` grows the histogram as needed; `saturating_record` would clamp to its
        // current range instead.
        if let Some(h) = &mut self.histogram
            && h.record(micros).is_err()
        {
            h.saturating_record(micros);
        }
        self.max = self.max.max(micros);
    }

    fn row(&self, resource: &str) -> Option<LatencyRow> {
        let h = self.histogram.as_ref().filter(|h| !h.is_empty())?;
        // A bucket's highest value may lie above the largest value recorded in it.
        let q = |q: f64| h.value_at_quantile(q).min(self.max);
        Some(LatencyRow {
            resource: resource.to_owned(),
            count: h.len(),
            p50_micros: q(0.50),
            p90_micros: q(0.90),
            p99_micros: q(0.99),
            max_micros: self.max,
        })
    }
}

impl Summary {
    pub fn new() -> Summary {
        Self::with_subject_cap(DEFAULT_SUBJECT_CAP)
    }

    /// Tracks at most `cap` distinct subjects in all (see the module's note).
    pub fn with_subject_cap(cap: usize) -> Summary {
        Summary {
            entries: 0,
            governance: 0,
            first: None,
            last: None,
            exchanges: BTreeMap::new(),
            reasons: BTreeMap::new(),
            consumers: BTreeMap::new(),
            latency: BTreeMap::new(),
            all_latency: Latency::new(),
            subject_cap: cap,
            subjects_tracked: 0,
        }
    }

    pub fn add(&mut self, r: &ExchangeRecord) {
        if !kind::is_exchange(&r.kind) {
            self.governance += 1;
            return;
        }
        self.entries += 1;
        self.first = Some(self.first.map_or(r.time_micros, |t| t.min(r.time_micros)));
        self.last = Some(self.last.map_or(r.time_micros, |t| t.max(r.time_micros)));
        self.exchanges
            .entry((
                r.consumer.clone(),
                r.provider.clone(),
                r.resource.clone(),
                r.kind.clone(),
            ))
            .or_default()
            .add(r);
        if r.outcome == outcome::REFUSED || r.outcome == outcome::FAILED {
            *self
                .reasons
                .entry((
                    r.outcome.clone(),
                    r.consumer.clone(),
                    r.status_code,
                    r.refusal.clone(),
                ))
                .or_default() += 1;
        }
        let c = self.consumers.entry(r.consumer.clone()).or_default();
        c.counts.add(r);
        let query = r.kind == kind::QUERY;
        if query && r.outcome == outcome::ANSWERED {
            c.query_answered += 1;
        }
        if query && r.outcome == outcome::NOT_FOUND {
            c.query_not_found += 1;
        }
        let answered = r.outcome == outcome::ANSWERED;
        for s in std::iter::once(&r.subject).chain(&r.subjects) {
            let Ok(s) = <[u8; 32]>::try_from(s.as_slice()) else {
                continue;
            };
            match c.subjects.get_mut(&s) {
                Some(reached) => {
                    if answered && !*reached {
                        *reached = true;
                        c.reached += 1;
                    }
                }
                None if self.subjects_tracked < self.subject_cap => {
                    c.subjects.insert(s, answered);
                    c.reached += u64::from(answered);
                    self.subjects_tracked += 1;
                }
                None => c.at_least = true,
            }
        }
        let routed =
            [outcome::ANSWERED, outcome::NOT_FOUND, outcome::FAILED].contains(&r.outcome.as_str());
        if query && routed {
            let v = u64::try_from(r.latency_micros).unwrap_or(0);
            self.all_latency.record(v);
            match self.latency.get_mut(&r.resource) {
                Some(l) => l.record(v),
                None => {
                    let mut l = Latency::new();
                    l.record(v);
                    self.latency.insert(r.resource.clone(), l);
                }
            }
        }
    }

    pub fn report(&self) -> SummaryReport {
        let mut latency: Vec<LatencyRow> = self.all_latency.row("").into_iter().collect();
        latency.extend(self.latency.iter().filter_map(|(r, l)| l.row(r)));
        let mut reasons: Vec<ReasonRow> = self
            .reasons
            .iter()
            .map(|((outcome, consumer, code, reason), n)| ReasonRow {
                outcome: outcome.clone(),
                consumer: consumer.clone(),
                code: code_name(*code),
                reason: reason.clone(),
                count: *n,
            })
            .collect();
        // The commonest first; ties in key order, so the output is stable.
        reasons.sort_by_key(|r| std::cmp::Reverse(r.count));
        SummaryReport {
            entries: self.entries,
            governance_entries: self.governance,
            first_micros: self.first,
            last_micros: self.last,
            exchanges: self
                .exchanges
                .iter()
                .map(
                    |((consumer, provider, resource, kind), counts)| ExchangeRow {
                        consumer: consumer.clone(),
                        provider: provider.clone(),
                        resource: resource.clone(),
                        kind: kind.clone(),
                        counts: *counts,
                    },
                )
                .collect(),
            reasons,
            consumers: self
                .consumers
                .iter()
                .map(|(consumer, c)| {
                    let routed = c.query_answered + c.query_not_found;
                    ConsumerRow {
                        consumer: consumer.clone(),
                        counts: c.counts,
                        not_found_rate: (routed > 0)
                            .then(|| c.query_not_found as f64 / routed as f64),
                        subjects_asked: c.subjects.len() as u64,
                        subjects_reached: c.reached,
                        subjects_at_least: c.at_least,
                    }
                })
                .collect(),
            latency,
        }
    }
}

/// The canonical name of a recorded gRPC status code, e.g. `PERMISSION_DENIED`.
fn code_name(code: i32) -> String {
    huitong_proto::transport::code_name(tonic::Code::from_i32(code)).to_owned()
}

fn dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

impl ConsumerRow {
    fn shown(&self, n: u64) -> String {
        if self.subjects_at_least {
            format!("≥{n}")
        } else {
            n.to_string()
        }
    }
}

impl SummaryReport {
    pub fn to_json(&self) -> serde_json::Value {
        let counts = |c: &Counts| {
            json!({
                "total": c.total,
                "answered": c.answered,
                "not_found": c.not_found,
                "refused": c.refused,
                "failed": c.failed,
                "records": c.records,
            })
        };
        json!({
            "entries": self.entries,
            "governance_entries": self.governance_entries,
            "first": self.first_micros.map(format_micros),
            "last": self.last_micros.map(format_micros),
            "exchanges": self.exchanges.iter().map(|e| {
                let mut v = counts(&e.counts);
                v["consumer"] = json!(e.consumer);
                v["provider"] = json!(e.provider);
                v["resource"] = json!(e.resource);
                v["kind"] = json!(e.kind);
                v
            }).collect::<Vec<_>>(),
            "refusals": self.reasons.iter().map(|r| json!({
                "outcome": r.outcome,
                "consumer": r.consumer,
                "code": r.code,
                "reason": r.reason,
                "count": r.count,
            })).collect::<Vec<_>>(),
            "consumers": self.consumers.iter().map(|c| {
                let mut v = counts(&c.counts);
                v["consumer"] = json!(c.consumer);
                v["not_found_rate"] = json!(c.not_found_rate);
                v["subjects_asked"] = json!(c.subjects_asked);
                v["subjects_reached"] = json!(c.subjects_reached);
                v["subjects_at_least"] = json!(c.subjects_at_least);
                v
            }).collect::<Vec<_>>(),
            "latency": self.latency.iter().map(|l| json!({
                "resource": if l.resource.is_empty() { None } else { Some(&l.resource) },
                "count": l.count,
                "p50_micros": l.p50_micros,
                "p90_micros": l.p90_micros,
                "p99_micros": l.p99_micros,
                "max_micros": l.max_micros,
            })).collect::<Vec<_>>(),
        })
    }

    /// Long form, one number per row, so that one header fits every table:
    /// `table,consumer,provider,resource,kind,outcome,code,reason,metric,value`.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "table,consumer,provider,resource,kind,outcome,code,reason,metric,value\n",
        );
        let mut row = |table: &str, cols: [&str; 7], metric: &str, value: String| {
            out.push_str(table);
            for c in cols {
                out.push(',');
                out.push_str(&csv_field(c));
            }
            out.push_str(&format!(",{metric},{value}\n"));
        };
        let counts = |c: &Counts| {
            [
                ("total", c.total),
                ("answered", c.answered),
                ("not_found", c.not_found),
                ("refused", c.refused),
                ("failed", c.failed),
                ("records", c.records),
            ]
        };
        for e in &self.exchanges {
            for (m, v) in counts(&e.counts) {
                row(
                    "exchanges",
                    [&e.consumer, &e.provider, &e.resource, &e.kind, "", "", ""],
                    m,
                    v.to_string(),
                );
            }
        }
        for r in &self.reasons {
            row(
                "refusals",
                [&r.consumer, "", "", "", &r.outcome, &r.code, &r.reason],
                "count",
                r.count.to_string(),
            );
        }
        for c in &self.consumers {
            let cols = [c.consumer.as_str(), "", "", "", "", "", ""];
            for (m, v) in counts(&c.counts) {
                row("consumers", cols, m, v.to_string());
            }
            if let Some(rate) = c.not_found_rate {
                row("consumers", cols, "not_found_rate", format!("{rate:.4}"));
            }
            row(
                "consumers",
                cols,
                "subjects_asked",
                c.subjects_asked.to_string(),
            );
            row(
                "consumers",
                cols,
                "subjects_reached",
                c.subjects_reached.to_string(),
            );
            row(
                "consumers",
                cols,
                "subjects_at_least",
                c.subjects_at_least.to_string(),
            );
        }
        for l in &self.latency {
            let provider = l.resource.split('/').next().unwrap_or_default();
            for (m, v) in [
                ("count", l.count),
                ("p50_micros", l.p50_micros),
                ("p90_micros", l.p90_micros),
                ("p99_micros", l.p99_micros),
                ("max_micros", l.max_micros),
            ] {
                row(
                    "latency",
                    ["", provider, &l.resource, "", "", "", ""],
                    m,
                    v.to_string(),
                );
            }
        }
        out
    }

    /// Aligned tables for a terminal.
    pub fn to_text(&self) -> String {
        let mut out = match (self.first_micros, self.last_micros) {
            (Some(a), Some(b)) => format!(
                "{} exchange entries from {} to {} (UTC)",
                self.entries,
                &format_micros(a)[..19],
                &format_micros(b)[..19]
            ),
            _ => "No exchange entries".to_owned(),
        };
        if self.governance_entries > 0 {
            out.push_str(&format!(
                "; {} governance entries not counted",
                self.governance_entries
            ));
        }
        out.push_str(".\n");
        if self.entries == 0 {
            return out;
        }
        out.push_str("\nWho exchanged with whom:\n");
        let mut t = Table::new(&[
            "consumer",
            "provider",
            "resource",
            "kind",
            "total",
            "answered",
            "not_found",
            "refused",
            "failed",
            "records",
        ]);
        for e in &self.exchanges {
            let c = &e.counts;
            t.row(vec![
                e.consumer.clone(),
                dash(&e.provider).to_owned(),
                dash(&e.resource).to_owned(),
                e.kind.clone(),
                c.total.to_string(),
                c.answered.to_string(),
                c.not_found.to_string(),
                c.refused.to_string(),
                c.failed.to_string(),
                c.records.to_string(),
            ]);
        }
        out.push_str(&t.render());
        out.push_str("\nConsumers:\n");
        let mut t = Table::new(&[
            "consumer",
            "total",
            "answered",
            "not_found",
            "refused",
            "failed",
            "not-found rate",
            "subjects asked",
            "subjects reached",
        ]);
        for c in &self.consumers {
            t.row(vec![
                c.consumer.clone(),
                c.counts.total.to_string(),
                c.counts.answered.to_string(),
                c.counts.not_found.to_string(),
                c.counts.refused.to_string(),
                c.counts.failed.to_string(),
                c.not_found_rate
                    .map_or("-".to_owned(), |r| format!("{:.1} %", r * 100.0)),
                c.shown(c.subjects_asked),
                c.shown(c.subjects_reached),
            ]);
        }
        out.push_str(&t.render());
        if !self.reasons.is_empty() {
            out.push_str("\nRefusals and failures by reason:\n");
            let mut t = Table::new(&["count", "outcome", "consumer", "code", "reason"]);
            for r in &self.reasons {
                t.row(vec![
                    r.count.to_string(),
                    r.outcome.clone(),
                    r.consumer.clone(),
                    r.code.clone(),
                    dash(&r.reason).to_owned(),
                ]);
            }
            out.push_str(&t.render());
        }
        if !self.latency.is_empty() {
            out.push_str("\nLatency of routed queries (answered, not found, failed), ms:\n");
            let mut t = Table::new(&["resource", "queries", "p50", "p90", "p99", "max"]);
            let ms = |us: u64| format!("{:.1}", us as f64 / 1000.0);
            for l in &self.latency {
                t.row(vec![
                    if l.resource.is_empty() {
                        "(all)".to_owned()
                    } else {
                        l.resource.clone()
                    },
                    l.count.to_string(),
                    ms(l.p50_micros),
                    ms(l.p90_micros),
                    ms(l.p99_micros),
                    ms(l.max_micros),
                ]);
            }
            out.push_str(&t.render());
        }
        out
    }
}

/// RFC 4180 quoting, as [`crate::record::to_csv_row`] does.
pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// A text table: columns padded to their widest cell, numbers right-aligned.
#[derive(Debug)]
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(width(c));
            }
        }
        let numeric = |i: usize| {
            !self.rows.is_empty()
                && self.rows.iter().all(|r| {
                    r.get(i).is_some_and(|c| {
                        c.trim_start_matches('≥')
                            .trim_end_matches(" %")
                            .parse::<f64>()
                            .is_ok()
                            || c == "-"
                    })
                })
        };
        let numeric: Vec<bool> = (0..widths.len()).map(numeric).collect();
        let mut out = String::new();
        for r in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::from("  ");
            for (i, c) in r.iter().enumerate() {
                let w = widths.get(i).copied().unwrap_or(0);
                let pad = " ".repeat(w.saturating_sub(width(c)));
                if i > 0 {
                    line.push_str("  ");
                }
                if numeric.get(i).copied().unwrap_or(false) {
                    line.push_str(&pad);
                    line.push_str(c);
                } else {
                    line.push_str(c);
                    line.push_str(&pad);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(n: u32) -> Vec<u8> {
        let mut s = vec![0u8; 32];
        s[..4].copy_from_slice(&n.to_be_bytes());
        s
    }

    fn entry(consumer: &str, resource: &str, outcome: &str, subj: u32) -> ExchangeRecord {
        ExchangeRecord {
            time_micros: 1_000_000 + i64::from(subj),
            kind: kind::QUERY.into(),
            consumer: consumer.into(),
            provider: resource.split('/').next().unwrap_or_default().into(),
            resource: resource.into(),
            outcome: outcome.into(),
            subject: subject(subj),
            record_count: u32::from(outcome == outcome::ANSWERED),
            latency_micros: 1000,
            ..Default::default()
        }
    }

    const REG: &str = "public-security/household-register";
    const LIC: &str = "market-regulation/business-licences";

    fn sample() -> Summary {
        let mut s = Summary::new();
        for i in 0..4 {
            s.add(&entry("civil-affairs", REG, outcome::ANSWERED, i));
        }
        s.add(&entry("civil-affairs", REG, outcome::ANSWERED, 0));
        s.add(&entry("civil-affairs", REG, outcome::NOT_FOUND, 99));
        let mut refused = entry("human-resources", REG, outcome::REFUSED, 0);
        refused.refusal = "no grant".into();
        refused.status_code = 7;
        refused.record_count = 0;
        s.add(&refused);
        s.add(&refused);
        let mut failed = entry("civil-affairs", LIC, outcome::FAILED, 5);
        failed.refusal = "department market-regulation is unavailable".into();
        failed.status_code = 14;
        s.add(&failed);
        // A search page: no key subject, three released.
        let mut search = entry("civil-affairs", LIC, outcome::ANSWERED, 0);
        search.subject.clear();
        search.subjects = vec![subject(1), subject(10), subject(11)];
        search.record_count = 3;
        s.add(&search);
        let mut delivery = entry("civil-affairs", REG, outcome::ANSWERED, 12);
        delivery.kind = kind::DELIVERY.into();
        s.add(&delivery);
        let mut governance = entry("civil-affairs", REG, outcome::DONE, 13);
        governance.kind = kind::GRANT_CREATED.into();
        s.add(&governance);
        s
    }

    #[test]
    fn counts_per_pair_and_outcome() {
        let r = sample().report();
        assert_eq!((r.entries, r.governance_entries), (11, 1));
        type Row<'a> = (&'a str, &'a str, &'a str, u64, u64, u64, u64, u64, u64);
        let rows: Vec<Row> = r
            .exchanges
            .iter()
            .map(|e| {
                let c = &e.counts;
                (
                    e.consumer.as_str(),
                    e.resource.as_str(),
                    e.kind.as_str(),
                    c.total,
                    c.answered,
                    c.not_found,
                    c.refused,
                    c.failed,
                    c.records,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("civil-affairs", LIC, "query", 2, 1, 0, 0, 1, 3),
                ("civil-affairs", REG, "delivery", 1, 1, 0, 0, 0, 1),
                ("civil-affairs", REG, "query", 6, 5, 1, 0, 0, 5),
                ("human-resources", REG, "query", 2, 0, 0, 2, 0, 0),
            ]
        );
    }

    #[test]
    fn refusals_by_reason_and_not_found_rates() {
        let r = sample().report();
        assert_eq!(
            r.reasons
                .iter()
                .map(|x| (
                    x.count,
                    x.outcome.as_str(),
                    x.consumer.as_str(),
                    x.code.as_str()
                ))
                .collect::<Vec<_>>(),
            [
                (2, "refused", "human-resources", "PERMISSION_DENIED"),
                (1, "failed", "civil-affairs", "UNAVAILABLE"),
            ]
        );
        let civil = &r.consumers[0];
        // Six answered queries and one not found; the delivery does not count.
        assert_eq!(civil.not_found_rate, Some(1.0 / 7.0));
        assert_eq!(r.consumers[1].not_found_rate, None);
    }

    #[test]
    fn distinct_subjects_asked_and_reached() {
        let r = sample().report();
        let civil = &r.consumers[0];
        // Asked: 0..=3, 99 (not found), 5 (failed), 10, 11 (search), 12 (delivery).
        assert_eq!(civil.subjects_asked, 9);
        // Reached: all but 99 and 5.
        assert_eq!(civil.subjects_reached, 7);
        assert!(!civil.subjects_at_least);
        let hr = &r.consumers[1];
        assert_eq!((hr.subjects_asked, hr.subjects_reached), (1, 0));
    }

    #[test]
    fn a_subject_first_asked_then_reached_counts_once_as_reached() {
        let mut s = Summary::new();
        s.add(&entry("c", REG, outcome::REFUSED, 1));
        s.add(&entry("c", REG, outcome::ANSWERED, 1));
        s.add(&entry("c", REG, outcome::ANSWERED, 1));
        let c = &s.report().consumers[0];
        assert_eq!((c.subjects_asked, c.subjects_reached), (1, 1));
    }

    #[test]
    fn beyond_the_cap_counts_are_lower_bounds() {
        let mut s = Summary::with_subject_cap(3);
        for i in 0..10 {
            s.add(&entry("c", REG, outcome::ANSWERED, i));
        }
        let r = s.report();
        let c = &r.consumers[0];
        assert_eq!(c.subjects_asked, 3);
        assert!(c.subjects_at_least);
        assert!(r.to_text().contains("≥3"), "{}", r.to_text());
    }

    #[test]
    fn latency_percentiles_of_routed_queries() {
        let mut s = Summary::new();
        for i in 1..=1000u32 {
            let mut e = entry("c", REG, outcome::ANSWERED, i);
            e.latency_micros = i64::from(i) * 100;
            s.add(&e);
        }
        // Refusals and deliveries do not count.
        let mut refused = entry("c", REG, outcome::REFUSED, 1);
        refused.latency_micros = 1_000_000_000;
        s.add(&refused);
        let r = s.report();
        assert_eq!(r.latency.len(), 2);
        let all = &r.latency[0];
        assert_eq!((all.resource.as_str(), all.count), ("", 1000));
        let near = |got: u64, want: u64| got.abs_diff(want) * 100 <= want;
        assert!(near(all.p50_micros, 50_000), "{all:?}");
        assert!(near(all.p90_micros, 90_000), "{all:?}");
        assert!(near(all.p99_micros, 99_000), "{all:?}");
        assert_eq!(all.max_micros, 100_000, "the maximum is exact");
        assert_eq!(r.latency[1].resource, REG);
    }

    #[test]
    fn csv_and_json_carry_the_same_numbers() {
        let r = sample().report();
        let csv = r.to_csv();
        assert!(csv.starts_with(
            "table,consumer,provider,resource,kind,outcome,code,reason,metric,value\n"
        ));
        assert!(csv.contains(&format!(
            "exchanges,civil-affairs,public-security,{REG},query,,,,not_found,1\n"
        )));
        assert!(
            csv.contains(
                "refusals,human-resources,,,,refused,PERMISSION_DENIED,no grant,count,2\n"
            )
        );
        assert!(csv.contains("consumers,civil-affairs,,,,,,,subjects_reached,7\n"));
        let header_cols = csv.lines().next().map(|l| l.split(',').count());
        assert!(
            csv.lines()
                .all(|l| Some(l.split(',').count()) == header_cols)
        );
        let j = r.to_json();
        assert_eq!(j["consumers"][0]["subjects_asked"], 9);
        assert_eq!(j["exchanges"][2]["answered"], 5);
        assert_eq!(j["refusals"][0]["reason"], "no grant");
        let text = r.to_text();
        assert!(text.contains("Who exchanged with whom:"), "{text}");
        assert!(text.contains("14.3 %"), "{text}");
    }

    #[test]
    fn tables_align_columns() {
        let mut t = Table::new(&["name", "n"]);
        t.row(vec!["a".into(), "10".into()]);
        t.row(vec!["longer".into(), "7".into()]);
        assert_eq!(t.render(), "  name     n\n  a       10\n  longer   7\n");
    }
}

#[cfg(test)]
mod measure {
    use super::*;

    fn rss_kb() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Memory and time for 10^6 distinct subjects:
    /// `cargo test -p huitong-audit --release --lib measure -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn a_million_distinct_subjects() {
        let before = rss_kb();
        let started = std::time::Instant::now();
        let mut s = Summary::new();
        let mut r = ExchangeRecord {
            kind: kind::QUERY.into(),
            consumer: "c".into(),
            resource: "p/r".into(),
            outcome: outcome::ANSWERED.into(),
            latency_micros: 1000,
            ..Default::default()
        };
        for i in 0..1_000_000u32 {
            let mut subject = vec![0u8; 32];
            subject[..4].copy_from_slice(&i.to_be_bytes());
            r.subject = subject;
            s.add(&r);
        }
        let took = started.elapsed();
        let report = s.report();
        assert_eq!(report.consumers[0].subjects_asked, 1_000_000);
        println!(
            "10^6 entries, 10^6 distinct subjects: {:?}, {} MB more resident",
            took,
            (rss_kb().saturating_sub(before)) / 1024
        );
    }
}
