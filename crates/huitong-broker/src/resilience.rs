//! What stands between the exchange path and one department's adapter: a bound on the work sent
//! to it, a circuit breaker, and a budget for retries.
//!
//! Each protects the others' share of the broker. Without the bound, a slow adapter collects
//! every exchange sent its way until the broker's memory is gone; without the breaker, a dead
//! one makes every consumer wait for a connect timeout; without the budget, retries against a
//! struggling adapter multiply its load exactly when it can least bear it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

/// Limits for one adapter, from the broker config.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Calls in progress at once.
    pub concurrency: usize,
    /// Exchanges waiting for one of those slots; more are refused at once.
    pub queue: usize,
    /// Consecutive failures that open the breaker.
    pub breaker_failures: u32,
    /// How long an opened breaker refuses before it lets one probe through; doubled after
    /// each failed probe up to `breaker_max_open`.
    pub breaker_open: Duration,
    pub breaker_max_open: Duration,
    /// Retries allowed per first attempt, as a fraction (0.2: one retry per five calls).
    pub retry_ratio: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            concurrency: 64,
            queue: 256,
            breaker_failures: 5,
            breaker_open: Duration::from_secs(2),
            breaker_max_open: Duration::from_secs(30),
            retry_ratio: 0.2,
        }
    }
}

/// Why a call to an adapter was not even tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The breaker is open; try again after this long.
    BreakerOpen(Duration),
    /// Too many exchanges are already waiting for this adapter.
    Saturated,
    /// No slot came free before the exchange's deadline.
    Deadline,
}

/// One adapter's bound, breaker and retry budget.
#[derive(Debug)]
pub struct AdapterGuard {
    limits: Limits,
    slots: Semaphore,
    /// Exchanges holding or waiting for a slot.
    outstanding: AtomicUsize,
    breaker: Breaker,
    budget: RetryBudget,
}

/// Held while a call to the adapter runs; gives back the slot when dropped.
#[derive(Debug)]
pub struct Admitted<'a> {
    guard: &'a AdapterGuard,
    _permit: SemaphorePermit<'a>,
    _outstanding: Outstanding<'a>,
    probe: bool,
}

impl AdapterGuard {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            slots: Semaphore::new(limits.concurrency.max(1)),
            outstanding: AtomicUsize::new(0),
            breaker: Breaker::new(limits),
            budget: RetryBudget::new(limits.retry_ratio),
        }
    }

    /// Waits (until `wait` runs out) for a slot, unless the breaker is open or too many
    /// exchanges wait already.
    pub async fn admit(&self, wait: Duration) -> Result<Admitted<'_>, Refusal> {
        let probe = self.breaker.admit(Instant::now())?;
        let outstanding = Outstanding::enter(&self.outstanding);
        if outstanding.count > self.limits.concurrency + self.limits.queue {
            self.breaker.abandon(probe);
            return Err(Refusal::Saturated);
        }
        match tokio::time::timeout(wait, self.slots.acquire()).await {
            Ok(Ok(permit)) => Ok(Admitted {
                guard: self,
                _permit: permit,
                _outstanding: outstanding,
                probe,
            }),
            // The semaphore is never closed; a closed one means nobody may call.
            Ok(Err(_)) | Err(_) => {
                self.breaker.abandon(probe);
                Err(Refusal::Deadline)
            }
        }
    }

    /// A first attempt was made: earns part of a retry.
    pub fn attempted(&self) {
        self.budget.deposit();
    }

    /// Whether a retry may be spent now.
    pub fn may_retry(&self) -> bool {
        self.budget.withdraw()
    }

    /// The adapter is known to be down (its health stream broke): open the breaker now rather
    /// than after more consumers have waited on it.
    pub fn trip(&self) {
        self.breaker.trip(Instant::now());
    }

    /// The adapter reports itself serving again: let the next call through at once.
    pub fn reset(&self) {
        self.breaker.reset();
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }
}

impl Admitted<'_> {
    /// Records how the call went: `failed` is a failure of the adapter (unreachable, too
    /// slow), not a refusal it gave for a good reason.
    pub fn finish(self, failed: bool) {
        self.guard
            .breaker
            .record(self.probe, failed, Instant::now());
    }
}

#[derive(Debug)]
struct Outstanding<'a> {
    counter: &'a AtomicUsize,
    count: usize,
}

impl<'a> Outstanding<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        let count = counter.fetch_add(1, Ordering::AcqRel) + 1;
        Self { counter, count }
    }
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The breaker's state, as exported in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// 0 closed, 1 half-open, 2 open: larger is worse, for alerting on `> 0`.
    pub fn as_gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

#[derive(Debug)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
        open_for: Duration,
    },
    /// One probe is out; others are refused until it comes back (or is abandoned).
    HalfOpen {
        open_for: Duration,
    },
}

