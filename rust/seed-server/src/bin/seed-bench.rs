//! seed-bench: times the server's own model code with no HTTP, so that where the Rust server
//! loses or wins can be measured piece by piece (scripts/rust_explain.py drives it, and the same
//! plan through PyTorch).
//!
//! It reads a plan (JSON) and prints one JSON object:
//! - `forward`: `Bert::embed_ids` (forward pass + the folder's pooling, the code /predict runs
//!   once its input is tokenised) over given batches of token ids, laid out as each case says
//!   (`longest`, `none`: one pass per input, `max_length`);
//! - `streams`: the same, from K threads at once on the one shared model, as K actix workers
//!   behind the RwLock run it (no lock here: a read lock never waits);
//! - `matmul`: bare candle matmuls of the model's shapes: `linear` is candle-nn's Linear
//!   without bias (x[m,k] times W[n,k] transposed, one gemm), `bmm` the attention scores
//!   (a[b,m,k] times c[b,n,k] transposed, b gemms);
//! - `ops`: the model's other heavy operations, called as candle-transformers' BERT calls them:
//!   `gelu_erf` on [m, n], `softmax` (candle_nn::ops::softmax over the last dim, BERT's call)
//!   and `softmax_last_dim` (candle-nn's fused kernel) on [heads, m, m], `scale_mask` (divide
//!   by sqrt(32), add the broadcast mask) on [heads, m, m], `layer_norm` on [m, n].
//!
//! `--threads` sets candle's compute threads exactly as the server's `--threads` does.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Module, Tensor};
use clap::Parser;
use serde::Deserialize;
use serde_json::{json, Value};

use seed_server::folder::{self, Asked};
use seed_server::model::{Bert, ModelSettings, Padding};
use seed_server::threads::configure_threads;

#[derive(Parser, Debug)]
#[command(
    name = "seed-bench",
    version,
    about = "time seed-server's forward pass and candle's matmuls, no HTTP"
)]
struct Args {
    /// Folder with config.json, tokenizer.json and model.safetensors (needed for forward cases).
    #[arg(long)]
    model_dir: Option<PathBuf>,
    /// candle's compute threads, as seed-server's --threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    threads: u16,
    /// The plan (JSON): {"forward": [...], "streams": [...], "matmul": [...]}.
    #[arg(long)]
    plan: PathBuf,
    /// Each case runs at least this long (after its warm-up) ...
    #[arg(long, default_value_t = 1.0)]
    min_seconds: f64,
    /// ... and at least this many times.
    #[arg(long, default_value_t = 10)]
    min_runs: usize,
    /// Tokens `max_length` padding pads to (the server's --max-seq-length; default: the
    /// folder's, as the server).
    #[arg(long)]
    max_seq_length: Option<usize>,
}

#[derive(Deserialize, Default)]
struct Plan {
    #[serde(default)]
    forward: Vec<ForwardCase>,
    #[serde(default)]
    streams: Vec<StreamCase>,
    #[serde(default)]
    matmul: Vec<MatmulCase>,
    #[serde(default)]
    ops: Vec<OpCase>,
}

#[derive(Deserialize)]
struct OpCase {
    name: String,
    op: String,
    #[serde(default = "one")]
    heads: usize,
    m: usize,
    #[serde(default)]
    n: usize,
}

#[derive(Deserialize)]
struct ForwardCase {
    name: String,
    padding: String,
    /// Batches of token ids (special tokens included); one timed run embeds them all in turn.
    batches: Vec<Vec<Vec<u32>>>,
}

#[derive(Deserialize)]
struct StreamCase {
    name: String,
    padding: String,
    batches: Vec<Vec<Vec<u32>>>,
    streams: usize,
    seconds: f64,
}

#[derive(Deserialize)]
struct MatmulCase {
    name: String,
    kind: String,
    #[serde(default = "one")]
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
}

fn one() -> usize {
    1
}

