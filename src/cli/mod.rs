//! Command-line parsing and one function per command. Business logic lives in the library modules.

mod gc;
mod import;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Overrides};
use crate::http::AppState;
use crate::ops;
use crate::store::{self, Index, ProbeLimits, Store};

#[derive(Debug, Parser)]
#[command(
    name = "kura",
    version,
    about = "Self-hosted media server: content-addressed storage with ImageKit-style delivery URLs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve(ServeArgs),
    /// Create, list and revoke API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Import files and folders (recursively) into the store, skipping what is already stored.
    Import(import::ImportArgs),
    /// Remove blob files no record uses and leftover temp files, and report the bytes freed.
    Gc(gc::GcArgs),
    /// Print counts and bytes of media records, blobs, replication jobs and cached variants.
    Stats(stats::StatsArgs),
    /// Rehash every stored blob and report missing or corrupt ones; exits 1 unless all are intact.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub common: ConfigArgs,
    /// Restore missing and corrupt blobs from the IPFS node at ipfs.api_url, by their CID.
    #[arg(long)]
    pub repair: bool,
}

/// Options every command that opens the data directory takes.
#[derive(Debug, Args, Clone, Default)]
pub struct ConfigArgs {
    /// Configuration file [default: ./config.toml when it exists, else built-in defaults]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory, overriding storage.data_dir [default: ./data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: ConfigArgs,
    /// Address and port to listen on, overriding server.listen [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Base of public file URLs, overriding server.public_url [default: http://127.0.0.1:8080]
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an API key and print it (only the key) on stdout.
    Create {
        /// Name that identifies the key in `kura key list` and `kura key revoke`.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        common: ConfigArgs,
    },
    /// List key names, their prefixes and creation times.
    List {
        #[command(flatten)]
        common: ConfigArgs,
    },
    /// Revoke the key with this name.
    Revoke {
        name: String,
        #[command(flatten)]
        common: ConfigArgs,
    },
}

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Key(command) => key(command),
        Command::Verify(args) => crate::ipfs::cli::verify(args),
        Command::Import(args) => import::run(args),
        Command::Gc(args) => gc::run(args),
        Command::Stats(args) => stats::run(args),
    }
}

pub(crate) fn load_config(
    common: &ConfigArgs,
    listen: Option<String>,
    public_url: Option<String>,
) -> anyhow::Result<Config> {
    let overrides = Overrides {
        listen,
        data_dir: common.data_dir.clone(),
        public_url,
    };
    let config = Config::load(common.config.as_deref(), &overrides)?;
    // Logging starts here because its format and level come from the configuration.
    ops::logging::init(&config.log)?;
    Ok(config)
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.common, args.listen, args.public_url)?;
    if args.print_config {
        print!("{}", toml::to_string_pretty(&config)?);
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(serve_async(config))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve_async(mut config: Config) -> anyhow::Result<()> {
    tracing::info!(config = %ops::logging::redacted_config(&config), "effective configuration");
    let addr = config.listen_addr()?;
    let store = open_store(&config)?;
    ensure_first_key(store.index())?;

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("failed to listen on {addr} (server.listen)"))?;
    let metrics_listener = match config.metrics_listen_addr()? {
        Some(metrics_addr) => {
            let metrics_listener = tokio::net::TcpListener::bind(metrics_addr)
                .await
                .with_context(|| format!("failed to listen on {metrics_addr} (metrics.listen)"))?;
            tracing::info!(listen = %metrics_listener.local_addr()?, "serving metrics");
            Some(metrics_listener)
        }
        None => None,
    };
    let local_addr = listener.local_addr()?;
    if config.server.public_url.is_empty() {
        config.server.public_url = Config::public_url_for(local_addr);
    }
    let storage = &config.storage;
    tracing::info!(
        listen = %local_addr,
        data_dir = %storage.data_dir.display(),
        public_url = %config.server.public_url,
        max_upload_bytes = storage.max_upload_bytes,
        max_batch_files = storage.max_batch_files,
        max_source_pixels = storage.max_source_pixels,
        max_frames = storage.max_frames,
        max_connections = config.server.max_connections,
        ipfs_enabled = config.ipfs.enabled,
        "kura is serving"
    );
    let state = AppState::new(config, store)?;
    let shutdown = CancellationToken::new();
    let metrics_task = match metrics_listener {
        Some(metrics_listener) => {
            let state = state.clone();
            let stop = shutdown.clone().cancelled_owned();
            Some(tokio::spawn(ops::metrics_http::run_listener(
                metrics_listener,
                state,
                stop,
            )))
        }
        None => None,
    };
    let replication = crate::ipfs::start(&state.store, &state.config.ipfs)?;
    let stop = shutdown.clone();
    let signalled = shutdown_signal();
    ops::systemd::notify_ready(&local_addr.to_string());
    crate::http::server::run(listener, state, async move {
        signalled.await;
        ops::systemd::notify_stopping();
        stop.cancel();
    })
    .await?;
    shutdown.cancel();
    if let Some(task) = metrics_task {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(error = %err, "metrics listener failed"),
            Err(err) => tracing::error!(error = %err, "metrics listener task failed"),
        }
    }
    replication.stop().await;
    tracing::info!("server stopped; database closed");
    Ok(())
}

