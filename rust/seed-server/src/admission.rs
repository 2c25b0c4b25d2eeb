//! Admission control: requests in flight in the process, every worker's together, against
//! --max-concurrent-requests. Beyond it a request is refused at once (api.rs answers it 429 with
//! Retry-After) rather than queued for longer than any client waits: TEI's cap, and the request
//! bound of embbench's Python servers (embbench/servers/admission.py), per process as theirs.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

/// The cap on requests in flight in the process, every worker's together.
pub struct Admission {
    limit: usize,
    in_flight: AtomicUsize,
    rejected: AtomicUsize,
}

impl Admission {
    pub fn new(limit: usize) -> Admission {
        Admission {
            limit,
            in_flight: AtomicUsize::new(0),
            rejected: AtomicUsize::new(0),
        }
    }

    /// A slot, held until the ticket is dropped: on every way out of the handler (its answer,
    /// an error, or actix dropping the handler of a client that went away). At the cap: the
    /// count in flight, and nothing taken.
    pub fn admit(&self) -> Result<Ticket<'_>, usize> {
        // A compare-exchange, not fetch_add-then-undo: that would refuse a request that came
        // while another one's undo was pending, below the cap.
        let mut now = self.in_flight.load(Ordering::Relaxed);
        loop {
            if now >= self.limit {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(now);
            }
            match self.in_flight.compare_exchange_weak(
                now,
                now + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(Ticket(self)),
                Err(seen) => now = seen,
            }
        }
    }

    /// For /info, under the Python servers' names (their `admission` there).
    pub fn stats(&self) -> Value {
        json!({
            "requests_in_flight": self.in_flight.load(Ordering::Relaxed),
            "rejected": self.rejected.load(Ordering::Relaxed),
        })
    }
}

/// One admitted request's slot, given back when dropped.
pub struct Ticket<'a>(&'a Admission);

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_refuses_beyond_the_cap_and_a_dropped_ticket_frees_its_slot() {
        let admission = Admission::new(2);
        let first = admission.admit().expect("a free slot");
        let second = admission.admit().expect("a free slot");
        assert_eq!(admission.admit().err(), Some(2));
        drop(first);
        let third = admission.admit().expect("the slot given back");
        assert_eq!(admission.stats()["requests_in_flight"].as_u64(), Some(2));
        drop(second);
        drop(third);
        let stats = admission.stats();
        assert_eq!(stats["requests_in_flight"].as_u64(), Some(0));
        assert_eq!(stats["rejected"].as_u64(), Some(1));
    }
}