/// Opens after consecutive failures; after a while lets one probe through, which closes it or
/// opens it for twice as long.
#[derive(Debug)]
struct Breaker {
    state: Mutex<State>,
    failures: u32,
    open_for: Duration,
    max_open_for: Duration,
}

impl Breaker {
    fn new(l: Limits) -> Self {
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            failures: l.breaker_failures.max(1),
            open_for: l.breaker_open,
            max_open_for: l.breaker_max_open.max(l.breaker_open),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few words replaced whole; a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ok(true) for the probe of a half-open breaker, Ok(false) for an ordinary call.
    fn admit(&self, now: Instant) -> Result<bool, Refusal> {
        let mut s = self.lock();
        match *s {
            State::Closed { .. } => Ok(false),
            State::Open { until, open_for } => {
                if now >= until {
                    *s = State::HalfOpen { open_for };
                    Ok(true)
                } else {
                    Err(Refusal::BreakerOpen(until - now))
                }
            }
            // The probe decides; until then the adapter is treated as down.
            State::HalfOpen { .. } => Err(Refusal::BreakerOpen(Duration::from_millis(100))),
        }
    }

    fn record(&self, probe: bool, failed: bool, now: Instant) {
        let mut s = self.lock();
        match (&*s, failed) {
            (State::Closed { .. }, false) => *s = State::Closed { failures: 0 },
            (_, false) => {
                tracing::info!("circuit breaker closed: the adapter answers again");
                *s = State::Closed { failures: 0 };
            }
            (State::Closed { failures }, true) => {
                let failures = failures + 1;
                *s = if failures >= self.failures {
                    tracing::warn!(
                        failures,
                        open_ms = self.open_for.as_millis() as u64,
                        "circuit breaker opened"
                    );
                    State::Open {
                        until: now + self.open_for,
                        open_for: self.open_for,
                    }
                } else {
                    State::Closed { failures }
                };
            }
            (State::HalfOpen { open_for }, true) if probe => {
                let open_for = (*open_for * 2).min(self.max_open_for);
                tracing::warn!(
                    open_ms = open_for.as_millis() as u64,
                    "circuit breaker probe failed; open again"
                );
                *s = State::Open {
                    until: now + open_for,
                    open_for,
                };
            }
            // A call admitted before the breaker opened failed too: nothing new to learn.
            _ => {}
        }
    }

    /// A probe that never reached the adapter (no slot, saturated) must not leave the breaker
    /// half-open forever.
    fn abandon(&self, probe: bool) {
        if probe {
            let mut s = self.lock();
            if let State::HalfOpen { open_for } = *s {
                *s = State::Open {
                    until: Instant::now(),
                    open_for,
                };
            }
        }
    }

    fn trip(&self, now: Instant) {
        let mut s = self.lock();
        if matches!(*s, State::Closed { .. }) {
            tracing::warn!(
                open_ms = self.open_for.as_millis() as u64,
                "circuit breaker opened: the adapter's health stream broke"
            );
            *s = State::Open {
                until: now + self.open_for,
                open_for: self.open_for,
            };
        }
    }

    fn reset(&self) {
        let mut s = self.lock();
        if !matches!(*s, State::Closed { .. }) {
            tracing::info!("circuit breaker closed: the adapter reports itself serving");
        }
        *s = State::Closed { failures: 0 };
    }

    fn state(&self) -> BreakerState {
        match *self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

/// Retries as a fraction of first attempts, in thousandths of a retry so that it needs no lock:
/// every first attempt deposits `ratio`, a retry withdraws one whole, and the balance is capped
/// so that a quiet hour does not pay for a storm.
#[derive(Debug)]
struct RetryBudget {
    balance: AtomicU64,
    deposit: u64,
}

const MILLI: u64 = 1000;
/// Retries available at start and after quiet periods.
const BUDGET_FLOOR: u64 = 10 * MILLI;
const BUDGET_CAP: u64 = 100 * MILLI;

impl RetryBudget {
    fn new(ratio: f64) -> Self {
        Self {
            balance: AtomicU64::new(BUDGET_FLOOR),
            deposit: (ratio.clamp(0.0, 1.0) * MILLI as f64) as u64,
        }
    }

    fn deposit(&self) {
        let _ = self
            .balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some((b + self.deposit).min(BUDGET_CAP))
            });
    }

    fn withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                b.checked_sub(MILLI)
            })
            .is_ok()
    }
}

/// A jittered exponential backoff for retry `n` (0-based): uniformly random in
/// `[0, base·2ⁿ]` ("full jitter"), so that consumers who failed together do not retry
/// together.
pub fn backoff(n: u32, base: Duration) -> Duration {
    let ceiling = base.saturating_mul(1 << n.min(10));
    let nanos = ceiling.as_nanos().min(u128::from(u64::MAX)) as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(jitter() % nanos)
}

/// Cheap randomness for jitter (not for anything secret): a per-process counter mixed through
/// SplitMix64, seeded from the clock.
fn jitter() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut z = STATE
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(seed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
