use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

use kith::config::Config;
use kith::generate;

#[derive(Parser)]
#[command(name = "kith", version, about = "A Matrix homeserver built for finding people across a federation")]
struct Cli {
    /// Path to homeserver.yaml.
    #[arg(long, short = 'c', global = true, default_value = "homeserver.yaml")]
    config: PathBuf,
    /// Write a config and a signing key first if they do not exist yet.
    #[arg(long)]
    generate_missing: bool,
    /// The server name for a config written by --generate-missing.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// User directory maintenance.
    Directory {
        #[command(subcommand)]
        action: DirectoryCommand,
    },
    /// Write a commented homeserver.yaml with fresh secrets and a fresh signing key.
    GenerateConfig {
        #[arg(long)]
        server_name: String,
        #[arg(long, short = 'o', default_value = "homeserver.yaml")]
        output: PathBuf,
    },
}

#[derive(Subcommand)]
enum DirectoryCommand {
    /// Rebuild the directory index from the database, with a progress bar, and have a
    /// running server rebuild its own.
    Rebuild,
}

/// Buffers of a megabyte or more go back to the system when freed. glibc otherwise
/// raises that bar to the size of the first big buffer freed (a password hash's 19 MiB)
/// and keeps later ones in the arena of the thread that freed them: about 40 MiB in each
/// of up to eight arenas per core once many users registered or logged in.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_big_buffers() {
    /// `M_MMAP_THRESHOLD` of glibc's `malloc.h`.
    const MMAP_THRESHOLD: i32 = -3;
    unsafe extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    // SAFETY: glibc's own signature; it only sets an allocator parameter, before any
    // other thread exists.
    unsafe { mallopt(MMAP_THRESHOLD, 1 << 20) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_big_buffers() {}

fn main() -> std::process::ExitCode {
    return_big_buffers();
    let reload = init_logging();
    match run(reload) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("kith: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

type LogReload = tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>;

fn run(reload: LogReload) -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::GenerateConfig { server_name, output }) => {
            generate::write_config(&server_name, &output)?;
            println!("wrote {} and its signing key", output.display());
            Ok(())
        }
        Some(Command::Directory { action: DirectoryCommand::Rebuild }) => {
            let config = Config::load(&cli.config)?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(kith::directory_cli::rebuild(config))
        }
        None => {
            let config = if cli.generate_missing {
                generate::generate_missing(&cli.server_name, &cli.config)?
            } else {
                Config::load(&cli.config)?
            };
            if std::env::var_os("RUST_LOG").is_none() {
                let filter = EnvFilter::try_new(with_quiet_libraries(&config.log_level))
                    .context("log_level: invalid log level")?;
                reload.reload(filter).context("cannot apply log_level")?;
            }
            let config_dir = cli.config.parent().map(Path::to_path_buf).unwrap_or_default();
            let runtime = tokio::runtime::Runtime::new()?;
            let result = runtime.block_on(kith::server::run(config, &config_dir));
            // Background tasks end with the runtime; blocking ones get a moment.
            runtime.shutdown_timeout(std::time::Duration::from_secs(2));
            result
        }
    }
}

/// State resolution logs several lines per event at `info`; it speaks at `warn` unless
/// the level names it.
fn with_quiet_libraries(level: &str) -> String {
    if level.contains("ruma_state_res") { level.to_owned() } else { format!("{level},ruma_state_res=warn") }
}

fn init_logging() -> LogReload {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(with_quiet_libraries("info")));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal()))
        .init();
    handle
}
