//! The public network side of the configuration: `[[trunks]]` (carrier
//! connections), `[[numbers]]` (DIDs), `[[forwards]]` (named external
//! forwards), `[outbound]` (numbering plan, emergency numbers, default
//! route) and each extension's outbound permission. Validated here, with
//! the same `file:line: key: message` errors as every other section.
//!
//! Must not: resolve names, open sockets or read the store (the lists
//! live in SQLite and are the router's business).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use super::locate::Seg::{Index, Key};
use super::raw::{RawForward, RawNumber, RawOutbound, RawTrunk};
use super::validate::Errors;
use super::Extension;
use crate::media::sound::{Sound, SoundLibrary};
use crate::routing::number::{is_digits, NumberFormat, NumberPlan};

/// How a trunk reaches denwa and is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrunkKind {
    /// denwa registers to the carrier with digest credentials.
    Register(RegisterSettings),
    /// The carrier sends from these addresses; nothing is registered.
    Ip { addresses: Vec<IpAddr> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterSettings {
    pub username: String,
    pub password: String,
    /// Only answer challenges of this realm; `None`: any.
    pub realm: Option<String>,
    /// Registration interval asked for, seconds.
    pub expires: u32,
}

/// How DTMF is sent to a trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfMode {
    Rfc4733,
    Info,
    Inband,
}

/// G.711 laws a trunk takes, in preference order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkCodec {
    Pcmu,
    Pcma,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trunk {
    pub name: String,
    pub kind: TrunkKind,
    pub host: IpAddr,
    pub port: u16,
    pub codecs: Vec<TrunkCodec>,
    pub dtmf: DtmfMode,
    /// How numbers are written towards this trunk.
    pub number_format: NumberFormat,
}

impl Trunk {
    /// Whether a request from `ip` comes from this carrier.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        match &self.kind {
            TrunkKind::Ip { addresses } => addresses.contains(&ip),
            TrunkKind::Register(_) => ip == self.host,
        }
    }
}

/// Where a call to a number goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Extension(String),
    /// A named `[[forwards]]` entry.
    Forward(String),
    /// Play this sound (by name) as early media, then 480.
    Sound(String),
    /// Queue the call in this ACD group (by id).
    Group(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Number {
    /// National form.
    pub number: String,
    pub name: String,
    pub trunk: String,
    pub route: Route,
    /// Simultaneous calls on this number; `None`: no limit.
    pub max_channels: Option<u32>,
    /// Display name shown to the agent on a call to this number.
    pub incoming_display: String,
    /// Display name sent to the carrier on a call from this number.
    pub outgoing_display: String,
    /// `@@@@` stands for the caller's number.
    pub screen_pop_url: Option<String>,
    /// Dialled before a destination, chooses this number for the call.
    pub outbound_prefix: Option<String>,
}

/// Which number a forward presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presentation {
    /// The number the caller called.
    Called,
    /// One of the configured numbers (national form).
    Number(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub name: String,
    /// National form.
    pub destination: String,
    pub present: Presentation,
}

/// What an extension may dial outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum OutboundClass {
    /// Nothing but emergency numbers.
    Forbidden,
    /// Extensions and services only (and emergency numbers).
    Internal,
    /// Numbers of this country.
    #[default]
    National,
    International,
}

