//! IPFS: the Kubo-equal CID computed while an upload streams, and the `[ipfs]` settings.

pub mod cid_builder;
pub mod config;
