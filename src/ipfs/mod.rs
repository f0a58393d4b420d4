//! IPFS: the Kubo-equal CID computed while an upload streams.

pub mod cid_builder;
