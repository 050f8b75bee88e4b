//! Raw → validated. Collects every error instead of stopping at the first.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::locate::{Locator, Seg};
use super::raw::{RawConference, RawConfig, RawFeatures};
use super::*;

pub(super) struct Errors<'a> {
    file: &'a Path,
    locator: Locator,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    pub(super) fn push(&mut self, path: &[Seg], message: impl Into<String>) {
        let key = path
            .iter()
            .map(|s| match s {
                Seg::Key(k) => format!(".{k}"),
                Seg::Index(i) => format!("[{i}]"),
            })
            .collect::<String>()
            .trim_start_matches('.')
            .to_owned();
        self.list.push(ConfigError {
            file: self.file.to_owned(),
            line: self.locator.line(path),
            key,
            message: message.into(),
        });
    }
}

use Seg::{Index, Key};

fn addrs(
    errs: &mut Errors,
    section: &'static str,
    key: &'static str,
    v: &[String],
) -> Vec<SocketAddr> {
    v.iter()
        .enumerate()
        .filter_map(|(i, s)| match s.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                errs.push(
                    &[Key(section), Key(key), Index(i)],
                    format!("`{s}` is not an address:port (use `[::1]:5060` for IPv6)"),
                );
                None
            }
        })
        .collect()
}

fn ip(errs: &mut Errors, path: &[Seg], v: &Option<String>) -> Option<IpAddr> {
    let s = v.as_ref()?;
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            errs.push(path, format!("`{s}` is not an IP address"));
            None
        }
    }
}

