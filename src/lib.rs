//! kura: a self-hosted media server that stores blobs by content hash, indexes them in redb and
//! serves them over HTTP. The binary in `main.rs` only parses arguments and dispatches to `cli`.
// Unsafe code is denied everywhere except the one libwebp call that no safe wrapper exposes.
#![deny(unsafe_code)]

pub mod api;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod http;
pub mod ipfs;
pub mod ops;
pub mod store;
pub mod transform;

pub use http::server::{run, AppState};
