//! seed-server as a library: the model (and what its folder says), the HTTP API and the thread
//! settings, shared by the server (src/main.rs) and its measurement binary (src/bin/seed-bench.rs),
//! so that what the bench times is the very code the server runs.

pub mod admission;
pub mod api;
pub mod folder;
pub mod model;
pub mod stats;
pub mod threads;
pub mod timing;