pub(super) fn validate(
    raw: RawConfig,
    text: &str,
    file: &Path,
    base: &Path,
) -> Result<Config, ConfigErrors> {
    let mut errs = Errors {
        file,
        locator: Locator::new(text),
        list: Vec::new(),
    };

    let udp = addrs(&mut errs, "sip", "udp", &raw.sip.udp);
    let tcp = addrs(&mut errs, "sip", "tcp", &raw.sip.tcp);
    if raw.sip.udp.is_empty() && raw.sip.tcp.is_empty() {
        errs.push(&[Key("sip")], "no SIP listener: set `udp` or `tcp`");
    }
    if raw.sip.domain.trim().is_empty() || raw.sip.domain.contains(['"', ' ', '\\']) {
        errs.push(
            &[Key("sip"), Key("domain")],
            "must be a non-empty host name without spaces or quotes",
        );
    }
    let advertise = ip(
        &mut errs,
        &[Key("sip"), Key("advertise")],
        &raw.sip.advertise,
    );
    if !(50..=5000).contains(&raw.sip.t1_ms) {
        errs.push(&[Key("sip"), Key("t1_ms")], "must be between 50 and 5000");
    }

    let r = &raw.registrar;
    if r.min_expires == 0 || r.min_expires > r.max_expires {
        errs.push(
            &[Key("registrar"), Key("min_expires")],
            "must be at least 1 and not above max_expires",
        );
    }
    if !(r.min_expires..=r.max_expires).contains(&r.default_expires) {
        errs.push(
            &[Key("registrar"), Key("default_expires")],
            "must lie between min_expires and max_expires",
        );
    }

    let mut algorithms = Vec::new();
    for (i, a) in raw.auth.algorithms.iter().enumerate() {
        match a.to_ascii_uppercase().as_str() {
            "SHA-256" => algorithms.push(DigestAlgorithm::Sha256),
            "MD5" => algorithms.push(DigestAlgorithm::Md5),
            _ => errs.push(
                &[Key("auth"), Key("algorithms"), Index(i)],
                format!("unknown digest algorithm `{a}` (use \"SHA-256\" or \"MD5\")"),
            ),
        }
    }
    if raw.auth.algorithms.is_empty() {
        errs.push(
            &[Key("auth"), Key("algorithms")],
            "at least one algorithm is needed",
        );
    }
    if raw.auth.nonce_ttl_secs == 0 {
        errs.push(&[Key("auth"), Key("nonce_ttl_secs")], "must be at least 1");
    }
    if raw.auth.lockout_threshold == 0 {
        errs.push(
            &[Key("auth"), Key("lockout_threshold")],
            "must be at least 1",
        );
    }
    let lockout_response = match raw.auth.lockout_response.as_str() {
        "drop" => LockoutResponse::Drop,
        "forbidden" => LockoutResponse::Forbidden,
        other => {
            errs.push(
                &[Key("auth"), Key("lockout_response")],
                format!("`{other}`: use \"drop\" or \"forbidden\""),
            );
            LockoutResponse::Drop
        }
    };

    let m = &raw.media;
    let media_address = ip(&mut errs, &[Key("media"), Key("address")], &m.address);
    if m.rtp_port_min < 1024
        || m.rtp_port_min >= m.rtp_port_max
        || m.rtp_port_max - m.rtp_port_min < 3
    {
        errs.push(&[Key("media"), Key("rtp_port_min")], "the RTP range needs rtp_port_min >= 1024 and room for two port pairs below rtp_port_max");
    }

    let sounds: Vec<PathBuf> = m.sounds.iter().map(|d| relative_to(base, d)).collect();
    let music_on_hold = load_music(&mut errs, &relative_to(base, &m.music_on_hold));
    let tones = ToneProfile::for_country(&m.tones).unwrap_or_else(|| {
        errs.push(
            &[Key("media"), Key("tones")],
            format!("unknown tone country {:?}: use \"JP\" or \"US\"", m.tones),
        );
        ToneProfile::japan()
    });
    let layout = match raw.recording.layout.as_str() {
        "stereo" => RecordingLayout::Stereo,
        "mono" => RecordingLayout::Mono,
        other => {
            errs.push(
                &[Key("recording"), Key("layout")],
                format!("{other:?} is not a layout: use \"stereo\" or \"mono\""),
            );
            RecordingLayout::Stereo
        }
    };

    if raw.storage.data_dir.trim().is_empty() {
        errs.push(&[Key("storage"), Key("data_dir")], "must not be empty");
    }
    let data_dir = {
        let p = PathBuf::from(&raw.storage.data_dir);
        if p.is_absolute() {
            p
        } else {
            base.join(p)
        }
    };

    if tracing_subscriber::EnvFilter::try_new(&raw.log.level).is_err() {
        errs.push(
            &[Key("log"), Key("level")],
            format!(
                "`{}` is not a log filter (try \"info\" or \"denwa=debug\")",
                raw.log.level
            ),
        );
    }
    let format = match raw.log.format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            errs.push(
                &[Key("log"), Key("format")],
                format!("`{other}`: use \"text\" or \"json\""),
            );
            LogFormat::Text
        }
    };
    let http_listen = match &raw.http.listen {
        Some(s) if !s.is_empty() => match s.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                errs.push(
                    &[Key("http"), Key("listen")],
                    format!("`{s}` is not an address:port"),
                );
                None
            }
        },
        _ => None,
    };
    let api_token = raw.http.api_token.clone();
    if let Some(token) = &api_token {
        if let Err(problem) = check_api_token(token) {
            errs.push(&[Key("http"), Key("api_token")], problem);
        }
    }

    let c = &raw.calls;
    if c.no_answer_timeout_secs == 0 || c.no_answer_timeout_secs > 600 {
        errs.push(
            &[Key("calls"), Key("no_answer_timeout_secs")],
            "must be between 1 and 600",
        );
    }
    if c.max_duration_secs < 60 {
        errs.push(
            &[Key("calls"), Key("max_duration_secs")],
            "must be at least 60",
        );
    }

    let mut extensions = BTreeMap::new();
    let mut raw_caller_ids = Vec::new();
    for (i, e) in raw.extensions.into_iter().enumerate() {
        let outbound = super::telephony::outbound_class(&mut errs, i, &e.outbound);
        let at = |k| [Key("extensions"), Index(i), Key(k)];
        if e.number.is_empty()
            || e.number.len() > 15
            || !e.number.bytes().all(|b| b.is_ascii_digit())
        {
            errs.push(
                &at("number"),
                format!("`{}` must be 1 to 15 digits", e.number),
            );
        }
        if e.password.len() < 8 {
            errs.push(&at("password"), "must be at least 8 characters");
        }
        if e.name.contains(['"', '\r', '\n']) {
            errs.push(&at("name"), "must not contain quotes or line breaks");
        }
        if let Some(mail) = &e.email {
            if !mail.contains('@') {
                errs.push(&at("email"), format!("`{mail}` is not an email address"));
            }
        }
        if extensions.contains_key(&e.number) {
            errs.push(
                &at("number"),
                format!("extension {} is defined twice", e.number),
            );
            continue;
        }
        raw_caller_ids.push((i, e.number.clone(), e.caller_ids));
        extensions.insert(
            e.number.clone(),
            Extension {
                number: e.number,
                name: e.name,
                password: e.password,
                voicemail: e.voicemail,
                email: e.email,
                supervisor: e.supervisor,
                outbound,
                caller_ids: Vec::new(),
            },
        );
    }
    let public = super::telephony::RawTelephony {
        trunks: raw.trunks,
        numbers: raw.numbers,
        forwards: raw.forwards,
        outbound: raw.outbound,
        caller_ids: raw_caller_ids,
        groups: raw.acd.groups.iter().map(|g| g.id.clone()).collect(),
    };
    let telephony = super::telephony::validate(&mut errs, public, &mut extensions, &sounds);
    let conference = conference(&mut errs, &raw.conference, &extensions);
    let features = features(&mut errs, &raw.features, &extensions, &conference.rooms);
    let acd = super::acd::validate(
        &mut errs,
        &raw.acd,
        &extensions,
        &conference,
        &features,
        &sounds,
    );

    if !errs.list.is_empty() {
        return Err(ConfigErrors(errs.list));
    }
    Ok(Config {
        source: file.to_owned(),
        sip: SipConfig {
            udp,
            tcp,
            domain: raw.sip.domain,
            advertise,
            user_agent: raw.sip.user_agent,
            t1: Duration::from_millis(raw.sip.t1_ms),
            max_tcp_connections: raw.sip.max_tcp_connections,
        },
        registrar: RegistrarConfig {
            min_expires: r.min_expires,
            max_expires: r.max_expires,
            default_expires: r.default_expires,
        },
        auth: AuthSettings {
            algorithms,
            nonce_ttl: Duration::from_secs(raw.auth.nonce_ttl_secs),
            lockout_threshold: raw.auth.lockout_threshold,
            lockout_window: Duration::from_secs(raw.auth.lockout_window_secs),
            lockout_for: Duration::from_secs(raw.auth.lockout_secs),
            lockout_response,
        },
        media: MediaConfig {
            address: media_address,
            rtp_port_min: m.rtp_port_min,
            rtp_port_max: m.rtp_port_max,
            workers: m.workers,
            sounds,
            music_on_hold,
            tones,
            inband_dtmf: m.inband_dtmf,
        },
        recording: RecordingConfig {
            enabled: raw.recording.enabled,
            layout,
        },
        storage: StorageConfig { data_dir },
        log: LogConfig {
            level: raw.log.level,
            format,
        },
        http: HttpConfig {
            listen: http_listen,
            api_token,
        },
        calls: CallsConfig {
            no_answer_timeout: Duration::from_secs(c.no_answer_timeout_secs),
            max_duration: Duration::from_secs(c.max_duration_secs),
            shutdown_grace: Duration::from_secs(c.shutdown_grace_secs),
        },
        conference,
        features,
        extensions,
        telephony,
        acd,
    })
}

