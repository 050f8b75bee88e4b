//! Process-wide counters and gauges, rendered as Prometheus text (format
//! 0.0.4).
//!
//! [`Metrics`] is a cheap-clone handle (an `Arc`): the server creates one and
//! hands clones to every task; tests create their own. Every value is an
//! atomic updated with relaxed ordering, so recording never blocks.
//!
//! Label sets are closed: SIP messages are counted per [`MessageKind`] (a
//! fixed list of methods plus `other`, and the six response classes), call
//! attempts per [`Disposition`]. Nothing taken from the network becomes a
//! label value, so an attacker cannot grow the exposition.
//!
//! Later modules add their own unlabeled series with
//! [`Metrics::register_counter`] / [`Metrics::register_gauge`], and gauge
//! families labelled from a closed set they own (configured names, such as
//! queue groups) with [`Metrics::register_labelled_gauge`].
//!
//! What this module must not do: perform I/O, or take a label value from
//! outside a closed list.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::store::Disposition;

/// A monotonically increasing count. Clones share the value.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down. Clones share the value.
#[derive(Debug, Clone, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn dec(&self) {
        self.add(-1);
    }

    pub fn add(&self, delta: i64) {
        self.0.fetch_add(delta, Ordering::Relaxed);
    }

    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The closed label set for SIP messages: request methods and response
/// classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Info,
    Update,
    Refer,
    Notify,
    Subscribe,
    Message,
    Prack,
    /// Any other request method (and out-of-range status codes).
    Other,
    Provisional,
    Success,
    Redirection,
    ClientError,
    ServerError,
    GlobalFailure,
}

impl MessageKind {
    /// Every kind, in discriminant order.
    pub const ALL: [MessageKind; 20] = [
        MessageKind::Invite,
        MessageKind::Ack,
        MessageKind::Bye,
        MessageKind::Cancel,
        MessageKind::Register,
        MessageKind::Options,
        MessageKind::Info,
        MessageKind::Update,
        MessageKind::Refer,
        MessageKind::Notify,
        MessageKind::Subscribe,
        MessageKind::Message,
        MessageKind::Prack,
        MessageKind::Other,
        MessageKind::Provisional,
        MessageKind::Success,
        MessageKind::Redirection,
        MessageKind::ClientError,
        MessageKind::ServerError,
        MessageKind::GlobalFailure,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            MessageKind::Invite => "INVITE",
            MessageKind::Ack => "ACK",
            MessageKind::Bye => "BYE",
            MessageKind::Cancel => "CANCEL",
            MessageKind::Register => "REGISTER",
            MessageKind::Options => "OPTIONS",
            MessageKind::Info => "INFO",
            MessageKind::Update => "UPDATE",
            MessageKind::Refer => "REFER",
            MessageKind::Notify => "NOTIFY",
            MessageKind::Subscribe => "SUBSCRIBE",
            MessageKind::Message => "MESSAGE",
            MessageKind::Prack => "PRACK",
            MessageKind::Other => "other",
            MessageKind::Provisional => "1xx",
            MessageKind::Success => "2xx",
            MessageKind::Redirection => "3xx",
            MessageKind::ClientError => "4xx",
            MessageKind::ServerError => "5xx",
            MessageKind::GlobalFailure => "6xx",
        }
    }

    /// The kind of a request method as written on the wire (method names
    /// are case-sensitive, RFC 3261 §7.1).
    pub fn from_method_name(name: &str) -> MessageKind {
        MessageKind::ALL
            .iter()
            .take_while(|k| **k != MessageKind::Other)
            .find(|k| k.label() == name)
            .copied()
            .unwrap_or(MessageKind::Other)
    }

    /// The kind of a parsed request method.
    pub fn from_method(method: &rsip::Method) -> MessageKind {
        use rsip::Method as M;
        match method {
            M::Invite => MessageKind::Invite,
            M::Ack => MessageKind::Ack,
            M::Bye => MessageKind::Bye,
            M::Cancel => MessageKind::Cancel,
            M::Register => MessageKind::Register,
            M::Options => MessageKind::Options,
            M::Info => MessageKind::Info,
            M::Update => MessageKind::Update,
            M::Refer => MessageKind::Refer,
            M::Notify => MessageKind::Notify,
            M::Subscribe => MessageKind::Subscribe,
            M::Message => MessageKind::Message,
            M::PRack => MessageKind::Prack,
            M::Publish => MessageKind::Other,
        }
    }

    /// The class of a response status code; codes outside 100..=699 are
    /// `other`.
    pub fn from_status(code: u16) -> MessageKind {
        match code {
            100..=199 => MessageKind::Provisional,
            200..=299 => MessageKind::Success,
            300..=399 => MessageKind::Redirection,
            400..=499 => MessageKind::ClientError,
            500..=599 => MessageKind::ServerError,
            600..=699 => MessageKind::GlobalFailure,
            _ => MessageKind::Other,
        }
    }

    /// The kind of a parsed message.
    pub fn of_message(msg: &rsip::SipMessage) -> MessageKind {
        match msg {
            rsip::SipMessage::Request(req) => MessageKind::from_method(&req.method),
            rsip::SipMessage::Response(resp) => MessageKind::from_status(resp.status_code.code()),
        }
    }

    /// The kind of a serialized message, from its first line only (for
    /// bytes about to be sent, without parsing them again).
    pub fn of_bytes(data: &[u8]) -> MessageKind {
        let first_token = data.split(|b| *b == b' ').next().unwrap_or_default();
        if first_token != b"SIP/2.0" {
            let name = std::str::from_utf8(first_token).unwrap_or_default();
            return MessageKind::from_method_name(name);
        }
        let code = data
            .get(8..11)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| digits.parse::<u16>().ok());
        code.map_or(MessageKind::Other, MessageKind::from_status)
    }

    fn index(self) -> usize {
        self as usize
    }
}

