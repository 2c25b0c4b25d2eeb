//! The HTTP API, the same contract as embbench's Python servers: POST /predict, POST /embed
//! (TEI's shape), GET /health, GET /info; errors are JSON `{"error", "error_type"}`, never a
//! panic or a plain-text body for bad input. Beyond --max-concurrent-requests in flight, a
//! request is answered 429 with Retry-After at once (admission.rs), as TEI and the Python servers
//! (embbench/servers/admission.py) answer it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use actix_web::http::header::{HeaderValue, CONTENT_LENGTH, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::rt::task::yield_now;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::RwLock;

use crate::admission::{Admission, Ticket};
use crate::model::{Bert, EmbedError, Phases};
use crate::stats::{LockStats, Timing};
use crate::timing::RequestTimer;

#[derive(serde::Serialize)]
struct Predicted {
    embeddings: Vec<Vec<f32>>,
}

/// Inputs per /embed request, as TEI's --max-client-batch-size.
pub const MAX_CLIENT_BATCH: usize = 64;
/// An over-long body is read (and dropped) up to this much so that the client, still writing,
/// gets the 413 instead of a reset connection; past it the connection is simply closed.
const DRAIN_LIMIT: usize = 64 << 20;
/// What a 429 tells its client to wait, in seconds (the Python servers' RETRY_AFTER_S).
const RETRY_AFTER_S: &str = "1";

/// One model behind the lock the article measured, and the counters of its lock.
pub struct Guarded {
    lock: ModelLock,
    stats: Arc<LockStats>,
}

enum ModelLock {
    /// `tokio::sync::RwLock`, the article's main choice. Only the read side is ever taken, so
    /// concurrent requests never wait on each other here.
    RwLock(RwLock<Bert>),
    /// `std::sync::Mutex`, the article's import (`use std::sync::Mutex;`) for its Mutex runs.
    /// A std Mutex (not tokio's) is what "shared behind a Mutex" measured: a worker that finds
    /// the model taken blocks its whole thread (its event loop too) until the model is free,
    /// and requests run strictly one at a time. tokio's Mutex would also serialise them, but
    /// would let the waiting worker serve other connections meanwhile: a different design.
    Mutex(Mutex<Bert>),
}

impl Guarded {
    /// `stats` is the process's: per-worker models all count into the same one.
    pub fn new(bert: Bert, lock: LockKind, stats: Arc<LockStats>) -> Guarded {
        let lock = match lock {
            LockKind::Rwlock => ModelLock::RwLock(RwLock::new(bert)),
            LockKind::Mutex => ModelLock::Mutex(Mutex::new(bert)),
        };
        Guarded { lock, stats }
    }

    /// Take the lock, then embed, as the article's handler did (`model.bert.read().await`, then
    /// `predict`): the forward pass runs right in the async handler, on the actix worker's own
    /// thread, so that worker serves nothing else meanwhile. That IS what is being measured
    /// (workers = how many forward passes may run at once), so it is kept, not moved to
    /// `web::block`. The time waiting for the lock and holding it go to the counters, and
    /// come back with the vectors (the answer's Server-Timing).
    pub async fn embed(
        &self,
        texts: &[String],
        truncate: Option<bool>,
    ) -> Result<(Vec<Vec<f32>>, Timing), ApiError> {
        let run = |bert: &Bert| {
            catch_unwind(AssertUnwindSafe(|| bert.embed_timed(texts, truncate))).unwrap_or_else(
                |_| {
                    Err(EmbedError::Other(anyhow::anyhow!(
                        "the forward pass panicked"
                    )))
                },
            )
        };
        let asked = Instant::now();
        let (result, acquired, released) = match &self.lock {
            ModelLock::RwLock(lock) => {
                let bert = lock.read().await;
                let acquired = self.hold();
                let result = run(&bert);
                // Counted as let go before it is: the next holder's count never overlaps.
                let released = self.release();
                drop(bert);
                (result, acquired, released)
            }
            // The model is never mutated, so a poisoned lock (a panic caught above cannot poison
            // it, but be safe) still holds a usable model.
            ModelLock::Mutex(lock) => {
                let bert = lock.lock().unwrap_or_else(PoisonError::into_inner);
                let acquired = self.hold();
                let result = run(&bert);
                // Counted as let go before it is: the next holder's count never overlaps.
                let released = self.release();
                drop(bert);
                (result, acquired, released)
            }
        };
        let phases = result.as_ref().map_or(Phases::default(), |(_, p)| *p);
        let timing = Timing {
            wait: acquired - asked,
            hold: released - acquired,
            tokenize: phases.tokenize,
            forward: phases.forward,
        };
        self.stats.record(texts.len(), &timing);
        result
            .map(|(vectors, _)| (vectors, timing))
            .map_err(|err| match err {
                EmbedError::TooLong { tokens, limit } => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "input_too_long",
                    format!("input has {tokens} tokens; the model accepts at most {limit}"),
                ),
                EmbedError::Other(err) => ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("{err:#}"),
                ),
            })
    }

    fn hold(&self) -> Instant {
        self.stats.acquired();
        Instant::now()
    }

    fn release(&self) -> Instant {
        let now = Instant::now();
        self.stats.released();
        now
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LockKind {
    Rwlock,
    Mutex,
}

impl LockKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LockKind::Rwlock => "rwlock",
            LockKind::Mutex => "mutex",
        }
    }
}

