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
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: Some("127.0.0.1:8080".into()),
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
}