/// 1 to `max` ASCII digits.
/// The API token: long enough not to be guessed, and nothing an HTTP
/// header could mangle.
fn check_api_token(token: &str) -> Result<(), &'static str> {
    if token.len() < 16 {
        return Err("must be at least 16 characters");
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("use printable ASCII without spaces");
    }
    Ok(())
}

fn is_digits(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
}

/// Room numbers: digits like extensions, never an extension's number.
fn conference(
    errs: &mut Errors,
    raw: &RawConference,
    extensions: &BTreeMap<String, Extension>,
) -> ConferenceConfig {
    let mut rooms: Vec<String> = Vec::new();
    for (i, room) in raw.rooms.iter().enumerate() {
        let at = [Key("conference"), Key("rooms"), Index(i)];
        if !is_digits(room, 15) {
            errs.push(&at, format!("`{room}` must be 1 to 15 digits"));
        } else if extensions.contains_key(room) {
            errs.push(
                &at,
                format!("room {room} collides with extension {room}: pick another number"),
            );
        } else if rooms.contains(room) {
            errs.push(&at, format!("room {room} is listed twice"));
        } else {
            rooms.push(room.clone());
        }
    }
    ConferenceConfig { rooms }
}

/// Feature-code prefixes: digits, not an extension or a room, and no code
/// the beginning of another (a dialled number must mean one thing).
fn features(
    errs: &mut Errors,
    raw: &RawFeatures,
    extensions: &BTreeMap<String, Extension>,
    rooms: &[String],
) -> FeatureCodes {
    let mut seen: Vec<(&'static str, String)> = Vec::new();
    let mut code = |key: &'static str, value: &str| -> Option<String> {
        if value.is_empty() {
            return None;
        }
        let at = [Key("features"), Key(key)];
        let problem = if !is_digits(value, 8) {
            Some(format!(
                "`{value}` must be 1 to 8 digits (\"\" disables it)"
            ))
        } else if extensions.contains_key(value) {
            Some(format!("`{value}` is also an extension number"))
        } else if rooms.iter().any(|r| r == value) {
            Some(format!("`{value}` is also a conference room"))
        } else {
            seen.iter()
                .find(|(_, v)| v.starts_with(value) || value.starts_with(v.as_str()))
                .map(|(other, v)| {
                    format!(
                        "`{value}` and features.{other} (`{v}`): one code must not begin the other"
                    )
                })
        };
        if let Some(message) = problem {
            errs.push(&at, message);
            return None;
        }
        seen.push((key, value.to_owned()));
        Some(value.to_owned())
    };
    FeatureCodes {
        whisper: code("whisper", &raw.whisper),
        monitor: code("monitor", &raw.monitor),
        barge: code("barge", &raw.barge),
    }
}