/// Opens the store for the configured data directory.
pub fn open_store(config: &Config) -> anyhow::Result<Store> {
    let limits = ProbeLimits {
        max_source_pixels: config.storage.max_source_pixels,
        max_frames: config.storage.max_frames,
    };
    let mut store = Store::open(&config.storage.data_dir, limits)?;
    store.configure_ipfs(&config.ipfs);
    Ok(store)
}

/// Creates a key named `default` when the data directory has none, and prints it once.
fn ensure_first_key(index: &Index) -> anyhow::Result<()> {
    if index.api_key_count()? > 0 {
        return Ok(());
    }
    let key = store::create_api_key(index, "default")?;
    // Printed on purpose: this is the only moment the operator can learn the first key.
    tracing::warn!(
        "created the first API key, named \"default\": {key}  (it is shown only now; store it safely, and create more with `kura key create --name NAME`)"
    );
    Ok(())
}

/// Installs the SIGINT and SIGTERM handlers now and returns a future that resolves on either.
/// Installing them before the server reports readiness means a signal sent right after
/// readiness is handled as a graceful shutdown, never the default kill.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        let (mut interrupt, mut terminate) = match (interrupt, terminate) {
            (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
            (Err(err), _) | (_, Err(err)) => {
                tracing::error!(error = %err, "failed to install signal handlers; stop the server with SIGKILL");
                return std::future::pending().await;
            }
        };
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("received SIGINT"),
            _ = terminate.recv() => tracing::info!("received SIGTERM"),
        }
    }
}

fn open_index(common: &ConfigArgs) -> anyhow::Result<Index> {
    let config = load_config(common, None, None)?;
    let data_dir = &config.storage.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("failed to create data directory {}", data_dir.display()))?;
    Ok(Index::open(&data_dir.join(store::DB_FILE))?)
}

fn key(command: KeyCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeyCommand::Create { name, common } => {
            let name = name.trim();
            if name.is_empty() {
                anyhow::bail!("--name must not be empty");
            }
            let index = open_index(&common)?;
            let key = store::create_api_key(&index, name)?;
            println!("{key}");
        }
        KeyCommand::List { common } => {
            let index = open_index(&common)?;
            let keys = index.list_api_keys()?;
            if keys.is_empty() {
                eprintln!("no API keys; create one with `kura key create --name NAME`");
            }
            for key in keys {
                println!("{}\t{}…\t{}", key.name, key.prefix, key.created_at);
            }
        }
        KeyCommand::Revoke { name, common } => {
            let index = open_index(&common)?;
            index.revoke_api_key(&name)?;
            eprintln!("revoked API key {name:?}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