const DISPOSITIONS: usize = Disposition::ALL.len();

/// Errors registering an extra series.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    #[error("invalid metric name {0:?} (want [a-z_][a-z0-9_]*, at most 64 chars)")]
    InvalidName(String),
    #[error("metric name {0:?} is already used by another series")]
    NameTaken(String),
    #[error("invalid label name {0:?} (want [a-z_][a-z0-9_]*, at most 64 chars)")]
    InvalidLabel(String),
}

#[derive(Debug, Clone)]
enum ExtraValue {
    Counter(Counter),
    Gauge(Gauge),
}

#[derive(Debug)]
struct Extra {
    name: String,
    help: String,
    /// `{name="value",...}` for a series of a labelled family, else empty.
    labels: String,
    value: ExtraValue,
}

#[derive(Debug)]
struct Inner {
    sip_messages_in: [Counter; MessageKind::ALL.len()],
    sip_messages_out: [Counter; MessageKind::ALL.len()],
    sip_parse_errors: Counter,
    sip_send_dropped: Counter,
    registrations: Gauge,
    auth_failures: Counter,
    auth_lockouts: Counter,
    calls_active: Gauge,
    call_attempts: [Counter; DISPOSITIONS],
    rtp_packets_relayed: Counter,
    rtp_packets_dropped: Counter,
    extras: Mutex<Vec<Extra>>,
}

/// Names of the built-in series (without the `denwa_` prefix).
const BUILTIN_NAMES: &[&str] = &[
    "sip_messages_in_total",
    "sip_messages_out_total",
    "sip_parse_errors_total",
    "sip_send_dropped_total",
    "registrations",
    "auth_failures_total",
    "auth_lockouts_total",
    "calls_active",
    "call_attempts_total",
    "rtp_packets_relayed_total",
    "rtp_packets_dropped_total",
];

