//! The one `Config` type: built-in defaults, `config.toml`, command-line overrides and validation.
//!
//! Precedence is fixed and tested: built-in defaults < the config file < command-line flags.
//! Without `--config`, `./config.toml` is read when it exists; otherwise the defaults apply.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// The file read when no `--config` flag is given and the file exists.
pub const DEFAULT_CONFIG_FILE: &str = "config.toml";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub ipfs: IpfsConfig,
    pub transform: TransformConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Socket address the HTTP server binds.
    pub listen: String,
    /// Base of every public URL kura hands out, without a trailing slash. Empty means
    /// `http://` plus the address kura listens on (see [`Config::public_url_for`]).
    pub public_url: String,
    /// Connections served at once; further clients wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Seconds a client may take to send request headers; also closes idle keep-alive connections.
    pub header_read_timeout_secs: u64,
    /// Seconds in-flight requests get to finish after SIGINT or SIGTERM.
    pub shutdown_timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Directory holding `kura.redb`, `blobs/` and `tmp/`.
    pub data_dir: PathBuf,
    /// Largest accepted file, in bytes.
    pub max_upload_bytes: u64,
    /// Most files accepted by one batch upload.
    pub max_batch_files: usize,
    /// Largest accepted image or video frame, in pixels (width × height).
    pub max_source_pixels: u64,
    /// Most frames accepted in an animated image.
    pub max_frames: u32,
    /// Free bytes the data directory's filesystem must keep: below it uploads get 507 and
    /// `/readyz` reports not ready.
    pub min_free_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IpfsConfig {
    /// Whether blobs are replicated to an IPFS node.
    pub enabled: bool,
    /// Base URL of the node's RPC API.
    pub api_url: String,
    /// Leaf size of the UnixFS DAG in bytes, sent as `chunker=size-N`.
    pub chunk_size: usize,
    /// Links per inner DAG node; Kubo's balanced layout uses 174.
    pub max_links: usize,
    /// Multihash function of every block; only `sha2-256` is supported.
    pub hash: String,
    /// Jobs sent to the node at once.
    pub concurrency: usize,
    /// Seconds each call to the node may take before it is abandoned.
    pub timeout_secs: u64,
    /// Seconds before the first retry of a failed call; each later retry waits twice as long.
    pub retry_initial_secs: u64,
    /// Maximum wait between retries, in seconds.
    pub retry_max_secs: u64,
    /// Whether the pin is removed when the last record of a blob is deleted.
    pub unpin_on_delete: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Separate socket address for `GET /metrics`; empty serves it on `server.listen`.
    pub listen: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Line format on stderr.
    pub format: LogFormat,
    /// `tracing` filter directives such as `info` or `kura=debug,hyper=warn`; `RUST_LOG` wins
    /// when it is set.
    pub level: String,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            level: "info".to_owned(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".to_owned(),
            public_url: String::new(),
            max_connections: 1024,
            header_read_timeout_secs: 30,
            shutdown_timeout_secs: 30,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./data"),
            max_upload_bytes: 1 << 30,
            max_batch_files: 50,
            max_source_pixels: 100_000_000,
            max_frames: 1000,
            min_free_bytes: 1 << 30,
        }
    }
}