impl OutboundClass {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboundClass::Forbidden => "forbidden",
            OutboundClass::Internal => "internal",
            OutboundClass::National => "national",
            OutboundClass::International => "international",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct OutboundConfig {
    /// The number (national form) calls leave on when no prefix chose one.
    pub default_number: Option<String>,
    /// Always allowed, whatever the extension's class.
    pub emergency: Vec<String>,
    pub plan: NumberPlan,
    /// Dialled before a destination: withhold the caller ID (`184`).
    pub withhold_prefix: Option<String>,
    /// Played to a phone that dialled a restricted number; `None` when the
    /// sound is not installed (the call is refused without it).
    pub restricted_announcement: Option<Arc<Sound>>,
}

/// The validated public network side of the configuration.
#[derive(Debug, Clone, Default)]
pub struct Telephony {
    pub trunks: Vec<Trunk>,
    /// By national number.
    pub numbers: BTreeMap<String, Number>,
    pub forwards: BTreeMap<String, Forward>,
    pub outbound: OutboundConfig,
    /// The sounds of `sound:` routes, loaded and checked, by name.
    pub sounds: BTreeMap<String, Arc<Sound>>,
}

/// An outbound class from its configuration word.
pub(super) fn outbound_class(errs: &mut Errors, i: usize, word: &str) -> OutboundClass {
    match word {
        "forbidden" => OutboundClass::Forbidden,
        "internal" => OutboundClass::Internal,
        "national" => OutboundClass::National,
        "international" => OutboundClass::International,
        other => {
            errs.push(
                &[Key("extensions"), Index(i), Key("outbound")],
                format!(
                    "`{other}`: use \"forbidden\", \"internal\", \"national\" or \"international\""
                ),
            );
            OutboundClass::National
        }
    }
}

/// The plan from `[outbound]`; every prefix must be digits.
fn plan(errs: &mut Errors, raw: &RawOutbound) -> NumberPlan {
    for (key, value) in [
        ("country_code", &raw.country_code),
        ("national_prefix", &raw.national_prefix),
        ("international_prefix", &raw.international_prefix),
    ] {
        if !is_digits(value) || value.len() > 4 {
            errs.push(
                &[Key("outbound"), Key(key)],
                format!("`{value}` must be 1 to 4 digits"),
            );
        }
    }
    if raw.international_prefix == raw.national_prefix {
        errs.push(
            &[Key("outbound"), Key("international_prefix")],
            "must differ from national_prefix",
        );
    }
    NumberPlan {
        country_code: raw.country_code.clone(),
        national_prefix: raw.national_prefix.clone(),
        international_prefix: raw.international_prefix.clone(),
    }
}

/// The sections of the file this module validates, as written.
pub(super) struct RawTelephony {
    pub trunks: Vec<RawTrunk>,
    pub numbers: Vec<RawNumber>,
    pub forwards: Vec<RawForward>,
    pub outbound: RawOutbound,
    /// Each extension's caller IDs: (index in the file, number, IDs).
    pub caller_ids: Vec<(usize, String, Vec<String>)>,
    /// The ACD groups' ids, which `group:` routes name.
    pub groups: Vec<String>,
}

/// What a number's route may name.
struct Targets<'a> {
    extensions: &'a BTreeMap<String, Extension>,
    forwards: &'a [String],
    groups: &'a [String],
    library: &'a SoundLibrary,
}

/// Validate trunks, numbers, forwards and `[outbound]`; extensions'
/// caller IDs are checked against the numbers here too.
pub(super) fn validate(
    errs: &mut Errors,
    raw: RawTelephony,
    extensions: &mut BTreeMap<String, Extension>,
    sounds: &[PathBuf],
) -> Telephony {
    let plan = plan(errs, &raw.outbound);
    let trunks = trunks(errs, raw.trunks);
    let forward_names: Vec<String> = raw.forwards.iter().map(|f| f.name.clone()).collect();
    let library = SoundLibrary::new(sounds.to_vec());
    let targets = Targets {
        extensions,
        forwards: &forward_names,
        groups: &raw.groups,
        library: &library,
    };
    let numbers = numbers(errs, raw.numbers, &plan, &trunks, &targets);
    let forwards = forwards(errs, raw.forwards, &plan, &numbers);
    let outbound = outbound(errs, &raw.outbound, plan, &numbers, &library);
    caller_ids(errs, &raw.caller_ids, extensions, &outbound.plan, &numbers);
    // Checked by `route`, so loaded already: the library's cache answers.
    let sounds = numbers
        .values()
        .filter_map(|n| match &n.route {
            Route::Sound(name) => Some((name.clone(), library.get(name).ok()?)),
            _ => None,
        })
        .collect();
    Telephony {
        trunks,
        numbers,
        forwards,
        outbound,
        sounds,
    }
}