/// Cheap-clone handle to one set of process metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh set of metrics, all zero.
    pub fn new() -> Metrics {
        Metrics {
            inner: Arc::new(Inner {
                sip_messages_in: std::array::from_fn(|_| Counter::default()),
                sip_messages_out: std::array::from_fn(|_| Counter::default()),
                sip_parse_errors: Counter::default(),
                sip_send_dropped: Counter::default(),
                registrations: Gauge::default(),
                auth_failures: Counter::default(),
                auth_lockouts: Counter::default(),
                calls_active: Gauge::default(),
                call_attempts: std::array::from_fn(|_| Counter::default()),
                rtp_packets_relayed: Counter::default(),
                rtp_packets_dropped: Counter::default(),
                extras: Mutex::new(Vec::new()),
            }),
        }
    }

    /// SIP messages received, per method or response class.
    pub fn sip_messages_in(&self, kind: MessageKind) -> &Counter {
        &self.inner.sip_messages_in[kind.index()]
    }

    /// SIP messages sent, per method or response class.
    pub fn sip_messages_out(&self, kind: MessageKind) -> &Counter {
        &self.inner.sip_messages_out[kind.index()]
    }

    /// Datagrams or stream frames that did not parse as SIP.
    pub fn sip_parse_errors(&self) -> &Counter {
        &self.inner.sip_parse_errors
    }

    /// Outgoing SIP messages dropped (send queue full, no socket).
    pub fn sip_send_dropped(&self) -> &Counter {
        &self.inner.sip_send_dropped
    }

    /// Current registration bindings.
    pub fn registrations(&self) -> &Gauge {
        &self.inner.registrations
    }

    /// Requests whose credentials were wrong.
    pub fn auth_failures(&self) -> &Counter {
        &self.inner.auth_failures
    }

    /// Sources locked out after too many failures.
    pub fn auth_lockouts(&self) -> &Counter {
        &self.inner.auth_lockouts
    }

    /// Calls in progress.
    pub fn calls_active(&self) -> &Gauge {
        &self.inner.calls_active
    }

    /// Finished call attempts, per disposition.
    pub fn call_attempts(&self, disposition: Disposition) -> &Counter {
        &self.inner.call_attempts[disposition as usize]
    }

    /// RTP packets forwarded by the relay.
    pub fn rtp_packets_relayed(&self) -> &Counter {
        &self.inner.rtp_packets_relayed
    }

    /// RTP packets the relay dropped.
    pub fn rtp_packets_dropped(&self) -> &Counter {
        &self.inner.rtp_packets_dropped
    }

    /// Count a received, parsed message.
    pub fn sip_message_in(&self, msg: &rsip::SipMessage) {
        self.sip_messages_in(MessageKind::of_message(msg)).inc();
    }

    /// Count a message about to be sent, classified from its first line.
    pub fn sip_message_out(&self, data: &[u8]) {
        self.sip_messages_out(MessageKind::of_bytes(data)).inc();
    }

    /// Count bytes that did not parse as SIP.
    pub fn sip_parse_error(&self) {
        self.sip_parse_errors().inc();
    }

    /// Count an outgoing message that could not be sent.
    pub fn send_dropped(&self) {
        self.sip_send_dropped().inc();
    }

    /// Set the current number of registration bindings.
    pub fn set_registrations(&self, bindings: i64) {
        self.registrations().set(bindings);
    }

    /// Count a request rejected for wrong credentials.
    pub fn auth_failure(&self) {
        self.auth_failures().inc();
    }

    /// Count a source locked out.
    pub fn auth_lockout(&self) {
        self.auth_lockouts().inc();
    }

    /// A call began: one more active call.
    pub fn call_started(&self) {
        self.calls_active().inc();
    }

    /// A call ended with `disposition`: one less active call, one more
    /// finished attempt.
    pub fn call_ended(&self, disposition: Disposition) {
        self.calls_active().dec();
        self.call_attempts(disposition).inc();
    }

    /// Add (or fetch, when already registered as a counter) an extra counter
    /// rendered as `denwa_<name>`. By convention counter names end in
    /// `_total`.
    pub fn register_counter(&self, name: &str, help: &str) -> Result<Counter, MetricsError> {
        let value = self.register(name, help, "", || ExtraValue::Counter(Counter::default()))?;
        match value {
            ExtraValue::Counter(c) => Ok(c),
            ExtraValue::Gauge(_) => Err(MetricsError::NameTaken(name.to_string())),
        }
    }

    /// Add (or fetch, when already registered as a gauge) an extra gauge
    /// rendered as `denwa_<name>`.
    pub fn register_gauge(&self, name: &str, help: &str) -> Result<Gauge, MetricsError> {
        let value = self.register(name, help, "", || ExtraValue::Gauge(Gauge::default()))?;
        match value {
            ExtraValue::Gauge(g) => Ok(g),
            ExtraValue::Counter(_) => Err(MetricsError::NameTaken(name.to_string())),
        }
    }

    /// Add (or fetch) one series of a labelled gauge family, rendered as
    /// `denwa_<name>{label="value",...}` under one HELP and TYPE. The
    /// values must come from a closed set the caller owns (configured
    /// names), never from the network; they are escaped.
    pub fn register_labelled_gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Gauge, MetricsError> {
        let text = label_text(labels)?;
        let value = self.register(name, help, &text, || ExtraValue::Gauge(Gauge::default()))?;
        match value {
            ExtraValue::Gauge(g) => Ok(g),
            ExtraValue::Counter(_) => Err(MetricsError::NameTaken(name.to_string())),
        }
    }

    /// Like [`Metrics::register_counter`], as one series of a labelled
    /// family (see [`Metrics::register_labelled_gauge`]).
    pub fn register_labelled_counter(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Counter, MetricsError> {
        let text = label_text(labels)?;
        let value = self.register(
            name,
            help,
            &text,
            || ExtraValue::Counter(Counter::default()),
        )?;
        match value {
            ExtraValue::Counter(c) => Ok(c),
            ExtraValue::Gauge(_) => Err(MetricsError::NameTaken(name.to_string())),
        }
    }

    fn register(
        &self,
        name: &str,
        help: &str,
        labels: &str,
        make: impl FnOnce() -> ExtraValue,
    ) -> Result<ExtraValue, MetricsError> {
        if !valid_name(name) {
            return Err(MetricsError::InvalidName(name.to_string()));
        }
        if BUILTIN_NAMES.contains(&name) {
            return Err(MetricsError::NameTaken(name.to_string()));
        }
        let mut extras = match self.inner.extras.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(existing) = extras.iter().find(|e| e.name == name && e.labels == labels) {
            return Ok(existing.value.clone());
        }
        let value = make();
        // One family, one type; labelled or not, never both.
        let family = extras.iter().find(|e| e.name == name);
        if family
            .is_some_and(|e| !e.value.same_kind(&value) || e.labels.is_empty() != labels.is_empty())
        {
            return Err(MetricsError::NameTaken(name.to_string()));
        }
        extras.push(Extra {
            name: name.to_string(),
            help: help.to_string(),
            labels: labels.to_string(),
            value: value.clone(),
        });
        Ok(value)
    }

    /// The whole exposition in Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        let m = &self.inner;
        let mut out = String::with_capacity(4096);
        render_by_kind(
            &mut out,
            "sip_messages_in_total",
            "SIP messages received, by request method or response class.",
            &m.sip_messages_in,
        );
        render_by_kind(
            &mut out,
            "sip_messages_out_total",
            "SIP messages sent, by request method or response class.",
            &m.sip_messages_out,
        );
        let parse_help = "Received messages that could not be parsed as SIP.";
        render_counter(
            &mut out,
            "sip_parse_errors_total",
            parse_help,
            &m.sip_parse_errors,
        );
        let dropped_help = "Outgoing SIP messages dropped before reaching the network.";
        render_counter(
            &mut out,
            "sip_send_dropped_total",
            dropped_help,
            &m.sip_send_dropped,
        );
        let reg_help = "Current registration bindings.";
        render_gauge(&mut out, "registrations", reg_help, &m.registrations);
        let fail_help = "Requests rejected for wrong credentials.";
        render_counter(&mut out, "auth_failures_total", fail_help, &m.auth_failures);
        let lock_help = "Sources locked out after repeated authentication failures.";
        render_counter(&mut out, "auth_lockouts_total", lock_help, &m.auth_lockouts);
        render_gauge(
            &mut out,
            "calls_active",
            "Calls in progress.",
            &m.calls_active,
        );
        render_call_attempts(&mut out, &m.call_attempts);
        let relay_help = "RTP packets forwarded by the media relay.";
        render_counter(
            &mut out,
            "rtp_packets_relayed_total",
            relay_help,
            &m.rtp_packets_relayed,
        );
        let drop_help = "RTP packets dropped by the media relay.";
        render_counter(
            &mut out,
            "rtp_packets_dropped_total",
            drop_help,
            &m.rtp_packets_dropped,
        );
        self.render_extras(&mut out);
        out
    }

    fn render_extras(&self, out: &mut String) {
        let extras = match self.inner.extras.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Every series of a family under its one HELP and TYPE, families
        // in the order they were first registered.
        let mut done: Vec<&str> = Vec::new();
        for first in extras.iter() {
            if done.contains(&first.name.as_str()) {
                continue;
            }
            done.push(&first.name);
            let kind = match first.value {
                ExtraValue::Counter(_) => "counter",
                ExtraValue::Gauge(_) => "gauge",
            };
            write_header(out, &first.name, &first.help, kind);
            for extra in extras.iter().filter(|e| e.name == first.name) {
                let value = match &extra.value {
                    ExtraValue::Counter(c) => c.get().to_string(),
                    ExtraValue::Gauge(g) => g.get().to_string(),
                };
                let _ = writeln!(out, "denwa_{}{} {value}", extra.name, extra.labels);
            }
        }
    }
}

