//! seed-server: the article's Rust embedding server (actix-web + candle BERT, all-MiniLM-L6-v2),
//! written anew for embbench so it can be measured beside the Python servers.
//!
//! The article's five configurations:
//!   shared + rwlock                     --sharing shared --lock rwlock
//!   shared + rwlock, no padding/trunc.  --sharing shared --lock rwlock --no-padding-truncation
//!   per-worker + rwlock                 --sharing per-worker --lock rwlock
//!   shared + mutex                      --sharing shared --lock mutex
//!   per-worker + mutex                  --sharing per-worker --lock mutex
//! (the article ran them all with --workers 10 and candle's default thread count).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Condition, Next};
use actix_web::{web, App, HttpServer};
use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use serde_json::json;

use seed_server::admission::Admission;
use seed_server::api::{self, Guarded, LockKind, ServerState};
use seed_server::folder::{self, Asked};
use seed_server::model::{self, Bert, ModelSettings, Padding, Pooling};
use seed_server::stats::LockStats;
use seed_server::threads::configure_pools;

const WARMUP_TEXT: &str =
    "Warming up the model so that the first measured request is not the slowest.";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Sharing {
    /// One model in `web::Data`, created once before the server, shared by every worker.
    Shared,
    /// Each actix worker loads its own model, inside the app factory.
    PerWorker,
}

impl Sharing {
    fn as_str(self) -> &'static str {
        match self {
            Sharing::Shared => "shared",
            Sharing::PerWorker => "per-worker",
        }
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "seed-server",
    version,
    about = "actix-web + candle BERT sentence-embedding server"
)]
struct Args {
    /// Folder with config.json, tokenizer.json and model.safetensors (or pytorch_model.bin).
    #[arg(long)]
    model_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// actix-web workers (event-loop threads); each runs one forward pass at a time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    workers: u16,
    /// Compute threads of the process (candle's gemm parallelism, its elementwise pool and the
    /// rayon global pool), shared by all workers.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    threads: u16,
    /// Threads of the rayon global pool only (default: --threads). An experiment, not a tuning
    /// knob: it tells gemm's parallelism (--threads) from the pool that every worker's layer
    /// norms hop to.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pool_threads: Option<u16>,
    #[arg(long, value_enum, default_value_t = LockKind::Rwlock)]
    lock: LockKind,
    #[arg(long, value_enum, default_value_t = Sharing::Shared)]
    sharing: Sharing,
    /// How the inputs of one request are padded: `longest` never pads a single text (/predict);
    /// `max_length` pads every input, a single one too, to --max-seq-length tokens.
    #[arg(long, value_enum, default_value_t = Padding::Longest)]
    padding: Padding,
    /// Refuse (413 input_too_long) inputs longer than the model's positions instead of
    /// truncating them to --max-seq-length.
    #[arg(long)]
    no_truncation: bool,
    /// The article's tokenizer: no padding and no truncation (`with_padding(None)`,
    /// `with_truncation(None)`). Inputs over the model's positions get 413 input_too_long.
    #[arg(long, conflicts_with_all = ["padding", "no_truncation"])]
    no_padding_truncation: bool,
    /// Tokens kept when truncating, special tokens included (default: the folder's
    /// sentence_bert_config.json, else max_position_embeddings). Refused above the latter.
    #[arg(long)]
    max_seq_length: Option<usize>,
    /// Pooling of the token vectors (default: the folder's Pooling module, found through
    /// modules.json; mean without one). Wins over the folder, with a log line when they differ.
    #[arg(long, value_enum)]
    pooling: Option<Pooling>,
    /// L2-normalise the sentence vectors (default: whether modules.json lists a Normalize
    /// module). Wins over the folder, with a log line when they differ.
    #[arg(long, value_name = "true|false")]
    normalize: Option<bool>,
    /// Request bodies larger than this get 413 payload_too_large.
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Requests in flight in the process (every worker's) beyond which a request is answered
    /// 429 overloaded with Retry-After, as TEI's flag of this name and embbench's Python
    /// servers (the same default).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    max_concurrent_requests: u32,
    /// Name reported by /info; default from the flags, e.g. rust-rwlock, rust-per-worker-mutex.
    #[arg(long)]
    variant_name: Option<String>,
    /// Model id reported by /info (default: the model folder).
    #[arg(long)]
    model_id: Option<String>,
    /// Log one stderr line per request (off: it would be measured overhead).
    #[arg(long)]
    log_requests: bool,
    /// No Server-Timing, X-Batch-Size or X-Request-Id on answers (to measure what they cost).
    #[arg(long)]
    no_server_timing: bool,
}

impl Args {
    fn default_variant(&self) -> String {
        let mut name = match self.sharing {
            Sharing::Shared => format!("rust-{}", self.lock.as_str()),
            Sharing::PerWorker => format!("rust-per-worker-{}", self.lock.as_str()),
        };
        if self.no_padding_truncation {
            name.push_str("-no-padding");
        }
        name
    }
}

/// Die with the launcher: SIGTERM when the parent goes (Linux). PR_SET_PDEATHSIG fires when the
/// thread that forked us exits; if the parent died before the call, we were reparented already
/// and no signal will come, so compare getppid() from before and after.
fn die_with_parent() {
    #[cfg(target_os = "linux")]
    unsafe {
        let parent = libc::getppid();
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGTERM as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            eprintln!("seed-server: warning: prctl(PR_SET_PDEATHSIG) failed");
            return;
        }
        if libc::getppid() != parent {
            eprintln!("seed-server: parent exited during startup; exiting");
            std::process::exit(1);
        }
    }
}

