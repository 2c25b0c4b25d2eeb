//! Where a request's time goes around the model's lock: cheap counters, always on, read by
//! GET /stats. A handful of relaxed atomic additions per request (tens of nanoseconds against
//! forward passes of milliseconds), so the server measured is the server that runs.
//!
//! Totals only, never per-request lists: a client takes one snapshot before a load window and
//! one after, and divides the differences (wait / requests, hold / wall time = the mean number
//! of forward passes running at once, ...).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// One request's times, as `Guarded::embed` measured them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timing {
    /// From asking for the lock to holding it.
    pub wait: Duration,
    /// From holding the lock to letting it go: tokenisation, forward pass and pooling.
    pub hold: Duration,
    /// Tokenising, inside the lock (as the article's `predict` did it).
    pub tokenize: Duration,
    /// Forward passes and pooling, inside the lock.
    pub forward: Duration,
}

pub struct LockStats {
    started: Instant,
    requests: AtomicU64,
    texts: AtomicU64,
    wait_ns: AtomicU64,
    hold_ns: AtomicU64,
    tokenize_ns: AtomicU64,
    forward_ns: AtomicU64,
    handler_ns: AtomicU64,
    max_wait_ns: AtomicU64,
    holding: AtomicU64,
    max_holding: AtomicU64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Default for LockStats {
    fn default() -> Self {
        LockStats::new()
    }
}

impl LockStats {
    pub fn new() -> LockStats {
        LockStats {
            started: Instant::now(),
            requests: AtomicU64::new(0),
            texts: AtomicU64::new(0),
            wait_ns: AtomicU64::new(0),
            hold_ns: AtomicU64::new(0),
            tokenize_ns: AtomicU64::new(0),
            forward_ns: AtomicU64::new(0),
            handler_ns: AtomicU64::new(0),
            max_wait_ns: AtomicU64::new(0),
            holding: AtomicU64::new(0),
            max_holding: AtomicU64::new(0),
        }
    }

    /// A request now holds the model (call `released` when it lets go).
    pub fn acquired(&self) {
        let now = self.holding.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_holding.fetch_max(now, Ordering::Relaxed);
    }

    pub fn released(&self) {
        self.holding.fetch_sub(1, Ordering::Relaxed);
    }

    /// One request's pass through the lock, `texts` inputs.
    pub fn record(&self, texts: usize, timing: &Timing) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.texts.fetch_add(texts as u64, Ordering::Relaxed);
        let wait = nanos(timing.wait);
        self.wait_ns.fetch_add(wait, Ordering::Relaxed);
        self.max_wait_ns.fetch_max(wait, Ordering::Relaxed);
        self.hold_ns
            .fetch_add(nanos(timing.hold), Ordering::Relaxed);
        self.tokenize_ns
            .fetch_add(nanos(timing.tokenize), Ordering::Relaxed);
        self.forward_ns
            .fetch_add(nanos(timing.forward), Ordering::Relaxed);
    }

    /// A handler's whole time for a request that was embedded: reading and parsing the body,
    /// the lock, and the JSON reply.
    pub fn record_handler(&self, took: Duration) {
        self.handler_ns.fetch_add(nanos(took), Ordering::Relaxed);
    }

    /// The /stats reply: totals since the server started, in nanoseconds.
    pub fn snapshot(&self) -> Value {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        json!({
            "uptime_ns": nanos(self.started.elapsed()),
            "requests": get(&self.requests),
            "texts": get(&self.texts),
            "lock_wait_ns": get(&self.wait_ns),
            "lock_hold_ns": get(&self.hold_ns),
            "tokenize_ns": get(&self.tokenize_ns),
            "forward_ns": get(&self.forward_ns),
            "handler_ns": get(&self.handler_ns),
            "max_lock_wait_ns": get(&self.max_wait_ns),
            "holding": get(&self.holding),
            "max_holding": get(&self.max_holding),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up() {
        let stats = LockStats::new();
        let ms = Duration::from_millis;
        stats.acquired();
        stats.acquired();
        stats.released();
        let timing = Timing {
            wait: ms(2),
            hold: ms(5),
            tokenize: ms(1),
            forward: ms(4),
        };
        stats.record(3, &timing);
        stats.record(
            1,
            &Timing {
                wait: ms(7),
                ..timing
            },
        );
        let snap = stats.snapshot();
        assert_eq!(snap["requests"], 2);
        assert_eq!(snap["texts"], 4);
        assert_eq!(snap["lock_wait_ns"], 9_000_000);
        assert_eq!(snap["max_lock_wait_ns"], 7_000_000);
        assert_eq!(snap["lock_hold_ns"], 10_000_000);
        assert_eq!(
            (snap["holding"].clone(), snap["max_holding"].clone()),
            (1.into(), 2.into())
        );
    }
}