/// A path from the configuration: absolute, or relative to its directory.
fn relative_to(base: &Path, path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
}

/// Music on hold: one WAV file, or every `.wav` in a directory (in name
/// order). Each must be 8000 Hz mono 16-bit; a file that is not is an
/// error naming the file. A place that does not exist means no music.
fn load_music(errs: &mut Errors, place: &Path) -> Vec<Arc<Sound>> {
    let key = [Key("media"), Key("music_on_hold")];
    let files = if place.is_dir() {
        match std::fs::read_dir(place) {
            Ok(entries) => {
                let mut files: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("wav")))
                    .collect();
                files.sort();
                files
            }
            Err(e) => {
                errs.push(&key, format!("{}: {e}", place.display()));
                return Vec::new();
            }
        }
    } else if place.exists() {
        vec![place.to_path_buf()]
    } else {
        return Vec::new();
    };
    let mut sounds = Vec::new();
    for file in files {
        match Sound::load(&file) {
            Ok(sound) => sounds.push(Arc::new(sound)),
            Err(e) => errs.push(&key, e.to_string()),
        }
    }
    sounds
}

#[cfg(test)]
mod tests {
    use super::super::{parse, DEFAULT_TOML};
    use std::path::Path;

    fn errors(text: &str) -> Vec<String> {
        match parse(text, Path::new("t.toml"), Path::new("/base")) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn shipped_defaults_are_valid() {
        let c = parse(
            DEFAULT_TOML,
            Path::new("denwa.toml"),
            Path::new("/etc/denwa"),
        )
        .expect("defaults");
        assert!(!c.extensions.is_empty());
        assert_eq!(c.storage.data_dir, Path::new("/etc/denwa/../data"));
    }

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let e = errors("[sip]\ndomain = \"x\"\nbogus = 1\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("t.toml:3: sip.bogus: unknown field `bogus`"),
            "{e:?}"
        );
        assert!(e[0].contains("bogus"), "{e:?}");
    }

