//! Rate limits per consumer and per (consumer, resource), declared in the policy file: token
//! buckets, so that a department may burst briefly but not sustain more than its share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use huitong_core::{DeptId, ResourceId};

/// One `[[quotas]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaRule {
    pub consumer: DeptId,
    /// `None`: all of the consumer's exchanges together.
    pub resource: Option<ResourceId>,
    pub per_second: f64,
    pub burst: f64,
}

/// A refused exchange: which quota, and when a token will be there again.
#[derive(Debug, Clone, PartialEq)]
pub struct OverQuota {
    pub scope: String,
    pub per_second: f64,
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

type Scope = (DeptId, Option<ResourceId>);

/// The quotas in force and their buckets.
#[derive(Debug, Default)]
pub struct Quotas {
    rules: RwLock<Arc<Vec<QuotaRule>>>,
    // Held only to update a few numbers; never across an await.
    buckets: Mutex<HashMap<Scope, Bucket>>,
}

impl Quotas {
    pub fn new(rules: Vec<QuotaRule>) -> Quotas {
        Quotas {
            rules: RwLock::new(Arc::new(rules)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces the rules; buckets of scopes that still have a rule keep their tokens.
    pub fn replace(&self, rules: Vec<QuotaRule>) {
        let rules = Arc::new(rules);
        let mut buckets = match self.buckets.lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        };
        buckets.retain(|(c, r), _| rules.iter().any(|q| &q.consumer == c && &q.resource == r));
        match self.rules.write() {
            Ok(mut g) => *g = rules,
            Err(p) => *p.into_inner() = rules,
        }
    }

    /// Takes one token from every quota that covers this exchange, or none if any is empty.
    pub fn check(
        &self,
        consumer: &DeptId,
        resource: &ResourceId,
        now: Instant,
    ) -> Result<(), OverQuota> {
        let rules = match self.rules.read() {
            Ok(r) => Arc::clone(&r),
            Err(p) => Arc::clone(&p.into_inner()),
        };
        let applicable: Vec<&QuotaRule> = rules
            .iter()
            .filter(|q| {
                &q.consumer == consumer && q.resource.as_ref().is_none_or(|r| r == resource)
            })
            .collect();
        if applicable.is_empty() {
            return Ok(());
        }
        let mut buckets = match self.buckets.lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        };
        let mut refill = Vec::with_capacity(applicable.len());
        for q in &applicable {
            let key = (q.consumer.clone(), q.resource.clone());
            let b = buckets.get(&key).copied().unwrap_or(Bucket {
                tokens: q.burst,
                at: now,
            });
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            let tokens = (b.tokens + elapsed * q.per_second).min(q.burst);
            if tokens < 1.0 {
                let wait = (1.0 - tokens) / q.per_second;
                return Err(OverQuota {
                    scope: match &q.resource {
                        Some(r) => format!("{r}"),
                        None => "all resources".to_owned(),
                    },
                    per_second: q.per_second,
                    retry_after: Duration::from_secs_f64(wait.clamp(0.001, 3600.0)),
                });
            }
            refill.push((key, tokens));
        }
        for (key, tokens) in refill {
            buckets.insert(
                key,
                Bucket {
                    tokens: tokens - 1.0,
                    at: now,
                },
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(resource: Option<&str>, per_second: f64, burst: f64) -> QuotaRule {
        QuotaRule {
            consumer: DeptId::new("taxation").unwrap(),
            resource: resource.map(|r| ResourceId::parse(r).unwrap()),
            per_second,
            burst,
        }
    }

    #[test]
    fn a_burst_is_allowed_then_the_rate_holds() {
        let q = Quotas::new(vec![rule(None, 2.0, 3.0)]);
        let (c, r) = (
            DeptId::new("taxation").unwrap(),
            ResourceId::parse("a/b").unwrap(),
        );
        let t0 = Instant::now();
        for _ in 0..3 {
            q.check(&c, &r, t0).unwrap();
        }
        let e = q.check(&c, &r, t0).unwrap_err();
        assert!(e.retry_after <= Duration::from_millis(500) && e.retry_after > Duration::ZERO);
        q.check(&c, &r, t0 + Duration::from_millis(500)).unwrap();
        assert!(q.check(&c, &r, t0 + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn others_and_other_resources_are_not_limited() {
        let q = Quotas::new(vec![rule(Some("a/b"), 1.0, 1.0)]);
        let c = DeptId::new("taxation").unwrap();
        let t0 = Instant::now();
        q.check(&c, &ResourceId::parse("a/b").unwrap(), t0).unwrap();
        assert!(q.check(&c, &ResourceId::parse("a/b").unwrap(), t0).is_err());
        q.check(&c, &ResourceId::parse("a/c").unwrap(), t0).unwrap();
        q.check(
            &DeptId::new("civil-affairs").unwrap(),
            &ResourceId::parse("a/b").unwrap(),
            t0,
        )
        .unwrap();
    }

    #[test]
    fn a_refusal_takes_no_token_from_the_other_quotas() {
        let q = Quotas::new(vec![rule(None, 1.0, 2.0), rule(Some("a/b"), 1.0, 1.0)]);
        let c = DeptId::new("taxation").unwrap();
        let t0 = Instant::now();
        q.check(&c, &ResourceId::parse("a/b").unwrap(), t0).unwrap();
        assert!(q.check(&c, &ResourceId::parse("a/b").unwrap(), t0).is_err());
        // The consumer-wide bucket still has its second token.
        q.check(&c, &ResourceId::parse("a/c").unwrap(), t0).unwrap();
    }
}