fn trunks(errs: &mut Errors, raw: Vec<RawTrunk>) -> Vec<Trunk> {
    let mut out: Vec<Trunk> = Vec::new();
    for (i, t) in raw.into_iter().enumerate() {
        let at = |k| [Key("trunks"), Index(i), Key(k)];
        let name_ok = !t.name.is_empty()
            && t.name.len() <= 32
            && t.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            errs.push(
                &at("name"),
                format!("`{}` must be 1 to 32 letters, digits, '-' or '_'", t.name),
            );
        } else if out.iter().any(|o| o.name == t.name) {
            errs.push(&at("name"), format!("trunk {} is defined twice", t.name));
        }
        let host = match t.host.parse::<IpAddr>() {
            Ok(ip @ IpAddr::V4(_)) => ip,
            Ok(ip) => {
                errs.push(
                    &at("host"),
                    format!("`{ip}`: IPv6 trunk hosts are not available yet"),
                );
                ip
            }
            Err(_) => {
                errs.push(
                    &at("host"),
                    format!(
                        "`{}`: give the carrier's IP address (host names are not resolved yet)",
                        t.host
                    ),
                );
                IpAddr::from([0, 0, 0, 0])
            }
        };
        if t.transport != "udp" {
            let msg = if t.transport == "tcp" {
                "\"tcp\" is not available yet for trunks: use \"udp\"".to_owned()
            } else {
                format!("`{}`: use \"udp\"", t.transport)
            };
            errs.push(&at("transport"), msg);
        }
        let kind = trunk_kind(errs, i, &t);
        let codecs = t
            .codecs
            .iter()
            .enumerate()
            .filter_map(|(j, c)| match c.to_ascii_uppercase().as_str() {
                "PCMU" => Some(TrunkCodec::Pcmu),
                "PCMA" => Some(TrunkCodec::Pcma),
                _ => {
                    errs.push(
                        &[Key("trunks"), Index(i), Key("codecs"), Index(j)],
                        format!("`{c}`: use \"PCMU\" or \"PCMA\""),
                    );
                    None
                }
            })
            .collect::<Vec<_>>();
        if t.codecs.is_empty() {
            errs.push(&at("codecs"), "at least one codec is needed");
        }
        let dtmf = match t.dtmf.as_str() {
            "rfc4733" => DtmfMode::Rfc4733,
            "info" => DtmfMode::Info,
            "inband" => DtmfMode::Inband,
            other => {
                errs.push(
                    &at("dtmf"),
                    format!("`{other}`: use \"rfc4733\", \"info\" or \"inband\""),
                );
                DtmfMode::Rfc4733
            }
        };
        let number_format = NumberFormat::parse(&t.caller_id_format).unwrap_or_else(|| {
            errs.push(
                &at("caller_id_format"),
                format!(
                    "`{}`: use \"national\", \"e164\" or \"e164_plus\"",
                    t.caller_id_format
                ),
            );
            NumberFormat::National
        });
        out.push(Trunk {
            name: t.name,
            kind,
            host,
            port: t.port,
            codecs,
            dtmf,
            number_format,
        });
    }
    out
}

fn trunk_kind(errs: &mut Errors, i: usize, t: &RawTrunk) -> TrunkKind {
    let at = |k| [Key("trunks"), Index(i), Key(k)];
    match t.kind.as_str() {
        "register" => {
            let username = t.username.clone().unwrap_or_default();
            let password = t.password.clone().unwrap_or_default();
            if username.is_empty() || username.contains(['"', ' ', '@', '\r', '\n']) {
                errs.push(
                    &at("username"),
                    "a register trunk needs a username without spaces, quotes or '@'",
                );
            }
            if password.is_empty() {
                errs.push(&at("password"), "a register trunk needs a password");
            }
            if !t.addresses.is_empty() {
                errs.push(
                    &at("addresses"),
                    "only ip trunks have addresses (a register trunk trusts its host)",
                );
            }
            if !(60..=86_400).contains(&t.register_expires) {
                errs.push(
                    &at("register_expires"),
                    "must be between 60 and 86400 seconds",
                );
            }
            TrunkKind::Register(RegisterSettings {
                username,
                password,
                realm: t.realm.clone(),
                expires: t.register_expires,
            })
        }
        "ip" => {
            for k in ["username", "password", "realm"] {
                let set = match k {
                    "username" => t.username.is_some(),
                    "password" => t.password.is_some(),
                    _ => t.realm.is_some(),
                };
                if set {
                    errs.push(&at(k), "only register trunks have credentials");
                }
            }
            if t.addresses.is_empty() {
                errs.push(
                    &at("addresses"),
                    "an ip trunk needs the carrier's addresses",
                );
            }
            let addresses = t
                .addresses
                .iter()
                .enumerate()
                .filter_map(|(j, a)| match a.parse::<IpAddr>() {
                    Ok(ip) => Some(ip),
                    Err(_) => {
                        errs.push(
                            &[Key("trunks"), Index(i), Key("addresses"), Index(j)],
                            format!("`{a}` is not an IP address"),
                        );
                        None
                    }
                })
                .collect();
            TrunkKind::Ip { addresses }
        }
        other => {
            errs.push(
                &at("kind"),
                format!("`{other}`: use \"register\" or \"ip\""),
            );
            TrunkKind::Ip {
                addresses: Vec::new(),
            }
        }
    }
}