/// What every worker shares: settings and the /info reply.
pub struct ServerState {
    pub max_body_bytes: usize,
    pub info: Value,
    /// Requests in flight, against --max-concurrent-requests.
    pub admission: Admission,
    /// Models loaded so far (1 when shared; one per worker that started, when per-worker).
    pub models_loaded: Arc<AtomicUsize>,
    /// Lock and phase counters of every model of the process (GET /stats).
    pub stats: Arc<LockStats>,
    /// Server-Timing, X-Batch-Size and X-Request-Id on every /predict and /embed answer.
    pub server_timing: bool,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error_type: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error_type: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            error_type,
            message: message.into(),
        }
    }

    fn validation(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status)
            .json(json!({"error": self.message, "error_type": self.error_type}))
    }
}

/// The body as JSON. The raw payload is read here, not through `web::Json`, so that each kind
/// of failure gets its own status and a JSON body: 413 over the limit (by Content-Length or as
/// read), 400 for bytes that are not JSON. Any content type is accepted, as by the Python
/// servers.
async fn read_json(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Value, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut over = declared.is_some_and(|n| n > limit as u64);
    let mut body = BytesMut::new();
    let mut read = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk: Bytes = chunk.map_err(|err| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "payload",
                format!("reading the body: {err}"),
            )
        })?;
        read += chunk.len();
        over |= read > limit;
        if !over {
            body.extend_from_slice(&chunk);
        } else if read > DRAIN_LIMIT {
            break;
        }
    }
    if over {
        let size = declared.map_or(read as u64, |n| n.max(read as u64));
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("body of {size} bytes exceeds {limit}"),
        ));
    }
    serde_json::from_slice(&body).map_err(|err| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("body is not valid JSON: {err}"),
        )
    })
}

fn object(payload: &Value) -> Result<&serde_json::Map<String, Value>, ApiError> {
    payload
        .as_object()
        .ok_or_else(|| ApiError::validation("body must be a JSON object"))
}

fn field<'a>(
    payload: &'a serde_json::Map<String, Value>,
    key: &str,
) -> Result<&'a Value, ApiError> {
    payload
        .get(key)
        .ok_or_else(|| ApiError::validation(format!("missing field '{key}'")))
}

fn check_not_empty(texts: &[String]) -> Result<(), ApiError> {
    if texts.iter().any(|t| t.trim().is_empty()) {
        return Err(ApiError::validation("input text is empty"));
    }
    Ok(())
}

/// The JSON answer, its serialisation timed, with the timing headers.
fn timed_reply<T: serde::Serialize>(
    timer: &mut RequestTimer,
    state: &ServerState,
    value: &T,
) -> Result<HttpResponse, ApiError> {
    let begun = Instant::now();
    // Serialised as f32 (shortest form), not through serde_json::Value's f64.
    let body = serde_json::to_vec(value).map_err(|err| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("serialising the answer: {err}"),
        )
    })?;
    timer.serialize = begun.elapsed();
    let reply = HttpResponse::Ok()
        .content_type("application/json")
        .body(body);
    state.stats.record_handler(timer.started().elapsed());
    Ok(timer.finish(reply))
}

fn take_timing(timer: &mut RequestTimer, timing: &Timing, inputs: usize) {
    timer.lock = timing.wait;
    timer.tokenize = timing.tokenize;
    timer.forward = timing.forward;
    timer.batch_size = inputs;
}

/// An error answer, with the timing headers too.
fn or_timed_error(timer: &RequestTimer, result: Result<HttpResponse, ApiError>) -> HttpResponse {
    result.unwrap_or_else(|err| timer.finish(err.error_response()))
}

