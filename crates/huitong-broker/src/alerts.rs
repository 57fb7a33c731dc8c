//! The bulk-lookup alert as metrics: every exchange entry the broker records goes through the
//! rule of `huitong_audit::alerts` (the one `huitong audit alerts` applies to the log), and
//! the result is exported per consumer.
//!
//! The lock is held only while the rule counts (no await inside); metrics are set after it is
//! released. Memory is bounded by the rule: each consumer's last hour, capped in subjects.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use huitong_audit::alerts::{AlertKind, Alerts, Levels, Thresholds};
use huitong_proto::v1::ExchangeRecord;

use crate::metrics::Metrics;

/// The alert rule fed by the broker's log, and the metrics it sets.
#[derive(Debug)]
pub struct AlertWatch {
    state: Mutex<State>,
    metrics: Arc<Metrics>,
}

#[derive(Debug)]
struct State {
    rule: Alerts,
    /// (consumer, kind) whose alert is on, to count each rise once.
    active: HashSet<(String, AlertKind)>,
}

/// What to show for one consumer.
struct Shown {
    consumer: String,
    levels: Levels,
    /// (kind, active now, just became active)
    alerts: Vec<(AlertKind, bool, bool)>,
}

impl State {
    fn shown(&mut self, consumer: &str, levels: Levels) -> Shown {
        let mut alerts = Vec::new();
        for k in AlertKind::ALL {
            if self.rule.thresholds().get(k).is_none() {
                continue;
            }
            let on = self.rule.exceeds(&levels, k);
            let key = (consumer.to_owned(), k);
            let raised = if on {
                self.active.insert(key)
            } else {
                self.active.remove(&key);
                false
            };
            alerts.push((k, on, raised));
        }
        Shown {
            consumer: consumer.to_owned(),
            levels,
            alerts,
        }
    }
}

impl AlertWatch {
    pub fn new(thresholds: Thresholds, metrics: Arc<Metrics>) -> AlertWatch {
        AlertWatch {
            state: Mutex::new(State {
                rule: Alerts::new(thresholds),
                active: HashSet::new(),
            }),
            metrics,
        }
    }

    /// Counts an entry the log has recorded.
    pub fn observe(&self, record: &ExchangeRecord) {
        let shown = {
            let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            match s.rule.observe(record) {
                Some(levels) => s.shown(&record.consumer, levels),
                None => return,
            }
        };
        self.publish(&shown);
    }

    /// Moves every consumer's hour to `now_micros`, so that counts fall as time passes
    /// without new entries; consumers with an empty hour are shown as 0.
    pub fn tick(&self, now_micros: i64) {
        let shown: Vec<Shown> = {
            let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let gone = s.rule.advance(now_micros);
            let current: Vec<(String, Levels)> =
                s.rule.levels().map(|(c, l)| (c.to_owned(), l)).collect();
            current
                .into_iter()
                .chain(gone.into_iter().map(|c| (c, Levels::default())))
                .map(|(c, l)| s.shown(&c, l))
                .collect()
        };
        for s in &shown {
            self.publish(s);
        }
    }

    fn publish(&self, s: &Shown) {
        self.metrics
            .consumer_hour(&s.consumer, s.levels.subjects, s.levels.refusals);
        for (k, on, raised) in &s.alerts {
            self.metrics.alert(&s.consumer, k.as_str(), *on, *raised);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(consumer: &str, at: i64, subject: u8, outcome: &str) -> ExchangeRecord {
        ExchangeRecord {
            kind: huitong_audit::record::kind::QUERY.into(),
            consumer: consumer.into(),
            time_micros: at,
            subject: vec![subject; 32],
            outcome: outcome.into(),
            ..Default::default()
        }
    }

    fn scrape(m: &Metrics) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &m.registry()).unwrap();
        out
    }

    #[test]
    fn the_gauges_follow_the_rule_and_fall_back_as_the_hour_passes() {
        let metrics = Arc::new(Metrics::new());
        let w = AlertWatch::new(
            Thresholds {
                subjects_per_hour: Some(2),
                refusals_per_hour: Some(5),
            },
            Arc::clone(&metrics),
        );
        let t0 = 1_764_633_600_000_000;
        for s in 0..3 {
            w.observe(&query("bulk", t0, s, "answered"));
        }
        w.observe(&query("calm", t0, 9, "answered"));
        let m = scrape(&metrics);
        for line in [
            "huitong_consumer_subjects_last_hour{consumer=\"bulk\"} 3",
            "huitong_alert_active{consumer=\"bulk\",kind=\"subjects_per_hour\"} 1",
            "huitong_alert_active{consumer=\"bulk\",kind=\"refusals_per_hour\"} 0",
            "huitong_alerts_raised_total{consumer=\"bulk\",kind=\"subjects_per_hour\"} 1",
            "huitong_alert_active{consumer=\"calm\",kind=\"subjects_per_hour\"} 0",
            "huitong_consumer_subjects_last_hour{consumer=\"calm\"} 1",
        ] {
            assert!(m.lines().any(|l| l == line), "no {line:?} in\n{m}");
        }
        // One more subject: still one rise, not two.
        w.observe(&query("bulk", t0, 4, "answered"));
        w.tick(t0 + 30 * 60_000_000);
        assert!(scrape(&metrics).contains(
            "huitong_alerts_raised_total{consumer=\"bulk\",kind=\"subjects_per_hour\"} 1"
        ));
        w.tick(t0 + 61 * 60_000_000);
        let m = scrape(&metrics);
        assert!(
            m.contains("huitong_alert_active{consumer=\"bulk\",kind=\"subjects_per_hour\"} 0"),
            "{m}"
        );
        assert!(
            m.contains("huitong_consumer_subjects_last_hour{consumer=\"bulk\"} 0"),
            "{m}"
        );
    }
}
