//! The process's compute threads: one setting for candle's three parallel knobs.

use anyhow::{bail, Context, Result};

/// Make `--threads` the compute thread count of candle 0.11 on CPU. It has three knobs, all
/// read lazily, so this must run before the first tensor op (and before any other thread):
/// - matmuls: gemm with `Parallelism::Rayon(n)`, n = candle's `get_num_threads()`, which is
///   `RAYON_NUM_THREADS` (default: the physical cores); n = 1 means no parallelism at all;
/// - large elementwise ops (>= 64Ki elements, e.g. GELU on long inputs): candle's own barrier
///   pool of `CANDLE_NUM_THREADS` (default `RAYON_NUM_THREADS`) - 1 workers plus the caller;
///   they spin a while before parking, and concurrent callers take turns on its one lock.
///   A `CANDLE_NUM_THREADS` already in the environment is left as it is (1 turns it off);
/// - softmax / layer norm (candle-nn `par_chunks`) and gemm's tasks: the rayon global pool,
///   built here with n threads.
///
/// The forward pass itself runs on the actix worker's thread (as in the article), so parallel
/// sections are handed to this one process-wide pool, which all workers share. Measured on 2
/// cores, ~200-token input, one worker: --threads 1 ~98% CPU, --threads 2 ~180% CPU. Even with
/// --threads 1, softmax and layer norm hop from the worker's thread to the one pool thread (and
/// back), which every worker shares.
pub fn configure_threads(threads: usize) -> Result<()> {
    configure_pools(threads, threads)
}

/// `configure_threads` with the rayon global pool sized apart (`pool` threads): an experiment
/// that tells gemm's parallelism (`threads`) from the pool that softmax / layer norm hop to.
pub fn configure_pools(threads: usize, pool: usize) -> Result<()> {
    // Edition 2021 and still single-threaded: set_var is sound here.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(pool)
        .thread_name(|i| format!("compute-{i}"))
        .build_global()
        .context("building the rayon global pool")?;
    let effective = candle_core::utils::get_num_threads();
    if effective != threads {
        bail!("candle reports {effective} threads, not {threads}");
    }
    Ok(())
}