/// `kind:target` → a route; kinds that do not exist yet are refused by name.
fn route(errs: &mut Errors, i: usize, text: &str, targets: &Targets) -> Option<Route> {
    let Targets {
        extensions,
        forwards,
        groups,
        library,
    } = targets;
    let at = [Key("numbers"), Index(i), Key("route")];
    let Some((kind, target)) = text.split_once(':') else {
        errs.push(
            &at,
            format!(
                "`{text}`: write kind:target, such as \"extension:1001\" or \"forward:office\""
            ),
        );
        return None;
    };
    match kind {
        "extension" if extensions.contains_key(target) => Some(Route::Extension(target.to_owned())),
        "extension" => {
            errs.push(&at, format!("no extension {target}"));
            None
        }
        "forward" if forwards.iter().any(|f| f == target) => {
            Some(Route::Forward(target.to_owned()))
        }
        "forward" => {
            errs.push(&at, format!("no [[forwards]] entry named {target}"));
            None
        }
        "sound" => match library.get(target) {
            Ok(_) => Some(Route::Sound(target.to_owned())),
            Err(e) => {
                errs.push(&at, e.to_string());
                None
            }
        },
        "group" if groups.iter().any(|g| g == target) => Some(Route::Group(target.to_owned())),
        "group" => {
            errs.push(&at, format!("no [acd] group with id {target}"));
            None
        }
        "ivr" | "script" => {
            errs.push(&at, format!("route kind \"{kind}\" not available yet"));
            None
        }
        other => {
            errs.push(
                &at,
                format!(
                    "unknown route kind `{other}`: use \"extension\", \"group\", \"forward\" or \"sound\""
                ),
            );
            None
        }
    }
}

fn numbers(
    errs: &mut Errors,
    raw: Vec<RawNumber>,
    plan: &NumberPlan,
    trunks: &[Trunk],
    targets: &Targets,
) -> BTreeMap<String, Number> {
    let mut out: BTreeMap<String, Number> = BTreeMap::new();
    let mut prefixes: Vec<String> = Vec::new();
    for (i, n) in raw.into_iter().enumerate() {
        let at = |k| [Key("numbers"), Index(i), Key(k)];
        let national = plan.to_national(&n.number).filter(|s| s.len() <= 20);
        if national.is_none() {
            errs.push(
                &at("number"),
                format!(
                    "`{}` is not a telephone number (digits, optionally a leading +)",
                    n.number
                ),
            );
        }
        if !trunks.iter().any(|t| t.name == n.trunk) {
            errs.push(&at("trunk"), format!("no trunk named {}", n.trunk));
        }
        let route = route(errs, i, &n.route, targets);
        for (k, v) in [
            ("name", &n.name),
            ("incoming_display", &n.incoming_display),
            ("outgoing_display", &n.outgoing_display),
        ] {
            if v.contains(['"', '\\', '\r', '\n']) {
                errs.push(
                    &at(k),
                    "must not contain quotes, backslashes or line breaks",
                );
            }
        }
        if let Some(url) = &n.screen_pop_url {
            if !url.contains("@@@@") || url.contains(char::is_whitespace) {
                errs.push(
                    &at("screen_pop_url"),
                    "must contain @@@@ (the caller's number) and no spaces",
                );
            }
        }
        if let Some(p) = &n.outbound_prefix {
            if !is_digits(p) || p.len() > 8 {
                errs.push(
                    &at("outbound_prefix"),
                    format!("`{p}` must be 1 to 8 digits"),
                );
            } else if let Some(other) = prefixes
                .iter()
                .find(|o| o.starts_with(p.as_str()) || p.starts_with(o.as_str()))
            {
                errs.push(
                    &at("outbound_prefix"),
                    format!("`{p}` and `{other}`: one prefix must not begin another"),
                );
            } else {
                prefixes.push(p.clone());
            }
        }
        let (Some(number), Some(route)) = (national, route) else {
            continue;
        };
        if out.contains_key(&number) {
            errs.push(&at("number"), format!("number {number} is defined twice"));
            continue;
        }
        out.insert(
            number.clone(),
            Number {
                number,
                name: n.name,
                trunk: n.trunk,
                route,
                max_channels: (n.max_channels > 0).then_some(n.max_channels),
                incoming_display: n.incoming_display,
                outgoing_display: n.outgoing_display,
                screen_pop_url: n.screen_pop_url,
                outbound_prefix: n.outbound_prefix,
            },
        );
    }
    out
}

