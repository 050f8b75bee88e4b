//! Configuration: TOML text → [`raw::RawConfig`] (serde, unknown keys are
//! errors) → validated [`Config`] (every error with file, line and key, all
//! reported at once). `denwa check` and a SIGHUP reload run the same path.
//!
//! This module never opens sockets or starts tasks; building the running
//! appliance from a [`Config`] is [`crate::server`]'s job.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::media::recording::RecordingLayout;
use crate::media::sound::Sound;
use crate::media::tones::ToneProfile;

mod acd;
pub mod locate;
pub mod raw;
pub mod telephony;
mod validate;

pub use telephony::{
    DtmfMode, Forward, Number, OutboundClass, OutboundConfig, Presentation, RegisterSettings,
    Route, Telephony, Trunk, TrunkCodec, TrunkKind,
};

/// The configuration shipped with denwa; also used by `denwa run` when no
/// configuration file exists at the default path.
pub const DEFAULT_TOML: &str = include_str!("../../config/denwa.toml");

/// Default location of the configuration file.
pub const DEFAULT_PATH: &str = "config/denwa.toml";

/// A validated configuration. Everything in it has been checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (for messages and reload).
    pub source: PathBuf,
    pub sip: SipConfig,
    pub registrar: RegistrarConfig,
    pub auth: AuthSettings,
    pub media: MediaConfig,
    pub recording: RecordingConfig,
    pub storage: StorageConfig,
    pub log: LogConfig,
    pub http: HttpConfig,
    pub calls: CallsConfig,
    pub conference: ConferenceConfig,
    pub features: FeatureCodes,
    /// Extensions by number.
    pub extensions: BTreeMap<String, Extension>,
    /// Trunks, numbers (DIDs), forwards and the outbound rules.
    pub telephony: Telephony,
    /// Agents, groups (queues) and pause reasons.
    pub acd: crate::acd::AcdConfig,
}

#[derive(Debug, Clone)]
pub struct SipConfig {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    /// SIP domain, also the digest realm.
    pub domain: String,
    /// Address written into Via/Contact/Record-Route when the listen address
    /// is a wildcard.
    pub advertise: Option<IpAddr>,
    pub user_agent: String,
    pub t1: Duration,
    pub max_tcp_connections: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct RegistrarConfig {
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
}

/// Digest algorithms denwa offers (challenged strongest first, RFC 8760).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    Sha256,
    Md5,
}

/// What a locked-out source gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockoutResponse {
    /// No answer at all.
    Drop,
    /// `403 Forbidden`.
    Forbidden,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub algorithms: Vec<DigestAlgorithm>,
    pub nonce_ttl: Duration,
    pub lockout_threshold: u32,
    pub lockout_window: Duration,
    pub lockout_for: Duration,
    pub lockout_response: LockoutResponse,
}

#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Address RTP sockets bind to and that SDP advertises; `None` = the
    /// local address the SIP message arrived on.
    pub address: Option<IpAddr>,
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    /// Media worker threads; 0 = one per core.
    pub workers: usize,
    /// Directories searched for prompts, in order.
    pub sounds: Vec<PathBuf>,
    /// Music on hold, loaded and checked (8000 Hz mono 16-bit WAV); empty
    /// when the configured place does not exist (then the held party hears
    /// silence).
    pub music_on_hold: Vec<Arc<Sound>>,
    /// Call-progress tones of this country ("JP", "US").
    pub tones: ToneProfile,
    /// Listen for DTMF tones in the audio of legs without RFC 4733.
    pub inband_dtmf: bool,
}

#[derive(Debug, Clone)]
pub struct RecordingConfig {
    /// Record every answered call.
    pub enabled: bool,
    pub layout: RecordingLayout,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Absolute, or relative to the configuration file's directory.
    pub data_dir: PathBuf,
}

impl StorageConfig {
    pub fn database(&self) -> PathBuf {
        self.data_dir.join("denwa.sqlite")
    }

    pub fn recordings(&self) -> PathBuf {
        self.data_dir.join("recordings")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A tracing filter directive, such as `info` or `denwa=debug`.
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: Option<SocketAddr>,
    /// The bearer token of the `/api/` routes; `None` leaves them off.
    pub api_token: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct CallsConfig {
    pub no_answer_timeout: Duration,
    pub max_duration: Duration,
    pub shutdown_grace: Duration,
}

/// Numbers that are conference rooms (the room's name is its number).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConferenceConfig {
    pub rooms: Vec<String>,
}

/// Feature-code prefixes a supervisor dials before an agent's extension;
/// `None` disables the feature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeatureCodes {
    pub whisper: Option<String>,
    pub monitor: Option<String>,
    pub barge: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub number: String,
    pub name: String,
    pub password: String,
    pub voicemail: bool,
    pub email: Option<String>,
    /// May monitor, whisper to and barge into other extensions' calls.
    pub supervisor: bool,
    /// What the extension may dial outside (emergency numbers always).
    pub outbound: OutboundClass,
    /// Numbers (national form) the extension may present; empty: any.
    pub caller_ids: Vec<String>,
}

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// Dotted key path, such as `extensions[2].password`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: ", self.file.display(), line)?,
            None => write!(f, "{}: ", self.file.display())?,
        }
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Read and validate a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            line: None,
            key: String::new(),
            message: format!("cannot read: {e}"),
        }])
    })?;
    let base = path.parent().map(Path::to_owned).unwrap_or_default();
    parse(&text, path, &base)
}

/// Validate configuration text. `base` is the directory relative paths in
/// it are resolved against.
pub fn parse(text: &str, file: &Path, base: &Path) -> Result<Config, ConfigErrors> {
    let raw: raw::RawConfig = toml::from_str(text).map_err(|e| {
        let offset = e.span().map(|s| s.start);
        // One line per error, whatever the parser's own layout.
        let message = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
        ConfigErrors(vec![ConfigError {
            file: file.to_owned(),
            line: offset.map(|o| locate::line_of(text, o)),
            key: offset
                .and_then(|o| locate::Locator::new(text).key_at(o))
                .unwrap_or_default(),
            message,
        }])
    })?;
    validate::validate(raw, text, file, base)
}
