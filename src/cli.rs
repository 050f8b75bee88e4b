//! Command line: `denwa run`, `denwa check`, `denwa list`, `--version`,
//! `--help`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, LogFormat};
use crate::server::{self, ConfigSource};

mod list;

#[derive(Debug, Parser)]
#[command(
    name = "denwa",
    version,
    about = "denwa: a call-center PBX appliance in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the appliance.
    Run {
        /// Configuration file (default: config/denwa.toml, or the built-in
        /// defaults when that file does not exist).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate the configuration and report every error; exit 1 on any.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Manage the inbound blocklist and the outbound restriction list.
    List {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(value_enum)]
        list: list::ListName,
        #[command(subcommand)]
        action: list::ListAction,
    },
}

fn source(path: Option<PathBuf>) -> ConfigSource {
    match path {
        Some(p) => ConfigSource::File(p),
        None if Path::new(config::DEFAULT_PATH).exists() => {
            ConfigSource::File(config::DEFAULT_PATH.into())
        }
        None => ConfigSource::Embedded,
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DENWA_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => {
            let src = source(config);
            match src.load() {
                Ok(c) => {
                    println!(
                        "{}: ok ({} extensions)",
                        c.source.display(),
                        c.extensions.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    eprintln!("{errors}");
                    eprintln!("{} error(s)", errors.0.len());
                    ExitCode::FAILURE
                }
            }
        }
        Command::List {
            config,
            list,
            action,
        } => match source(config).load() {
            Ok(c) => list::run(c.storage.database(), list, action),
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::from(78)
            }
        },
        Command::Run { config } => {
            let src = source(config);
            let config = match src.load() {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::from(78); // EX_CONFIG
                }
            };
            init_logging(&config);
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("denwa: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(server::run(src, config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("denwa: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