fn forwards(
    errs: &mut Errors,
    raw: Vec<RawForward>,
    plan: &NumberPlan,
    numbers: &BTreeMap<String, Number>,
) -> BTreeMap<String, Forward> {
    let mut out = BTreeMap::new();
    for (i, f) in raw.into_iter().enumerate() {
        let at = |k| [Key("forwards"), Index(i), Key(k)];
        if f.name.is_empty() || f.name.contains([':', ' ', '"']) {
            errs.push(
                &at("name"),
                "must be a non-empty name without ':', spaces or quotes",
            );
        }
        let destination = plan.to_national(&f.destination);
        if destination.is_none() {
            errs.push(
                &at("destination"),
                format!("`{}` is not a telephone number", f.destination),
            );
        }
        let present = if f.present == "called" {
            Some(Presentation::Called)
        } else {
            match plan.to_national(&f.present) {
                Some(n) if numbers.contains_key(&n) => Some(Presentation::Number(n)),
                _ => {
                    errs.push(
                        &at("present"),
                        format!("`{}`: use \"called\" or one of the [[numbers]]", f.present),
                    );
                    None
                }
            }
        };
        if out.contains_key(&f.name) {
            errs.push(&at("name"), format!("forward {} is defined twice", f.name));
            continue;
        }
        if let (Some(destination), Some(present)) = (destination, present) {
            out.insert(
                f.name.clone(),
                Forward {
                    name: f.name,
                    destination,
                    present,
                },
            );
        }
    }
    out
}

fn outbound(
    errs: &mut Errors,
    raw: &RawOutbound,
    plan: NumberPlan,
    numbers: &BTreeMap<String, Number>,
    library: &SoundLibrary,
) -> OutboundConfig {
    let default_number = raw
        .default_number
        .as_ref()
        .and_then(|d| match plan.to_national(d) {
            Some(n) if numbers.contains_key(&n) => Some(n),
            _ => {
                errs.push(
                    &[Key("outbound"), Key("default_number")],
                    format!("`{d}` is not one of the [[numbers]]"),
                );
                None
            }
        });
    for (i, e) in raw.emergency.iter().enumerate() {
        if !is_digits(e) || e.len() > 8 {
            errs.push(
                &[Key("outbound"), Key("emergency"), Index(i)],
                format!("`{e}` must be 1 to 8 digits"),
            );
        }
    }
    let withhold_prefix = match raw.withhold_prefix.as_str() {
        "" => None,
        p if is_digits(p) && p.len() <= 8 => Some(p.to_owned()),
        p => {
            errs.push(
                &[Key("outbound"), Key("withhold_prefix")],
                format!("`{p}` must be 1 to 8 digits (\"\" disables it)"),
            );
            None
        }
    };
    let restricted_announcement = match raw.restricted_announcement.as_str() {
        "" => None,
        name => match library.get(name) {
            Ok(sound) => Some(sound),
            Err(crate::media::sound::SoundError::NotFound { .. }) => None,
            Err(e) => {
                errs.push(
                    &[Key("outbound"), Key("restricted_announcement")],
                    e.to_string(),
                );
                None
            }
        },
    };
    OutboundConfig {
        default_number,
        emergency: raw.emergency.clone(),
        plan,
        withhold_prefix,
        restricted_announcement,
    }
}

/// Each extension's caller IDs must be configured numbers; stored in
/// national form. `raw` is (index in the file, extension, caller IDs).
fn caller_ids(
    errs: &mut Errors,
    raw: &[(usize, String, Vec<String>)],
    extensions: &mut BTreeMap<String, Extension>,
    plan: &NumberPlan,
    numbers: &BTreeMap<String, Number>,
) {
    for (i, number, ids) in raw {
        let mut checked = Vec::new();
        for (j, id) in ids.iter().enumerate() {
            let at = [Key("extensions"), Index(*i), Key("caller_ids"), Index(j)];
            match plan.to_national(id) {
                Some(n) if numbers.contains_key(&n) => checked.push(n),
                _ => errs.push(&at, format!("`{id}` is not one of the [[numbers]]")),
            }
        }
        if let Some(ext) = extensions.get_mut(number) {
            ext.caller_ids = checked;
        }
    }
}