fn parse_padding(name: &str) -> Result<Padding> {
    Ok(match name {
        "longest" => Padding::Longest,
        "max_length" => Padding::MaxLength,
        "none" => Padding::None,
        other => bail!("unknown padding {other:?}: longest, max_length or none"),
    })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Milliseconds of each run of `f`, after three untimed ones, until both limits are met.
fn time_runs(args: &Args, mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    for _ in 0..3 {
        f()?;
    }
    let deadline = Instant::now() + Duration::from_secs_f64(args.min_seconds);
    let mut runs = Vec::new();
    while runs.len() < args.min_runs || Instant::now() < deadline {
        let started = Instant::now();
        f()?;
        runs.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(runs)
}

fn embed_all(bert: &Bert, batches: &[Vec<Vec<u32>>], padding: Padding) -> Result<()> {
    for batch in batches {
        bert.embed_ids(batch, padding)
            .map_err(|err| anyhow::anyhow!("{err:?}"))?;
    }
    Ok(())
}

fn run_forward(args: &Args, bert: &Bert, case: &ForwardCase) -> Result<Value> {
    let padding = parse_padding(&case.padding)?;
    if case.batches.is_empty() {
        bail!("forward case {}: no batches", case.name);
    }
    let mut runs = time_runs(args, || embed_all(bert, &case.batches, padding))?;
    let per_batch = case.batches.len() as f64;
    let n = runs.len();
    Ok(json!({
        "name": case.name,
        "padding": case.padding,
        "batches": case.batches.len(),
        "runs": n,
        // One run embeds every batch; these are per batch (= per request at batch 1).
        "median_ms": median(&mut runs) / per_batch,
        "min_ms": runs[0] / per_batch,
    }))
}

fn run_streams(bert: &Bert, case: &StreamCase) -> Result<Value> {
    let padding = parse_padding(&case.padding)?;
    if case.batches.is_empty() || case.streams == 0 {
        bail!("stream case {}: no batches or no streams", case.name);
    }
    embed_all(bert, &case.batches, padding)?;
    let started = Instant::now();
    let stop = started + Duration::from_secs_f64(case.seconds);
    let latencies: Vec<Vec<f64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..case.streams)
            .map(|k| {
                scope.spawn(move || -> Result<Vec<f64>> {
                    let mut mine = Vec::new();
                    let mut index = k;
                    while Instant::now() < stop {
                        let batch = &case.batches[index % case.batches.len()];
                        let t = Instant::now();
                        bert.embed_ids(batch, padding)
                            .map_err(|err| anyhow::anyhow!("{err:?}"))?;
                        mine.push(t.elapsed().as_secs_f64() * 1e3);
                        index += case.streams;
                    }
                    Ok(mine)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a stream panicked"))
            .collect::<Result<Vec<_>>>()
    })?;
    let wall = started.elapsed().as_secs_f64();
    let mut all: Vec<f64> = latencies.into_iter().flatten().collect();
    let done = all.len();
    Ok(json!({
        "name": case.name,
        "padding": case.padding,
        "streams": case.streams,
        "batches_per_s": done as f64 / wall,
        "median_ms": median(&mut all),
        "done": done,
    }))
}

fn run_matmul(args: &Args, case: &MatmulCase) -> Result<Value> {
    let cpu = Device::Cpu;
    let (b, m, k, n) = (case.batch, case.m, case.k, case.n);
    let mut runs = match case.kind.as_str() {
        "linear" => {
            let x = Tensor::randn(0f32, 1.0, (b * m, k), &cpu)?;
            let w = Tensor::randn(0f32, 1.0, (n, k), &cpu)?;
            let linear = candle_nn::Linear::new(w, None);
            time_runs(args, || Ok(linear.forward(&x).map(drop)?))?
        }
        "bmm" => {
            let a = Tensor::randn(0f32, 1.0, (b, m, k), &cpu)?;
            let c = Tensor::randn(0f32, 1.0, (b, n, k), &cpu)?;
            time_runs(args, || Ok(a.matmul(&c.t()?).map(drop)?))?
        }
        other => bail!("matmul case {}: unknown kind {other:?}", case.name),
    };
    let ms = median(&mut runs);
    let flops = 2.0 * (b * m * k * n) as f64;
    Ok(json!({
        "name": case.name,
        "kind": case.kind,
        "shape": [b, m, k, n],
        "runs": runs.len(),
        "median_ms": ms,
        "gflops": flops / (ms * 1e6),
    }))
}

fn run_op(args: &Args, case: &OpCase) -> Result<Value> {
    use candle_nn::ops::{softmax, softmax_last_dim};
    let cpu = Device::Cpu;
    let (h, m, n) = (case.heads, case.m, case.n);
    let scores = || Tensor::randn(0f32, 1.0, (1, h, m, m), &cpu);
    let (mut runs, elements) = match case.op.as_str() {
        "gelu_erf" => {
            let x = Tensor::randn(0f32, 1.0, (1, m, n), &cpu)?;
            (time_runs(args, || Ok(x.gelu_erf().map(drop)?))?, m * n)
        }
        "softmax" => {
            let x = scores()?;
            let f = || Ok(softmax(&x, candle_core::D::Minus1).map(drop)?);
            (time_runs(args, f)?, h * m * m)
        }
        "softmax_last_dim" => {
            let x = scores()?;
            (
                time_runs(args, || Ok(softmax_last_dim(&x).map(drop)?))?,
                h * m * m,
            )
        }
        "scale_mask" => {
            let x = scores()?;
            let mask = Tensor::zeros((1, 1, 1, m), candle_core::DType::F32, &cpu)?;
            let f = || Ok((&x / 32f64.sqrt())?.broadcast_add(&mask).map(drop)?);
            (time_runs(args, f)?, h * m * m)
        }
        "layer_norm" => {
            let x = Tensor::randn(0f32, 1.0, (1, m, n), &cpu)?;
            let w = Tensor::ones(n, candle_core::DType::F32, &cpu)?;
            let norm = candle_nn::LayerNorm::new(w.clone(), w.zeros_like()?, 1e-12);
            (time_runs(args, || Ok(norm.forward(&x).map(drop)?))?, m * n)
        }
        other => bail!("op case {}: unknown op {other:?}", case.name),
    };
    let ms = median(&mut runs);
    Ok(json!({
        "name": case.name,
        "op": case.op,
        "elements": elements,
        "runs": runs.len(),
        "median_ms": ms,
        "ns_per_element": ms * 1e6 / elements as f64,
    }))
}

fn run(args: Args) -> Result<()> {
    let threads = usize::from(args.threads);
    configure_threads(threads)?;
    let text = std::fs::read_to_string(&args.plan)
        .with_context(|| format!("reading {}", args.plan.display()))?;
    let plan: Plan =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", args.plan.display()))?;

    let bert = if plan.forward.is_empty() && plan.streams.is_empty() {
        None
    } else {
        let Some(dir) = &args.model_dir else {
            bail!("forward and stream cases need --model-dir");
        };
        let model_dir = dir
            .canonicalize()
            .with_context(|| format!("model dir {}", dir.display()))?;
        // The folder's own pooling and normalisation, as the server without flags.
        let resolved = folder::resolve(
            &model_dir,
            &Asked {
                max_seq_length: args.max_seq_length,
                ..Asked::default()
            },
        )?;
        Some(Bert::load(&ModelSettings {
            model_dir,
            padding: Padding::Longest,
            truncation: true,
            max_seq_length: resolved.max_seq_length,
            pooling: resolved.pooling,
            normalize: resolved.normalize,
        })?)
    };
    let mut forward = Vec::new();
    let mut streams = Vec::new();
    if let Some(bert) = &bert {
        for case in &plan.forward {
            forward.push(run_forward(&args, bert, case)?);
        }
        for case in &plan.streams {
            streams.push(run_streams(bert, case)?);
        }
    }
    let matmul = plan
        .matmul
        .iter()
        .map(|case| run_matmul(&args, case))
        .collect::<Result<Vec<_>>>()?;
    let ops = plan
        .ops
        .iter()
        .map(|case| run_op(&args, case))
        .collect::<Result<Vec<_>>>()?;
    let report = json!({
        "engine": "candle",
        "version": env!("CARGO_PKG_VERSION"),
        "threads": threads,
        "candle_threads": candle_core::utils::get_num_threads(),
        "mkl": candle_core::utils::has_mkl(),
        "forward": forward,
        "streams": streams,
        "matmul": matmul,
        "ops": ops,
    });
    println!("{report}");
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("seed-bench: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
