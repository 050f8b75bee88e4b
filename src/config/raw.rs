//! The configuration file as written: serde structs that mirror the TOML
//! one-to-one. Unknown keys are errors; every key has a default so an empty
//! file is a valid (if useless) configuration. Nothing here checks meaning:
//! that is [`super::validate`].

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub sip: RawSip,
    pub registrar: RawRegistrar,
    pub auth: RawAuth,
    pub media: RawMedia,
    pub recording: RawRecording,
    pub storage: RawStorage,
    pub log: RawLog,
    pub http: RawHttp,
    pub calls: RawCalls,
    pub conference: RawConference,
    pub features: RawFeatures,
    pub extensions: Vec<RawExtension>,
    pub trunks: Vec<RawTrunk>,
    pub numbers: Vec<RawNumber>,
    pub forwards: Vec<RawForward>,
    pub outbound: RawOutbound,
    pub acd: crate::acd::RawAcd,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSip {
    pub udp: Vec<String>,
    pub tcp: Vec<String>,
    pub domain: String,
    pub advertise: Option<String>,
    pub user_agent: String,
    pub t1_ms: u64,
    pub max_tcp_connections: usize,
}

impl Default for RawSip {
    fn default() -> Self {
        RawSip {
            udp: vec!["0.0.0.0:5060".into()],
            tcp: vec!["0.0.0.0:5060".into()],
            domain: "denwa.local".into(),
            advertise: None,
            user_agent: format!("denwa/{}", env!("CARGO_PKG_VERSION")),
            t1_ms: 500,
            max_tcp_connections: 1024,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRegistrar {
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
}

impl Default for RawRegistrar {
    fn default() -> Self {
        RawRegistrar {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 600,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    pub algorithms: Vec<String>,
    pub nonce_ttl_secs: u64,
    pub lockout_threshold: u32,
    pub lockout_window_secs: u64,
    pub lockout_secs: u64,
    pub lockout_response: String,
}

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth {
            algorithms: vec!["MD5".into()],
            nonce_ttl_secs: 300,
            lockout_threshold: 5,
            lockout_window_secs: 60,
            lockout_secs: 600,
            lockout_response: "drop".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMedia {
    pub address: Option<String>,
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    pub workers: usize,
    pub sounds: Vec<String>,
    pub music_on_hold: String,
    pub tones: String,
    pub inband_dtmf: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRecording {
    pub enabled: bool,
    pub layout: String,
}

impl Default for RawRecording {
    fn default() -> Self {
        RawRecording {
            enabled: true,
            layout: "stereo".into(),
        }
    }
}

impl Default for RawMedia {
    fn default() -> Self {
        RawMedia {
            address: None,
            rtp_port_min: 10000,
            rtp_port_max: 20000,
            workers: 0,
            sounds: vec![
                "sounds".into(),
                "/usr/share/asterisk/sounds/en_US_f_Allison".into(),
            ],
            music_on_hold: "/usr/share/asterisk/moh".into(),
            tones: "JP".into(),
            inband_dtmf: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStorage {
    pub data_dir: String,
}

impl Default for RawStorage {
    fn default() -> Self {
        RawStorage {
            data_dir: "data".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub level: String,
    pub format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHttp {
    pub listen: Option<String>,
    pub api_token: Option<String>,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: Some("127.0.0.1:8080".into()),
            api_token: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCalls {
    pub no_answer_timeout_secs: u64,
    pub max_duration_secs: u64,
    pub shutdown_grace_secs: u64,
}

impl Default for RawCalls {
    fn default() -> Self {
        RawCalls {
            no_answer_timeout_secs: 30,
            max_duration_secs: 4 * 3600,
            shutdown_grace_secs: 30,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConference {
    pub rooms: Vec<String>,
}

impl Default for RawConference {
    fn default() -> Self {
        RawConference {
            rooms: vec!["9201".into(), "9202".into(), "9203".into()],
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFeatures {
    pub whisper: String,
    pub monitor: String,
    pub barge: String,
}

impl Default for RawFeatures {
    fn default() -> Self {
        RawFeatures {
            whisper: "994".into(),
            monitor: "995".into(),
            barge: "996".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExtension {
    pub number: String,
    #[serde(default)]
    pub name: String,
    pub password: String,
    #[serde(default)]
    pub voicemail: bool,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub supervisor: bool,
    /// "forbidden", "internal", "national" or "international".
    #[serde(default = "default_outbound_class")]
    pub outbound: String,
    #[serde(default)]
    pub caller_ids: Vec<String>,
}

fn default_outbound_class() -> String {
    "national".into()
}

/// One `[[trunks]]` block: a carrier connection.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrunk {
    pub name: String,
    /// "register" or "ip".
    pub kind: String,
    pub host: String,
    #[serde(default = "default_sip_port")]
    pub port: u16,
    #[serde(default = "default_transport")]
    pub transport: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub realm: Option<String>,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default = "default_codecs")]
    pub codecs: Vec<String>,
    #[serde(default = "default_dtmf")]
    pub dtmf: String,
    #[serde(default = "default_caller_id_format")]
    pub caller_id_format: String,
    #[serde(default = "default_register_expires")]
    pub register_expires: u32,
}

fn default_sip_port() -> u16 {
    5060
}
fn default_transport() -> String {
    "udp".into()
}
fn default_codecs() -> Vec<String> {
    vec!["PCMU".into(), "PCMA".into()]
}
fn default_dtmf() -> String {
    "rfc4733".into()
}
fn default_caller_id_format() -> String {
    "national".into()
}
fn default_register_expires() -> u32 {
    3600
}

/// One `[[numbers]]` block: a DID.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNumber {
    pub number: String,
    #[serde(default)]
    pub name: String,
    pub trunk: String,
    pub route: String,
    #[serde(default)]
    pub max_channels: u32,
    #[serde(default)]
    pub incoming_display: String,
    #[serde(default)]
    pub outgoing_display: String,
    #[serde(default)]
    pub screen_pop_url: Option<String>,
    #[serde(default)]
    pub outbound_prefix: Option<String>,
}

/// One `[[forwards]]` block: a named external forward.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForward {
    pub name: String,
    pub destination: String,
    /// "called" or one of the configured numbers.
    #[serde(default = "default_present")]
    pub present: String,
}

fn default_present() -> String {
    "called".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOutbound {
    pub default_number: Option<String>,
    pub emergency: Vec<String>,
    pub country_code: String,
    pub national_prefix: String,
    pub international_prefix: String,
    pub withhold_prefix: String,
    pub restricted_announcement: String,
}

impl Default for RawOutbound {
    fn default() -> Self {
        RawOutbound {
            default_number: None,
            emergency: vec!["110".into(), "118".into(), "119".into()],
            country_code: "81".into(),
            national_prefix: "0".into(),
            international_prefix: "010".into(),
            withhold_prefix: "184".into(),
            restricted_announcement: "cannot-complete-as-dialed".into(),
        }
    }
}
