//! Calls to the IPFS node's RPC API (Kubo's `/api/v0`), each bounded by `ipfs.timeout_secs`.
//!
//! A node asked for data it does not have waits for the network forever, so every call carries
//! the timeout twice. The RPC's own `timeout` option makes the node give up and free its
//! resources. A client-side deadline applies even when the node ignores the option or the
//! connection stalls.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use cid::Cid;
use futures_util::{Stream, StreamExt};
use ipfs_api_backend_hyper::{
    request, BackendWithGlobalOptions, GlobalOptions, IpfsApi, IpfsClient, TryFromUri,
};
use tokio_util::compat::TokioAsyncReadCompatExt;

use crate::config::IpfsConfig;

type Client = BackendWithGlobalOptions<IpfsClient>;

/// Failure of a call to the node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("invalid ipfs.api_url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("the IPFS node at {url} did not answer within {secs} s (ipfs.timeout_secs)")]
    Timeout { url: String, secs: u64 },
    #[error("the IPFS node at {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    #[error("the IPFS node at {url} returned an error: {message}")]
    Api { url: String, message: String },
    #[error("the IPFS node at {url} returned an invalid CID {cid:?}: {reason}")]
    InvalidCid {
        url: String,
        cid: String,
        reason: String,
    },
    #[error("failed to read {}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl NodeError {
    /// True when the node rejected the request itself, as opposed to not responding.
    pub fn is_api_error(&self) -> bool {
        matches!(self, NodeError::Api { .. })
    }
}

/// A client for one node with the configured timeout.
pub struct Node {
    client: Client,
    api_url: String,
    timeout: Duration,
}

