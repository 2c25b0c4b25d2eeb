//! Where one request's time went, on the answer: `Server-Timing` (W3C; milliseconds, three
//! decimals), `X-Batch-Size` and `X-Request-Id`, the contract of embbench's Python servers
//! (embbench/servers/timing.py). Phases here: `admission` (the cap's check, then the wait for
//! the worker behind the requests admitted before: api.rs `admit`), `lock` (waiting for the
//! model's lock), `tokenize` and `forward` (both under the lock, as the article's handler ran
//! them), `serialize` (the JSON body) and `total` (from the handler's start to the body being
//! ready). Off with `--no-server-timing`, to measure what it costs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");
const BATCH_SIZE: HeaderName = HeaderName::from_static("x-batch-size");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// `name;dur=ms, ...` of (name, duration) pairs, in the order given.
pub fn format_server_timing(phases: &[(&str, Duration)]) -> String {
    let mut text = String::with_capacity(24 * phases.len());
    for (index, (name, took)) in phases.iter().enumerate() {
        if index > 0 {
            text.push_str(", ");
        }
        text.push_str(name);
        text.push_str(&format!(";dur={:.3}", took.as_secs_f64() * 1000.0));
    }
    text
}

/// One request's phases so far. `id` is None when timing is off: nothing is added then.
pub struct RequestTimer {
    started: Instant,
    id: Option<HeaderValue>,
    pub admission: Duration,
    pub lock: Duration,
    pub tokenize: Duration,
    pub forward: Duration,
    pub serialize: Duration,
    pub batch_size: usize,
}

impl RequestTimer {
    /// Started at the handler's entry; the client's X-Request-Id is echoed, else `<pid>-<n>`.
    pub fn start(req: &HttpRequest, on: bool) -> RequestTimer {
        let id = on.then(|| {
            req.headers().get(REQUEST_ID).cloned().unwrap_or_else(|| {
                let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
                let made = format!("{}-{n}", std::process::id());
                HeaderValue::from_str(&made).expect("digits and a dash")
            })
        });
        RequestTimer {
            started: Instant::now(),
            id,
            admission: Duration::ZERO,
            lock: Duration::ZERO,
            tokenize: Duration::ZERO,
            forward: Duration::ZERO,
            serialize: Duration::ZERO,
            batch_size: 0,
        }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// The answer with the three headers (total: until now, its body being ready).
    pub fn finish(&self, mut reply: HttpResponse) -> HttpResponse {
        let Some(id) = &self.id else {
            return reply;
        };
        let text = format_server_timing(&[
            ("admission", self.admission),
            ("lock", self.lock),
            ("tokenize", self.tokenize),
            ("forward", self.forward),
            ("serialize", self.serialize),
            ("total", self.started.elapsed()),
        ]);
        let headers = reply.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&text) {
            headers.insert(SERVER_TIMING, value);
        }
        headers.insert(BATCH_SIZE, HeaderValue::from(self.batch_size));
        headers.insert(REQUEST_ID, id.clone());
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w3c_server_timing_in_milliseconds() {
        let text = format_server_timing(&[
            ("lock", Duration::from_micros(1234)),
            ("total", Duration::from_millis(12)),
        ]);
        assert_eq!(text, "lock;dur=1.234, total;dur=12.000");
        assert_eq!(format_server_timing(&[]), "");
    }
}