impl Default for IpfsConfig {
    fn default() -> Self {
        IpfsConfig {
            enabled: false,
            api_url: "http://127.0.0.1:5001".to_owned(),
            chunk_size: 262_144,
            max_links: 174,
            hash: "sha2-256".to_owned(),
            concurrency: 2,
            timeout_secs: 120,
            retry_initial_secs: 5,
            retry_max_secs: 3600,
            unpin_on_delete: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TransformConfig {
    /// Whether `f-auto` may send AVIF when the client accepts it (ImageKit's default is off).
    pub auto_avif: bool,
    /// Whether a URL without `f` behaves as `f-auto`; when false it keeps the source format.
    pub auto_format: bool,
    /// Quality of lossy output when the URL gives no `q`, 1 to 100.
    pub default_quality: u8,
    /// Maximum output image size, in pixels.
    pub max_output_pixels: u64,
    /// Maximum output side, in pixels.
    pub max_output_side: u32,
    /// Bytes of transformed variants kept on disk; the least recently used go first.
    pub cache_max_bytes: u64,
    /// Transformations running at once; 0 means one per CPU core.
    pub workers: usize,
    /// Transformations waiting for a worker before new ones get 503.
    pub queue: usize,
    /// ImageKit-style private key that checks `ik-s` URL signatures; unset means signed URLs
    /// are rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
    /// Whether transformation URLs without a valid `ik-s` signature get 401.
    pub require_signed: bool,
    /// Named transformations usable as `n-NAME`, e.g. `thumb = "w-120,h-80"`.
    pub named: std::collections::BTreeMap<String, String>,
}

impl Default for TransformConfig {
    fn default() -> Self {
        TransformConfig {
            auto_avif: false,
            auto_format: true,
            default_quality: 80,
            max_output_pixels: 100_000_000,
            max_output_side: 16_383,
            cache_max_bytes: 10 << 30,
            workers: 0,
            queue: 64,
            signing_key: None,
            require_signed: false,
            named: std::collections::BTreeMap::new(),
        }
    }
}

/// Values given on the command line; each one that is set replaces the file's value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub public_url: Option<String>,
}

impl Config {
    /// Loads the configuration: defaults, then the file (explicit, or `./config.toml` when present),
    /// then the command-line overrides, then validates the result.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Config> {
        let mut config = match file {
            Some(path) => Config::from_file(path)?,
            None if Path::new(DEFAULT_CONFIG_FILE).is_file() => {
                Config::from_file(Path::new(DEFAULT_CONFIG_FILE))?
            }
            None => Config::default(),
        };
        config.apply(overrides);
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML file; an unknown key is an error that names the key and its line.
    pub fn from_file(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read config file {}", path.display()))?;
        Config::from_toml(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    pub fn from_toml(text: &str) -> anyhow::Result<Config> {
        Ok(toml::from_str(text)?)
    }

    pub fn apply(&mut self, overrides: &Overrides) {
        if let Some(listen) = &overrides.listen {
            self.server.listen = listen.clone();
        }
        if let Some(dir) = &overrides.data_dir {
            self.storage.data_dir = dir.clone();
        }
        if let Some(url) = &overrides.public_url {
            self.server.public_url = url.clone();
        }
    }

    /// Checks values that parse but cannot work, naming the key.
    pub fn validate(&mut self) -> anyhow::Result<()> {
        self.listen_addr()?;
        let url = self.server.public_url.trim_end_matches('/').to_owned();
        if url.is_empty() {
            // With port 0 the address is known only once bound, and `serve` fills it in then.
            let listen = self.listen_addr()?;
            if listen.port() != 0 {
                self.server.public_url = Config::public_url_for(listen);
            }
        } else if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("server.public_url must start with http:// or https://, got {url:?}");
        } else {
            self.server.public_url = url;
        }
        if self.server.max_connections == 0 {
            bail!("server.max_connections must be at least 1");
        }
        if self.storage.max_upload_bytes == 0 {
            bail!("storage.max_upload_bytes must be at least 1");
        }
        if self.storage.max_batch_files == 0 {
            bail!("storage.max_batch_files must be at least 1");
        }
        if self.storage.max_source_pixels == 0 {
            bail!("storage.max_source_pixels must be at least 1");
        }
        if self.storage.max_frames == 0 {
            bail!("storage.max_frames must be at least 1");
        }
        if !(1..=100).contains(&self.transform.default_quality) {
            bail!(
                "transform.default_quality must be from 1 to 100, got {}",
                self.transform.default_quality
            );
        }
        if self.transform.max_output_side == 0 || self.transform.max_output_pixels == 0 {
            bail!("transform.max_output_side and transform.max_output_pixels must be at least 1");
        }
        if self.transform.require_signed
            && self
                .transform
                .signing_key
                .as_deref()
                .unwrap_or("")
                .is_empty()
        {
            bail!("transform.require_signed = true needs transform.signing_key");
        }
        if self.storage.data_dir.as_os_str().is_empty() {
            bail!("storage.data_dir must not be empty");
        }
        self.metrics_listen_addr()?;
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            bail!(
                "log.level must be tracing filter directives such as \"info\" or \"kura=debug\", got {:?}: {err}",
                self.log.level
            );
        }
        self.ipfs.validate()?;
        Ok(())
    }

    /// Returns the separate metrics address, or `None` when `/metrics` shares `server.listen`.
    pub fn metrics_listen_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        let listen = self.metrics.listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        let addr = listen.parse().with_context(|| {
            format!(
                "metrics.listen must be empty or an IP address and port such as 127.0.0.1:9090, got {listen:?}"
            )
        })?;
        Ok(Some(addr))
    }

    /// Returns the public URL base of a server bound to `addr` when `server.public_url` is unset.
    /// An unspecified address (`0.0.0.0`, `[::]`) becomes the loopback address of its family.
    pub fn public_url_for(addr: SocketAddr) -> String {
        let ip = match addr.ip() {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, addr.port()))
    }

    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.server.listen.parse().with_context(|| {
            format!(
                "server.listen must be an IP address and port such as 127.0.0.1:8080, got {:?}",
                self.server.listen
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_documented_values() {
        let config = Config::default();
        assert_eq!(config.server.listen, "127.0.0.1:8080");
        assert_eq!(config.server.public_url, "");
        assert_eq!(config.storage.data_dir, PathBuf::from("./data"));
        assert_eq!(config.storage.max_upload_bytes, 1 << 30);
        assert_eq!(config.storage.max_batch_files, 50);
        assert_eq!(config.storage.max_source_pixels, 100_000_000);
        assert_eq!(config.storage.max_frames, 1000);
        assert_eq!(config.storage.min_free_bytes, 1 << 30);
        assert!(!config.ipfs.enabled);
        assert_eq!(config.metrics.listen, "");
        assert_eq!(config.log.format, LogFormat::Human);
        assert_eq!(config.log.level, "info");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("[storage]\nmax_uplod_bytes = 5\n").unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("max_uplod_bytes"), "{message}");
    }

    #[test]
    fn unknown_section_is_named() {
        let err = Config::from_toml("[stroage]\n").unwrap_err();
        assert!(format!("{err:#}").contains("stroage"));
    }

    #[test]
    fn precedence_defaults_file_flags() {
        let mut config = Config::from_toml(
            "[server]\nlisten = \"127.0.0.1:9000\"\npublic_url = \"http://file.example\"\n\
             [storage]\ndata_dir = \"/from/file\"\nmax_batch_files = 7\n",
        )
        .unwrap();
        // The file replaces defaults it names and keeps the rest.
        assert_eq!(config.server.listen, "127.0.0.1:9000");
        assert_eq!(config.storage.max_batch_files, 7);
        assert_eq!(config.storage.max_upload_bytes, 1 << 30);

        config.apply(&Overrides {
            listen: Some("127.0.0.1:9001".into()),
            data_dir: None,
            public_url: Some("https://flag.example/".into()),
        });
        config.validate().unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:9001");
        assert_eq!(config.storage.data_dir, PathBuf::from("/from/file"));
        assert_eq!(config.server.public_url, "https://flag.example");
    }

    #[test]
    fn unset_public_url_follows_listen() {
        for (listen, expected) in [
            ("127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("127.0.0.1:9100", "http://127.0.0.1:9100"),
            ("0.0.0.0:80", "http://127.0.0.1:80"),
            ("[::]:8080", "http://[::1]:8080"),
            ("[::1]:8443", "http://[::1]:8443"),
            // Known only once bound: `serve` fills it in.
            ("127.0.0.1:0", ""),
        ] {
            let mut config = Config::default();
            config.server.listen = listen.to_owned();
            config.validate().unwrap();
            assert_eq!(config.server.public_url, expected, "{listen}");
        }
    }

    #[test]
    fn invalid_listen_is_rejected() {
        let mut config = Config::default();
        config.server.listen = "localhost".into();
        let message = format!("{:#}", config.validate().unwrap_err());
        assert!(message.contains("server.listen"), "{message}");
    }

    #[test]
    fn invalid_metrics_listen_is_rejected() {
        let mut config = Config::default();
        config.metrics.listen = "metrics:9090".into();
        let message = format!("{:#}", config.validate().unwrap_err());
        assert!(message.contains("metrics.listen"), "{message}");
        assert!(message.contains("metrics:9090"), "{message}");
    }

    #[test]
    fn log_settings_parse_and_validate() {
        let mut config =
            Config::from_toml("[log]\nformat = \"json\"\nlevel = \"kura=debug,warn\"\n").unwrap();
        assert_eq!(config.log.format, LogFormat::Json);
        config.validate().unwrap();

        let err = Config::from_toml("[log]\nformat = \"xml\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("xml"), "{err:#}");

        config.log.level = "kura=loud".into();
        let message = format!("{:#}", config.validate().unwrap_err());
        assert!(message.contains("log.level"), "{message}");
    }
}
