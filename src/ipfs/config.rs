//! Checks of the `[ipfs]` settings, and the CID layout and queueing rules derived from them.

use anyhow::bail;

use super::cid_builder::CidOptions;
use crate::config::IpfsConfig;
use crate::store::QueuePolicy;

/// The only multihash kura computes CIDs with.
pub const SUPPORTED_HASH: &str = "sha2-256";

/// Largest leaf Kubo accepts: its chunker rejects sizes above 1 MiB (boxo `chunk.ChunkSizeLimit`).
pub const MAX_CHUNK_SIZE: usize = 1 << 20;

impl IpfsConfig {
    /// Checks values that parse but cannot work, naming the key. These checks apply even when
    /// replication is off, because the CID of every upload is computed with these settings.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.hash != SUPPORTED_HASH {
            bail!(
                "ipfs.hash = {:?} is not supported; kura computes CIDs with {SUPPORTED_HASH} only, so set ipfs.hash = \"{SUPPORTED_HASH}\"",
                self.hash
            );
        }
        if self.chunk_size == 0 || self.chunk_size > MAX_CHUNK_SIZE {
            bail!(
                "ipfs.chunk_size must be from 1 to {MAX_CHUNK_SIZE} bytes, got {}",
                self.chunk_size
            );
        }
        if self.max_links < 2 {
            bail!("ipfs.max_links must be at least 2, got {}", self.max_links);
        }
        if self.concurrency == 0 {
            bail!("ipfs.concurrency must be at least 1");
        }
        if self.timeout_secs == 0 {
            bail!("ipfs.timeout_secs must be at least 1");
        }
        if self.retry_initial_secs == 0 {
            bail!("ipfs.retry_initial_secs must be at least 1");
        }
        if self.retry_max_secs < self.retry_initial_secs {
            bail!(
                "ipfs.retry_max_secs ({}) must not be below ipfs.retry_initial_secs ({})",
                self.retry_max_secs,
                self.retry_initial_secs
            );
        }
        // The RPC client is built without TLS, so only plain HTTP URLs can work.
        let valid_url = self.api_url.starts_with("http://")
            && self
                .api_url
                .parse::<http::Uri>()
                .is_ok_and(|uri| uri.host().is_some());
        if !valid_url {
            bail!(
                "ipfs.api_url must be an http:// URL with a host, such as http://127.0.0.1:5001, got {:?}",
                self.api_url
            );
        }
        Ok(())
    }

    /// Returns which blob changes queue replication jobs.
    pub fn queue_policy(&self) -> QueuePolicy {
        QueuePolicy {
            enabled: self.enabled,
            unpin_on_delete: self.unpin_on_delete,
            chunk_size: self.chunk_size,
        }
    }

    /// Returns the DAG layout that both the CID builder and the node's `add` use.
    pub fn cid_options(&self) -> CidOptions {
        CidOptions {
            chunk_size: self.chunk_size,
            max_links: self.max_links,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(config: &IpfsConfig) -> String {
        format!("{:#}", config.validate().unwrap_err())
    }

    #[test]
    fn defaults_are_valid() {
        IpfsConfig::default().validate().unwrap();
        assert_eq!(IpfsConfig::default().cid_options(), CidOptions::default());
    }

    #[test]
    fn other_hash_is_rejected_by_key() {
        let config = IpfsConfig {
            hash: "blake2b-256".to_owned(),
            ..IpfsConfig::default()
        };
        let text = message(&config);
        assert!(text.contains("ipfs.hash"), "{text}");
        assert!(text.contains("blake2b-256"), "{text}");
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases: [(&str, IpfsConfig); 7] = [
            (
                "ipfs.chunk_size",
                IpfsConfig {
                    chunk_size: 0,
                    ..IpfsConfig::default()
                },
            ),
            (
                "ipfs.chunk_size",
                IpfsConfig {
                    chunk_size: MAX_CHUNK_SIZE + 1,
                    ..IpfsConfig::default()
                },
            ),
            (
                "ipfs.max_links",
                IpfsConfig {
                    max_links: 1,
                    ..IpfsConfig::default()
                },
            ),
            (
                "ipfs.concurrency",
                IpfsConfig {
                    concurrency: 0,
                    ..IpfsConfig::default()
                },
            ),
            (
                "ipfs.timeout_secs",
                IpfsConfig {
                    timeout_secs: 0,
                    ..IpfsConfig::default()
                },
            ),
            (
                "ipfs.retry_max_secs",
                IpfsConfig {
                    retry_initial_secs: 10,
                    retry_max_secs: 5,
                    ..IpfsConfig::default()
                },
            ),
            (
                "ipfs.api_url",
                IpfsConfig {
                    api_url: "https://node.example".to_owned(),
                    ..IpfsConfig::default()
                },
            ),
        ];
        for (key, config) in cases {
            let text = message(&config);
            assert!(text.contains(key), "expected {key} in {text}");
        }
    }
}