/// Load one model and run it a few times, so that the first measured request is not the one
/// that allocates and warms the caches.
fn load_warm(settings: &ModelSettings, loaded: &AtomicUsize) -> Result<Bert> {
    let bert = Bert::load(settings)?;
    for size in [1, 1, 4] {
        let texts = vec![WARMUP_TEXT.to_owned(); size];
        bert.embed(&texts, None).map_err(|err| match err {
            model::EmbedError::Other(err) => err.context("warm-up"),
            model::EmbedError::TooLong { .. } => anyhow::anyhow!("warm-up text too long"),
        })?;
    }
    loaded.fetch_add(1, Ordering::SeqCst);
    Ok(bert)
}

async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let line = format!("{} {}", req.method(), req.path());
    let res = next.call(req).await?;
    eprintln!(
        "{line} -> {} in {:?}",
        res.status().as_u16(),
        started.elapsed()
    );
    Ok(res)
}

fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let threads = usize::from(args.threads);
    let workers = usize::from(args.workers);
    let pool_threads = args.pool_threads.map_or(threads, usize::from);
    configure_pools(threads, pool_threads)?;

    let model_dir = args
        .model_dir
        .canonicalize()
        .with_context(|| format!("model dir {}", args.model_dir.display()))?;
    // Everything the folder says, checked before any weight is read: a folder this server would
    // serve wrong is refused here, in one line.
    let resolved = folder::resolve(
        &model_dir,
        &Asked {
            pooling: args.pooling,
            normalize: args.normalize,
            max_seq_length: args.max_seq_length,
        },
    )?;
    for note in &resolved.notes {
        eprintln!("seed-server: {note}");
    }
    let max_positions = resolved.max_positions;
    let max_seq_length = resolved.max_seq_length;
    let pooling = resolved.pooling.as_str();
    let normalize = resolved.normalize;
    let (padding, truncation) = if args.no_padding_truncation {
        (Padding::None, false)
    } else {
        (args.padding, !args.no_truncation)
    };
    let settings = ModelSettings {
        model_dir: model_dir.clone(),
        padding,
        truncation,
        max_seq_length,
        pooling: resolved.pooling,
        normalize,
    };
    let addr: SocketAddr = (args.host.as_str(), args.port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {}:{}", args.host, args.port))?
        .next()
        .with_context(|| format!("{} resolves to no address", args.host))?;

    // Loaded before binding, so /health answers only once a model is ready. In per-worker mode
    // this copy checks the folder and warms the compute pools, then is dropped: each worker
    // loads its own in the factory.
    let loaded = Arc::new(AtomicUsize::new(0));
    let stats = Arc::new(LockStats::new());
    let first = load_warm(&settings, &loaded)?;
    let hidden_size = first.hidden_size;
    let shared = match args.sharing {
        Sharing::Shared => Some(web::Data::new(Guarded::new(
            first,
            args.lock,
            stats.clone(),
        ))),
        Sharing::PerWorker => {
            drop(first);
            loaded.store(0, Ordering::SeqCst);
            None
        }
    };

    let variant = args
        .variant_name
        .clone()
        .unwrap_or_else(|| args.default_variant());
    let model_path = model_dir.display().to_string();
    let max_concurrent = args.max_concurrent_requests as usize;
    let state = web::Data::new(ServerState {
        max_body_bytes: args.max_body_bytes,
        admission: Admission::new(max_concurrent),
        models_loaded: loaded.clone(),
        stats: stats.clone(),
        server_timing: !args.no_server_timing,
        info: json!({
            "variant": variant,
            "pid": std::process::id(),
            "workers": workers,
            "threads": threads,
            "pool_threads": pool_threads,
            "lock": args.lock.as_str(),
            "sharing": args.sharing.as_str(),
            "padding": padding.as_str(),
            "truncation": truncation,
            "max_seq_length": max_seq_length,
            "max_input_tokens": max_positions,
            "max_input_length": max_positions,
            "max_client_batch_size": api::MAX_CLIENT_BATCH,
            "max_concurrent_requests": max_concurrent,
            "max_body_bytes": args.max_body_bytes,
            "model": model_path,
            "model_id": args.model_id.clone().unwrap_or_else(|| model_path.clone()),
            "model_type": {"embedding": {"pooling": pooling}},
            "pooling": pooling,
            "normalize": normalize,
            "dimensions": hidden_size,
            "backend": "candle",
            "candle_num_threads": std::env::var("CANDLE_NUM_THREADS").unwrap_or_default(),
            "http": "actix-web",
            "server_timing": !args.no_server_timing,
            "version": env!("CARGO_PKG_VERSION"),
        }),
    });

    eprintln!(
        "seed-server {}: variant={variant} workers={workers} threads={threads} lock={} sharing={} \
         padding={} truncation={truncation} max_seq_length={max_seq_length} pooling={pooling} \
         normalize={normalize} max_concurrent_requests={max_concurrent} model={model_path} \
         listen=http://{addr} pid={} \
         (model ready in {:.2?})",
        env!("CARGO_PKG_VERSION"),
        args.lock.as_str(),
        args.sharing.as_str(),
        padding.as_str(),
        std::process::id(),
        started.elapsed(),
    );

    let lock = args.lock;
    let log_requests = args.log_requests;
    let factory_loaded = loaded.clone();
    let factory_stats = stats.clone();
    let factory = move || {
        let model = match &shared {
            Some(model) => model.clone(),
            // Runs on the worker's own thread, once per worker, before it serves.
            None => match load_warm(&settings, &factory_loaded) {
                Ok(bert) => web::Data::new(Guarded::new(bert, lock, factory_stats.clone())),
                Err(err) => {
                    eprintln!("seed-server: error: worker failed to load the model: {err:#}");
                    std::process::exit(1);
                }
            },
        };
        App::new()
            .app_data(model)
            .app_data(state.clone())
            .wrap(Condition::new(log_requests, from_fn(log_request)))
            .service(
                web::resource("/predict")
                    .route(web::post().to(api::predict))
                    .default_service(web::to(api::method_not_allowed)),
            )
            .service(
                web::resource("/embed")
                    .route(web::post().to(api::embed))
                    .default_service(web::to(api::method_not_allowed)),
            )
            .service(
                web::resource("/health")
                    .route(web::get().to(api::health))
                    .default_service(web::to(api::method_not_allowed)),
            )
            .service(
                web::resource("/info")
                    .route(web::get().to(api::info))
                    .default_service(web::to(api::method_not_allowed)),
            )
            .service(
                web::resource("/stats")
                    .route(web::get().to(api::stats))
                    .default_service(web::to(api::method_not_allowed)),
            )
            .default_service(web::to(api::not_found))
    };

    // actix's System: SIGINT, SIGTERM and SIGQUIT stop the server and `run()` returns Ok.
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(factory)
            .workers(workers)
            // Requests in flight at SIGTERM get this long; idle keep-alive connections none.
            .shutdown_timeout(3)
            .bind(addr)
            .with_context(|| format!("binding {addr}"))?
            .run()
            .await
            .context("serving")
    })?;
    eprintln!(
        "seed-server: stopped (models loaded: {})",
        loaded.load(Ordering::SeqCst)
    );
    Ok(())
}

fn main() -> ExitCode {
    die_with_parent();
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("seed-server: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