    #[test]
    fn every_validation_error_is_reported_with_file_line_and_key() {
        let text = "[sip]\nudp = [\"nonsense\"]\n\n[media]\nrtp_port_min = 5000\nrtp_port_max = 4000\n\n[[extensions]]\nnumber = \"1000\"\npassword = \"short\"\n\n[[extensions]]\nnumber = \"10a\"\npassword = \"longenough\"\n";
        let e = errors(text);
        assert_eq!(
            e,
            vec![
                "t.toml:2: sip.udp[0]: `nonsense` is not an address:port (use `[::1]:5060` for IPv6)",
                "t.toml:5: media.rtp_port_min: the RTP range needs rtp_port_min >= 1024 and room for two port pairs below rtp_port_max",
                "t.toml:10: extensions[0].password: must be at least 8 characters",
                "t.toml:13: extensions[1].number: `10a` must be 1 to 15 digits",
            ]
        );
    }

    #[test]
    fn syntax_error_is_one_line_with_its_line_number() {
        let e = errors("[sip]\ndomain = \"x\"\n[[extensions]\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("t.toml:3: "), "{e:?}");
        assert!(!e[0].contains('\n'), "{e:?}");
    }

    #[test]
    fn unknown_key_in_an_extension_is_named_with_its_index() {
        let e = errors("[[extensions]]\nnumber = \"1000\"\npassword = \"longenough\"\n\n[[extensions]]\nnumber = \"1001\"\npasword = \"x\"\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("t.toml:7: extensions[1].pasword: unknown field"),
            "{e:?}"
        );
    }

    #[test]
    fn duplicate_extension_is_refused() {
        let text = "[[extensions]]\nnumber = \"1000\"\npassword = \"longenough\"\n[[extensions]]\nnumber = \"1000\"\npassword = \"longenough\"\n";
        let e = errors(text);
        assert_eq!(
            e,
            vec!["t.toml:5: extensions[1].number: extension 1000 is defined twice"]
        );
    }

    #[test]
    fn relative_data_dir_follows_the_config_file() {
        let c = parse(
            "[storage]\ndata_dir = \"/var/lib/denwa\"\n",
            Path::new("t.toml"),
            Path::new("/etc"),
        )
        .expect("valid");
        assert_eq!(
            c.storage.database(),
            Path::new("/var/lib/denwa/denwa.sqlite")
        );
    }

    #[test]
    fn rooms_and_feature_codes_default_to_the_product_numbers() {
        let c = parse("", Path::new("t.toml"), Path::new("/")).expect("valid");
        assert_eq!(c.conference.rooms, ["9201", "9202", "9203"]);
        assert_eq!(c.features.whisper.as_deref(), Some("994"));
        assert_eq!(c.features.monitor.as_deref(), Some("995"));
        assert_eq!(c.features.barge.as_deref(), Some("996"));
    }

    #[test]
    fn supervisor_flag_and_disabled_features_are_read() {
        let text = "[features]\nbarge = \"\"\n[conference]\nrooms = [\"77\"]\n[[extensions]]\nnumber = \"1000\"\npassword = \"longenough\"\nsupervisor = true\n[[extensions]]\nnumber = \"1001\"\npassword = \"longenough\"\n";
        let c = parse(text, Path::new("t.toml"), Path::new("/")).expect("valid");
        assert!(c.extensions["1000"].supervisor);
        assert!(
            !c.extensions["1001"].supervisor,
            "default is not a supervisor"
        );
        assert_eq!(c.features.barge, None, "empty string disables");
        assert_eq!(c.features.monitor.as_deref(), Some("995"));
        assert_eq!(c.conference.rooms, ["77"]);
    }

    #[test]
    fn room_colliding_with_an_extension_is_refused_with_its_line() {
        let text = "[conference]\nrooms = [\"9201\",\n  \"1000\", \"9x\", \"9201\"]\n\n[[extensions]]\nnumber = \"1000\"\npassword = \"longenough\"\n";
        assert_eq!(
            errors(text),
            vec![
                "t.toml:2: conference.rooms[1]: room 1000 collides with extension 1000: pick another number",
                "t.toml:2: conference.rooms[2]: `9x` must be 1 to 15 digits",
                "t.toml:2: conference.rooms[3]: room 9201 is listed twice",
            ]
        );
    }

    #[test]
    fn feature_codes_must_be_distinct_digits() {
        let text = "[conference]\nrooms = [\"50\"]\n[features]\nwhisper = \"99\"\nmonitor = \"995\"\nbarge = \"*6\"\n";
        assert_eq!(
            errors(text),
            vec![
                "t.toml:5: features.monitor: `995` and features.whisper (`99`): one code must not begin the other",
                "t.toml:6: features.barge: `*6` must be 1 to 8 digits (\"\" disables it)",
            ]
        );
        let text = "[conference]\nrooms = [\"50\"]\n[features]\nwhisper = \"50\"\nmonitor = \"1000\"\n[[extensions]]\nnumber = \"1000\"\npassword = \"longenough\"\n";
        assert_eq!(
            errors(text),
            vec![
                "t.toml:4: features.whisper: `50` is also a conference room",
                "t.toml:5: features.monitor: `1000` is also an extension number",
            ]
        );
    }

    #[test]
    fn the_api_token_is_off_by_default_and_checked_when_set() {
        let c = parse("", Path::new("t.toml"), Path::new("/base")).expect("empty");
        assert_eq!(c.http.api_token, None);
        let ok = "[http]\napi_token = \"0123456789abcdef-xyz\"\n";
        let c = parse(ok, Path::new("t.toml"), Path::new("/base")).expect("token");
        assert_eq!(c.http.api_token.as_deref(), Some("0123456789abcdef-xyz"));
        assert_eq!(
            errors("[http]\napi_token = \"short\"\n"),
            ["t.toml:2: http.api_token: must be at least 16 characters"]
        );
        assert_eq!(
            errors("[http]\napi_token = \"0123456789 abcdef\"\n"),
            ["t.toml:2: http.api_token: use printable ASCII without spaces"]
        );
    }

    #[test]
    fn unknown_keys_in_the_new_sections_are_errors() {
        let e = errors("[features]\nintrude = \"997\"\n");
        assert!(
            e[0].starts_with("t.toml:2: features.intrude: unknown field"),
            "{e:?}"
        );
        let e = errors("[conference]\nroom = [\"1\"]\n");
        assert!(
            e[0].starts_with("t.toml:2: conference.room: unknown field"),
            "{e:?}"
        );
        let e = errors(
            "[[extensions]]\nnumber = \"1000\"\npassword = \"longenough\"\nsupervisor = \"yes\"\n",
        );
        assert!(e[0].starts_with("t.toml:4: "), "{e:?}");
    }

    #[test]
    fn trunks_numbers_and_forwards_are_checked_with_their_lines() {
        let text = "[[extensions]]\nnumber = \"1001\"\npassword = \"longenough\"\noutbound = \"world\"\ncaller_ids = [\"0399999999\"]\n\n\
[[trunks]]\nname = \"t1\"\nkind = \"register\"\nhost = \"carrier.example\"\ntransport = \"tcp\"\n\n\
[[trunks]]\nname = \"t2\"\nkind = \"ip\"\nhost = \"192.0.2.1\"\n\n\
[[trunks]]\nname = \"t3\"\nkind = \"ip\"\nhost = \"2001:db8::1\"\naddresses = [\"2001:db8::1\"]\n\n\
[[numbers]]\nnumber = \"0312345678\"\ntrunk = \"t2\"\nroute = \"group:sales\"\n\n\
[[numbers]]\nnumber = \"03-1\"\ntrunk = \"t9\"\nroute = \"extension:1001\"\nscreen_pop_url = \"https://crm/\"\n";
        assert_eq!(
            errors(text),
            vec![
                "t.toml:4: extensions[0].outbound: `world`: use \"forbidden\", \"internal\", \"national\" or \"international\"",
                "t.toml:10: trunks[0].host: `carrier.example`: give the carrier's IP address (host names are not resolved yet)",
                "t.toml:11: trunks[0].transport: \"tcp\" is not available yet for trunks: use \"udp\"",
                "t.toml:7: trunks[0].username: a register trunk needs a username without spaces, quotes or '@'",
                "t.toml:7: trunks[0].password: a register trunk needs a password",
                "t.toml:13: trunks[1].addresses: an ip trunk needs the carrier's addresses",
                "t.toml:21: trunks[2].host: `2001:db8::1`: IPv6 trunk hosts are not available yet",
                "t.toml:27: numbers[0].route: no [acd] group with id sales",
                "t.toml:30: numbers[1].number: `03-1` is not a telephone number (digits, optionally a leading +)",
                "t.toml:31: numbers[1].trunk: no trunk named t9",
                "t.toml:33: numbers[1].screen_pop_url: must contain @@@@ (the caller's number) and no spaces",
                "t.toml:5: extensions[0].caller_ids[0]: `0399999999` is not one of the [[numbers]]",
            ]
        );
    }

    #[test]
    fn a_complete_public_network_section_is_read() {
        let text = "[outbound]\ndefault_number = \"+81312345678\"\nemergency = [\"110\", \"119\"]\n\
[[extensions]]\nnumber = \"1001\"\npassword = \"longenough\"\ncaller_ids = [\"81312345678\"]\n\
[[extensions]]\nnumber = \"1002\"\npassword = \"longenough\"\noutbound = \"forbidden\"\n\
[[trunks]]\nname = \"hikari\"\nkind = \"ip\"\nhost = \"192.0.2.1\"\naddresses = [\"192.0.2.1\"]\ncaller_id_format = \"e164\"\n\
[[numbers]]\nnumber = \"0312345678\"\ntrunk = \"hikari\"\nroute = \"forward:office\"\nmax_channels = 4\n\
[[forwards]]\nname = \"office\"\ndestination = \"0655556666\"\n";
        let c = parse(text, Path::new("t.toml"), Path::new("/")).expect("valid");
        let t = &c.telephony;
        assert_eq!(t.outbound.default_number.as_deref(), Some("0312345678"));
        assert_eq!(t.numbers["0312345678"].max_channels, Some(4));
        assert_eq!(
            t.numbers["0312345678"].route,
            crate::config::Route::Forward("office".into())
        );
        assert_eq!(
            t.forwards["office"].present,
            crate::config::Presentation::Called
        );
        assert_eq!(c.extensions["1001"].caller_ids, ["0312345678"]);
        assert_eq!(
            c.extensions["1001"].outbound,
            crate::config::OutboundClass::National,
            "default"
        );
        assert_eq!(
            c.extensions["1002"].outbound,
            crate::config::OutboundClass::Forbidden
        );
    }

    #[test]
    fn a_sound_route_needs_a_sound_that_loads() {
        let dir = tempfile::tempdir().unwrap();
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(dir.path().join("closed.wav"), spec).unwrap();
        for _ in 0..800 {
            w.write_sample(0i16).unwrap();
        }
        w.finalize().unwrap();
        let base = format!(
            "[media]\nsounds = [\"{}\"]\n\
             [[trunks]]\nname = \"t\"\nkind = \"ip\"\nhost = \"192.0.2.1\"\naddresses = [\"192.0.2.1\"]\n\
             [[numbers]]\nnumber = \"0311112222\"\ntrunk = \"t\"\nroute = \"sound:closed\"\n",
            dir.path().display()
        );
        let c = parse(&base, Path::new("t.toml"), Path::new("/")).expect("valid");
        assert_eq!(c.telephony.sounds["closed"].duration_ms(), 100);
        let missing = format!(
            "{base}[[numbers]]\nnumber = \"0311113333\"\ntrunk = \"t\"\nroute = \"sound:gone\"\n"
        );
        let e = errors(&missing);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("t.toml:15: numbers[1].route: "), "{e:?}");
        assert!(e[0].contains("gone"), "{e:?}");
    }
}