impl ExtraValue {
    fn same_kind(&self, other: &ExtraValue) -> bool {
        matches!(
            (self, other),
            (ExtraValue::Counter(_), ExtraValue::Counter(_))
                | (ExtraValue::Gauge(_), ExtraValue::Gauge(_))
        )
    }
}

/// Label value escaping (format 0.0.4): backslash, double quote, line feed.
/// `{label="value",...}`, the values escaped; label names must be valid.
fn label_text(labels: &[(&str, &str)]) -> Result<String, MetricsError> {
    let mut text = String::from("{");
    for (i, (label, value)) in labels.iter().enumerate() {
        if !valid_name(label) {
            return Err(MetricsError::InvalidLabel(label.to_string()));
        }
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(text, "{sep}{label}=\"{}\"", escape_label(value));
    }
    text.push('}');
    Ok(text)
}

/// `[a-z_][a-z0-9_]*`, 1..=64 characters: a subset of Prometheus names that
/// needs no escaping.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = matches!(chars.next(), Some('a'..='z' | '_'));
    first_ok && name.len() <= 64 && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// Label value escaping (format 0.0.4): backslash, double quote, line feed.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// HELP text escaping (format 0.0.4): backslash and line feed.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

fn write_header(out: &mut String, name: &str, help: &str, kind: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP denwa_{name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE denwa_{name} {kind}");
}

fn render_counter(out: &mut String, name: &str, help: &str, c: &Counter) {
    write_header(out, name, help, "counter");
    let _ = writeln!(out, "denwa_{name} {}", c.get());
}

fn render_gauge(out: &mut String, name: &str, help: &str, g: &Gauge) {
    write_header(out, name, help, "gauge");
    let _ = writeln!(out, "denwa_{name} {}", g.get());
}

fn render_by_kind(out: &mut String, name: &str, help: &str, counters: &[Counter]) {
    write_header(out, name, help, "counter");
    for (kind, c) in MessageKind::ALL.iter().zip(counters) {
        let _ = writeln!(
            out,
            "denwa_{name}{{message=\"{}\"}} {}",
            kind.label(),
            c.get()
        );
    }
}

fn render_call_attempts(out: &mut String, counters: &[Counter]) {
    let name = "call_attempts_total";
    write_header(
        out,
        name,
        "Finished call attempts, by disposition.",
        "counter",
    );
    for (d, c) in Disposition::ALL.iter().zip(counters) {
        let _ = writeln!(
            out,
            "denwa_{name}{{disposition=\"{}\"}} {}",
            d.as_str(),
            c.get()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    /// A parsed exposition: HELP and TYPE per family, value per sample.
    #[derive(Default)]
    struct Exposition {
        help: HashMap<String, String>,
        kind: HashMap<String, String>,
        samples: Vec<(String, String, f64)>,
    }

    impl Exposition {
        fn parse(text: &str) -> Exposition {
            let mut exp = Exposition::default();
            assert!(text.ends_with('\n'), "exposition ends with a newline");
            for line in text.lines() {
                if let Some(rest) = line.strip_prefix("# HELP ") {
                    let (name, help) = rest.split_once(' ').unwrap();
                    assert!(exp.help.insert(name.into(), help.into()).is_none());
                } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                    let (name, kind) = rest.split_once(' ').unwrap();
                    assert!(exp.help.contains_key(name), "HELP before TYPE for {name}");
                    assert!(matches!(kind, "counter" | "gauge"), "type {kind}");
                    assert!(exp.kind.insert(name.into(), kind.into()).is_none());
                } else {
                    let (series, value) = line.rsplit_once(' ').unwrap();
                    let (name, labels) = match series.split_once('{') {
                        Some((n, l)) => (n, l.strip_suffix('}').unwrap()),
                        None => (series, ""),
                    };
                    assert!(exp.kind.contains_key(name), "TYPE before sample {name}");
                    let v: f64 = value.parse().unwrap();
                    exp.samples.push((name.into(), labels.into(), v));
                }
            }
            exp
        }

        fn value(&self, name: &str, labels: &str) -> f64 {
            let found = self
                .samples
                .iter()
                .find(|(n, l, _)| n == name && l == labels);
            found
                .unwrap_or_else(|| panic!("no sample {name}{{{labels}}}"))
                .2
        }
    }

    #[test]
    fn fresh_render_has_every_family_at_zero() {
        let exp = Exposition::parse(&Metrics::new().render());
        for name in BUILTIN_NAMES {
            let full = format!("denwa_{name}");
            assert!(exp.kind.contains_key(&full), "missing {full}");
        }
        assert_eq!(exp.kind["denwa_registrations"], "gauge");
        assert_eq!(exp.kind["denwa_calls_active"], "gauge");
        assert_eq!(exp.kind["denwa_auth_failures_total"], "counter");
        let unlabeled = 8;
        let expected = 2 * MessageKind::ALL.len() + DISPOSITIONS + unlabeled;
        assert_eq!(exp.samples.len(), expected);
        assert!(exp.samples.iter().all(|(_, _, v)| *v == 0.0));
    }

    #[test]
    fn recorded_values_appear_in_render() {
        let m = Metrics::new();
        let clone = m.clone();
        clone.sip_messages_in(MessageKind::Invite).add(3);
        m.sip_messages_in(MessageKind::from_status(486)).inc();
        m.sip_messages_out(MessageKind::from_status(200)).add(2);
        m.sip_parse_errors().inc();
        m.registrations().set(42);
        m.auth_failures().add(5);
        m.auth_lockouts().inc();
        m.calls_active().inc();
        m.calls_active().inc();
        m.calls_active().dec();
        m.call_attempts(Disposition::NoAnswer).add(7);
        m.rtp_packets_relayed().add(1_000_000);
        m.rtp_packets_dropped().add(9);
        let exp = Exposition::parse(&m.render());
        assert_eq!(
            exp.value("denwa_sip_messages_in_total", "message=\"INVITE\""),
            3.0
        );
        assert_eq!(
            exp.value("denwa_sip_messages_in_total", "message=\"4xx\""),
            1.0
        );
        assert_eq!(
            exp.value("denwa_sip_messages_in_total", "message=\"BYE\""),
            0.0
        );
        assert_eq!(
            exp.value("denwa_sip_messages_out_total", "message=\"2xx\""),
            2.0
        );
        assert_eq!(exp.value("denwa_sip_parse_errors_total", ""), 1.0);
        assert_eq!(exp.value("denwa_registrations", ""), 42.0);
        assert_eq!(exp.value("denwa_auth_failures_total", ""), 5.0);
        assert_eq!(exp.value("denwa_auth_lockouts_total", ""), 1.0);
        assert_eq!(exp.value("denwa_calls_active", ""), 1.0);
        let no_answer = "disposition=\"no_answer\"";
        assert_eq!(exp.value("denwa_call_attempts_total", no_answer), 7.0);
        assert_eq!(
            exp.value("denwa_rtp_packets_relayed_total", ""),
            1_000_000.0
        );
        assert_eq!(exp.value("denwa_rtp_packets_dropped_total", ""), 9.0);
    }

    #[test]
    fn recording_helpers_update_the_series() {
        let m = Metrics::new();
        let invite = rsip::SipMessage::try_from(
            "INVITE sip:1002@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1\r\n\
             From: <sip:1001@192.0.2.1>;tag=a\r\nTo: <sip:1002@192.0.2.1>\r\nCall-ID: c1\r\n\
             CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        m.sip_message_in(&invite);
        m.sip_message_out(b"SIP/2.0 180 Ringing\r\n\r\n");
        m.sip_message_out(b"BYE sip:x SIP/2.0\r\n\r\n");
        m.sip_parse_error();
        m.send_dropped();
        m.set_registrations(3);
        m.auth_failure();
        m.auth_lockout();
        m.call_started();
        m.call_started();
        m.call_ended(Disposition::Busy);
        assert_eq!(m.sip_messages_in(MessageKind::Invite).get(), 1);
        assert_eq!(m.sip_messages_out(MessageKind::Provisional).get(), 1);
        assert_eq!(m.sip_messages_out(MessageKind::Bye).get(), 1);
        assert_eq!(m.sip_parse_errors().get(), 1);
        assert_eq!(m.sip_send_dropped().get(), 1);
        assert_eq!(m.registrations().get(), 3);
        assert_eq!((m.auth_failures().get(), m.auth_lockouts().get()), (1, 1));
        assert_eq!(m.calls_active().get(), 1);
        assert_eq!(m.call_attempts(Disposition::Busy).get(), 1);
    }

    #[test]
    fn kind_of_raw_bytes_never_trusts_them() {
        assert_eq!(
            MessageKind::of_bytes(b"SIP/2.0 200 OK\r\n"),
            MessageKind::Success
        );
        assert_eq!(
            MessageKind::of_bytes(b"SIP/2.0 603 Decline"),
            MessageKind::GlobalFailure
        );
        assert_eq!(
            MessageKind::of_bytes(b"REGISTER sip:a SIP/2.0"),
            MessageKind::Register
        );
        assert_eq!(MessageKind::of_bytes(b"SIP/2.0 9"), MessageKind::Other);
        assert_eq!(MessageKind::of_bytes(b"SIP/2.0 abc"), MessageKind::Other);
        assert_eq!(MessageKind::of_bytes(b"SIP/2.0 999 x"), MessageKind::Other);
        assert_eq!(MessageKind::of_bytes(b""), MessageKind::Other);
        assert_eq!(MessageKind::of_bytes(b"\xff\xfe BOGUS"), MessageKind::Other);
    }

    #[test]
    fn labelled_gauges_render_as_one_family() {
        let m = Metrics::new();
        let sales = m
            .register_labelled_gauge("acd_waiting", "Waiting calls.", &[("group", "sales")])
            .unwrap();
        m.register_gauge("other_gauge", "Something else.").unwrap();
        let odd = m
            .register_labelled_gauge("acd_waiting", "ignored", &[("group", "a\"b\\c\nd")])
            .unwrap();
        sales.set(3);
        odd.inc();
        let again = m
            .register_labelled_gauge("acd_waiting", "x", &[("group", "sales")])
            .unwrap();
        assert_eq!(again.get(), 3, "the same series is fetched again");
        let text = m.render();
        let exp = Exposition::parse(&text);
        assert_eq!(exp.kind["denwa_acd_waiting"], "gauge");
        assert_eq!(exp.value("denwa_acd_waiting", "group=\"sales\""), 3.0);
        assert!(
            text.contains("denwa_acd_waiting{group=\"a\\\"b\\\\c\\nd\"} 1\n"),
            "{text}"
        );
        let family_start = text.find("# TYPE denwa_acd_waiting").unwrap();
        let other = text.find("# HELP denwa_other_gauge").unwrap();
        let last_series = text.rfind("denwa_acd_waiting{").unwrap();
        assert!(family_start < last_series && last_series < other, "{text}");
        assert_eq!(
            m.register_labelled_gauge("acd_waiting", "x", &[("Group", "x")])
                .err(),
            Some(MetricsError::InvalidLabel("Group".into()))
        );
        assert_eq!(
            m.register_counter("acd_waiting", "x").err(),
            Some(MetricsError::NameTaken("acd_waiting".into()))
        );
    }

    #[test]
    fn separate_instances_do_not_share_values() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.auth_failures().inc();
        assert_eq!(a.auth_failures().get(), 1);
        assert_eq!(b.auth_failures().get(), 0);
    }

    #[test]
    fn label_set_is_closed() {
        assert_eq!(MessageKind::from_method_name("INVITE"), MessageKind::Invite);
        assert_eq!(MessageKind::from_method_name("PRACK"), MessageKind::Prack);
        assert_eq!(MessageKind::from_method_name("invite"), MessageKind::Other);
        assert_eq!(MessageKind::from_method_name("other"), MessageKind::Other);
        assert_eq!(MessageKind::from_method_name("1xx"), MessageKind::Other);
        assert_eq!(
            MessageKind::from_method_name("X-EVIL\"}"),
            MessageKind::Other
        );
        assert_eq!(
            MessageKind::from_method(&rsip::Method::Publish),
            MessageKind::Other
        );
        for method in rsip::Method::all() {
            let kind = MessageKind::from_method(&method);
            assert_eq!(MessageKind::from_method_name(&method.to_string()), kind);
        }
        assert_eq!(MessageKind::from_status(100), MessageKind::Provisional);
        assert_eq!(MessageKind::from_status(699), MessageKind::GlobalFailure);
        assert_eq!(MessageKind::from_status(99), MessageKind::Other);
        assert_eq!(MessageKind::from_status(700), MessageKind::Other);
        // Discriminants match positions in ALL, labels are unique.
        for (i, kind) in MessageKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
        for (i, d) in Disposition::ALL.iter().enumerate() {
            assert_eq!(*d as usize, i);
        }
        let labels: HashSet<_> = MessageKind::ALL.iter().map(|k| k.label()).collect();
        assert_eq!(labels.len(), MessageKind::ALL.len());
    }

    #[test]
    fn extra_series_are_rendered_and_validated() {
        let m = Metrics::new();
        let waiting = m
            .register_gauge("queue_waiting", "Callers waiting.")
            .unwrap();
        let hits = m
            .register_counter("cache_hits_total", "Hits.\nSecond line \\")
            .unwrap();
        waiting.set(4);
        hits.add(2);
        // Registering again returns the same series.
        m.register_counter("cache_hits_total", "ignored")
            .unwrap()
            .inc();
        assert_eq!(hits.get(), 3);
        let text = m.render();
        assert!(text.contains("# HELP denwa_cache_hits_total Hits.\\nSecond line \\\\\n"));
        let exp = Exposition::parse(&text);
        assert_eq!(exp.kind["denwa_queue_waiting"], "gauge");
        assert_eq!(exp.value("denwa_queue_waiting", ""), 4.0);
        assert_eq!(exp.value("denwa_cache_hits_total", ""), 3.0);
        assert!(matches!(
            m.register_counter("queue_waiting", "x"),
            Err(MetricsError::NameTaken(_))
        ));
        assert!(matches!(
            m.register_gauge("calls_active", "x"),
            Err(MetricsError::NameTaken(_))
        ));
        for bad in [
            "",
            "Upper",
            "9lives",
            "with-dash",
            "sp ace",
            &"a".repeat(65),
        ] {
            assert!(matches!(
                m.register_counter(bad, "x"),
                Err(MetricsError::InvalidName(_))
            ));
        }
    }

    #[test]
    fn labelled_series_share_one_family_header() {
        let m = Metrics::new();
        let a = m
            .register_labelled_gauge(
                "trunk_registered",
                "Registered trunks.",
                &[("trunk", "east")],
            )
            .unwrap();
        let b = m
            .register_labelled_gauge(
                "trunk_registered",
                "Registered trunks.",
                &[("trunk", "we\"st")],
            )
            .unwrap();
        a.set(1);
        let again = m
            .register_labelled_gauge(
                "trunk_registered",
                "Registered trunks.",
                &[("trunk", "east")],
            )
            .unwrap();
        assert_eq!(again.get(), 1, "the same series");
        b.set(0);
        let text = m.render();
        assert_eq!(
            text.matches("# TYPE denwa_trunk_registered gauge").count(),
            1
        );
        assert!(
            text.contains("denwa_trunk_registered{trunk=\"east\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("denwa_trunk_registered{trunk=\"we\\\"st\"} 0\n"),
            "{text}"
        );
        assert!(matches!(
            m.register_gauge("trunk_registered", "x"),
            Err(MetricsError::NameTaken(_))
        ));
        assert!(matches!(
            m.register_labelled_counter("c_total", "x", &[("Bad-Label", "v")]),
            Err(MetricsError::InvalidLabel(_))
        ));
    }
}