/// Admission, at the handler's entry, before the body is read (as the Python servers admit).
/// An admitted request then yields once to the worker's event loop, so that the worker reads
/// every request that has arrived before it computes this one. The forward pass runs right on
/// the worker's thread (`Guarded::embed`), and actix runs a handler that does not wait to its
/// end as soon as its request is read: without the yield a busy worker would take the next
/// request only once free, no more than one per worker would ever be in flight, and the cap
/// would never be reached while the rest waited unseen in their sockets. The yield costs one
/// turn of the event loop; its wait (behind the requests admitted before, on the same worker)
/// is the `admission` phase. Beyond the cap: the timed 429.
async fn admit<'a>(
    state: &'a ServerState,
    timer: &mut RequestTimer,
) -> Result<Ticket<'a>, HttpResponse> {
    match state.admission.admit() {
        Ok(ticket) => {
            yield_now().await;
            timer.admission = timer.started().elapsed();
            Ok(ticket)
        }
        Err(in_flight) => {
            timer.admission = timer.started().elapsed();
            Err(overloaded(timer, in_flight))
        }
    }
}

/// 429 with Retry-After and the timing headers, the Python servers' body (guard.py `_send_429`).
fn overloaded(timer: &RequestTimer, in_flight: usize) -> HttpResponse {
    let mut reply = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "overloaded",
        format!("{in_flight} requests in flight; retry later"),
    )
    .error_response();
    reply
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_S));
    timer.finish(reply)
}

pub async fn predict(
    req: HttpRequest,
    payload: web::Payload,
    model: web::Data<Guarded>,
    state: web::Data<ServerState>,
) -> HttpResponse {
    let mut timer = RequestTimer::start(&req, state.server_timing);
    let _ticket = match admit(&state, &mut timer).await {
        Ok(ticket) => ticket,
        Err(refused) => return refused,
    };
    let result = predict_timed(&req, payload, &model, &state, &mut timer).await;
    or_timed_error(&timer, result)
}

async fn predict_timed(
    req: &HttpRequest,
    payload: web::Payload,
    model: &Guarded,
    state: &ServerState,
    timer: &mut RequestTimer,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(req, payload, state.max_body_bytes).await?;
    let text = match field(object(&body)?, "text")? {
        Value::String(text) => text.clone(),
        _ => return Err(ApiError::validation("field 'text' must be a string")),
    };
    let texts = [text];
    check_not_empty(&texts)?;
    let (embeddings, timing) = model.embed(&texts, None).await?;
    take_timing(timer, &timing, texts.len());
    timed_reply(timer, state, &Predicted { embeddings })
}

pub async fn embed(
    req: HttpRequest,
    payload: web::Payload,
    model: web::Data<Guarded>,
    state: web::Data<ServerState>,
) -> HttpResponse {
    let mut timer = RequestTimer::start(&req, state.server_timing);
    let _ticket = match admit(&state, &mut timer).await {
        Ok(ticket) => ticket,
        Err(refused) => return refused,
    };
    let result = embed_timed(&req, payload, &model, &state, &mut timer).await;
    or_timed_error(&timer, result)
}

async fn embed_timed(
    req: &HttpRequest,
    payload: web::Payload,
    model: &Guarded,
    state: &ServerState,
    timer: &mut RequestTimer,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(req, payload, state.max_body_bytes).await?;
    let body = object(&body)?;
    let bad_inputs =
        || ApiError::validation("field 'inputs' must be a string or a list of strings");
    let texts: Vec<String> = match field(body, "inputs")? {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(bad_inputs))
            .collect::<Result<_, _>>()?,
        _ => return Err(bad_inputs()),
    };
    if texts.len() > MAX_CLIENT_BATCH {
        // 413 as TEI answers a batch over --max-client-batch-size (and as the Python servers).
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "validation",
            format!("{} inputs exceed {MAX_CLIENT_BATCH}", texts.len()),
        ));
    }
    let truncate = match body.get("truncate") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(flag)) => Some(*flag),
        Some(_) => return Err(ApiError::validation("field 'truncate' must be a boolean")),
    };
    check_not_empty(&texts)?;
    let (embeddings, timing) = model.embed(&texts, truncate).await?;
    take_timing(timer, &timing, texts.len());
    timed_reply(timer, state, &embeddings)
}

/// 200 as soon as this worker serves: its model (and warm-up) was done before it did.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn info(state: web::Data<ServerState>) -> HttpResponse {
    let mut info = state.info.clone();
    info["models_loaded"] = json!(state.models_loaded.load(Ordering::SeqCst));
    info["admission"] = state.admission.stats();
    HttpResponse::Ok().json(info)
}

/// Totals of the lock and phase counters since the server started (see `stats.rs`).
pub async fn stats(state: web::Data<ServerState>) -> HttpResponse {
    HttpResponse::Ok().json(state.stats.snapshot())
}

pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {}", req.path()),
    )
    .error_response()
}

pub async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.path()),
    )
    .error_response()
}