impl Node {
    /// Builds a client for `ipfs.api_url`; no connection is made until the first call.
    pub fn new(config: &IpfsConfig) -> Result<Node, NodeError> {
        let api_url = config.api_url.trim_end_matches('/').to_owned();
        let backend = IpfsClient::from_str(&api_url).map_err(|err| NodeError::InvalidUrl {
            url: api_url.clone(),
            reason: err.to_string(),
        })?;
        let timeout = Duration::from_secs(config.timeout_secs);
        let options = GlobalOptions {
            offline: None,
            timeout: Some(timeout),
        };
        Ok(Node {
            client: BackendWithGlobalOptions::new(backend, options),
            api_url,
            timeout,
        })
    }

    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// Runs one call under the client-side deadline and maps its error.
    async fn call<T>(
        &self,
        call: impl Future<Output = Result<T, ipfs_api_backend_hyper::Error>>,
    ) -> Result<T, NodeError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(|err| self.map_error(err)),
            Err(_) => Err(self.timeout_error()),
        }
    }

    fn map_error(&self, err: ipfs_api_backend_hyper::Error) -> NodeError {
        let url = self.api_url.clone();
        match err {
            ipfs_api_backend_hyper::Error::Client(err) => NodeError::Unreachable {
                url,
                message: err.to_string(),
            },
            ipfs_api_backend_hyper::Error::Api(err) => NodeError::Api {
                url,
                message: err.message,
            },
            other => NodeError::Api {
                url,
                message: other.to_string(),
            },
        }
    }

    /// Returns the node's version string.
    pub async fn version(&self) -> Result<String, NodeError> {
        let response = self.call(self.client.version()).await?;
        Ok(response.version)
    }

    /// Adds the file at `path` with CIDv1, raw leaves, `chunker=size-{chunk_size}` and sha2-256,
    /// pins it, and returns the root CID the node computed. The file streams from disk.
    ///
    /// NOTE: Kubo's RPC has no option for links per node and always uses 174, so
    /// `ipfs.max_links` only takes effect on the CID that kura computes.
    pub async fn add_file(&self, path: &Path, chunk_size: usize) -> Result<Cid, NodeError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|source| NodeError::File {
                path: path.to_path_buf(),
                source,
            })?;
        let chunker = format!("size-{chunk_size}");
        let options = request::Add {
            chunker: Some(&chunker),
            pin: Some(true),
            raw_leaves: Some(true),
            cid_version: Some(1),
            hash: Some(super::config::SUPPORTED_HASH),
            ..Default::default()
        };
        let response = self
            .call(self.client.add_async_with_options(file.compat(), options))
            .await?;
        parse_cid(&response.hash).map_err(|reason| NodeError::InvalidCid {
            url: self.api_url.clone(),
            cid: response.hash.clone(),
            reason,
        })
    }

    /// Removes the recursive pin of `cid`. A CID that is not pinned counts as unpinned.
    pub async fn unpin(&self, cid: &str) -> Result<(), NodeError> {
        match self.call(self.client.pin_rm(cid, true)).await {
            Ok(_) => Ok(()),
            // Kubo reports "not pinned or pinned indirectly", js-ipfs "… is not pinned".
            Err(NodeError::Api { message, .. }) if message.contains("not pinned") => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Returns whether the node pins `cid` recursively.
    pub async fn is_pinned(&self, cid: &str) -> Result<bool, NodeError> {
        match self.call(self.client.pin_ls(Some(cid), None)).await {
            Ok(response) => Ok(response.keys.values().any(|pin| pin.typ == "recursive")),
            Err(NodeError::Api { message, .. }) if message.contains("not pinned") => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Returns the content of `cid` as a stream. The caller bounds the whole transfer with
    /// [`Node::timeout`]; the node bounds it too through the RPC's `timeout` option.
    pub fn cat(&self, cid: &str) -> impl Stream<Item = Result<Bytes, NodeError>> + Send + '_ {
        self.client
            .cat(cid)
            .map(move |chunk| chunk.map_err(|err| self.map_error(err)))
    }

    /// Returns the limit on each call (`ipfs.timeout_secs`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Returns the error that a call which ran out of time reports.
    pub fn timeout_error(&self) -> NodeError {
        NodeError::Timeout {
            url: self.api_url.clone(),
            secs: self.timeout.as_secs(),
        }
    }
}

/// Parses a CID in any multibase spelling and returns it as CIDv1, so equal content compares
/// equal however the CID was written. A CIDv0 (`Qm…`) becomes the CIDv1 of the same dag-pb node.
pub fn parse_cid(text: &str) -> Result<Cid, String> {
    let cid = Cid::try_from(text).map_err(|err| err.to_string())?;
    Ok(match cid.version() {
        cid::Version::V0 => Cid::new_v1(cid.codec(), *cid.hash()),
        cid::Version::V1 => cid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &str = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";

    #[test]
    fn parse_cid_normalises_multibase() {
        let cid = parse_cid(RAW).unwrap();
        let spellings = [
            cid.to_string_of_base(cid::multibase::Base::Base58Btc)
                .unwrap(),
            cid.to_string_of_base(cid::multibase::Base::Base32Upper)
                .unwrap(),
            cid.to_string_of_base(cid::multibase::Base::Base36Lower)
                .unwrap(),
            cid.to_string_of_base(cid::multibase::Base::Base64).unwrap(),
            cid.to_string_of_base(cid::multibase::Base::Base16Lower)
                .unwrap(),
        ];
        for spelling in spellings {
            assert_eq!(parse_cid(&spelling).unwrap().to_string(), RAW, "{spelling}");
        }
    }

    #[test]
    fn parse_cid_turns_v0_into_v1() {
        // `hello world\n` as CIDv0 and as CIDv1 of the same dag-pb node.
        let v1 = parse_cid("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o").unwrap();
        assert_eq!(v1.version(), cid::Version::V1);
        assert_eq!(v1.codec(), 0x70);
        assert!(v1.to_string().starts_with("bafybei"), "{v1}");
    }

    #[test]
    fn parse_cid_rejects_garbage() {
        for bad in ["", "bafy", "not-a-cid", "zzzz", "Qm"] {
            assert!(parse_cid(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn invalid_url_is_named() {
        let config = IpfsConfig {
            api_url: "http://bad host:5001".to_owned(),
            ..IpfsConfig::default()
        };
        let err = Node::new(&config).err().unwrap();
        assert!(err.to_string().contains("ipfs.api_url"), "{err}");
    }
}
