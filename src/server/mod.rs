//! Wiring: from a validated [`Config`] to a running appliance.
//!
//! Binds every listener first (so a port in use fails the start before
//! anything is announced), restores registrations from the store, spawns the
//! transport tasks, the SIP core and the HTTP endpoint, tells systemd READY,
//! then waits for signals: SIGHUP reloads, SIGTERM/SIGINT drain and stop.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::call::context::{Addressing, CallContext};
use crate::config::{self, Config};
use crate::media::ports::PortAllocator;
use crate::media::recording::{Recorder, RecorderConfig};
use crate::media::relay::MediaEngine;
use crate::metrics::Metrics;
use crate::registrar::Registrar;
use crate::store::Store;

pub mod acd;
pub mod core;
pub mod lists;
pub mod transport;

use self::core::{Core, CoreInput};

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    File(PathBuf),
    /// The defaults compiled into the binary (no file at the default path).
    Embedded,
}

impl ConfigSource {
    pub fn load(&self) -> Result<Config, config::ConfigErrors> {
        match self {
            ConfigSource::File(p) => config::load(p),
            ConfigSource::Embedded => config::parse(
                config::DEFAULT_TOML,
                std::path::Path::new("<built-in denwa.toml>"),
                std::path::Path::new("config"),
            ),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Run the appliance until SIGTERM/SIGINT.
pub async fn run(source: ConfigSource, config: Config) -> anyhow::Result<()> {
    let config = Arc::new(config);
    std::fs::create_dir_all(&config.storage.data_dir).with_context(|| {
        format!(
            "creating data directory {}",
            config.storage.data_dir.display()
        )
    })?;
    std::fs::create_dir_all(config.storage.recordings())
        .context("creating recordings directory")?;
    let store = Store::open(&config.storage.database()).context("opening the database")?;
    // Recordings a crash left open are repaired before anything records.
    let (recorder, recovery) = {
        let (data_dir, store) = (config.storage.data_dir.clone(), store.clone());
        tokio::task::spawn_blocking(move || Recorder::start(RecorderConfig::new(data_dir), store))
            .await?
            .context("starting the recorder")?
    };
    if recovery.recovered + recovery.failed > 0 {
        info!(
            repaired = recovery.recovered,
            failed = recovery.failed,
            "recordings left open by a crash were closed"
        );
    }
    let metrics = Metrics::new();

    // Listeners first: a port in use is a start-up error.
    let mut udp = Vec::new();
    for addr in &config.sip.udp {
        let s = transport::bind_udp(*addr).with_context(|| format!("binding SIP UDP {addr}"))?;
        info!(%addr, "SIP listening on UDP");
        udp.push(Arc::new(s));
    }
    let mut tcp = Vec::new();
    for addr in &config.sip.tcp {
        let l = transport::bind_tcp(*addr).with_context(|| format!("binding SIP TCP {addr}"))?;
        info!(%addr, "SIP listening on TCP");
        tcp.push(l);
    }
    let http = match config.http.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding HTTP {addr}"))?,
        ),
        None => None,
    };

    // Registrations survive a restart.
    let mut registrar = Registrar::new(config.registrar);
    let restored = {
        let reader = store.reader()?;
        // Stored expiries may lag the real ones (see registrar::storage).
        let cutoff = crate::registrar::stored_expiry_cutoff(unix_now());
        reader.load_bindings(i64::try_from(cutoff).unwrap_or(i64::MAX))?
    };
    let count = restored.len();
    let mut registered = Vec::new();
    for b in restored {
        if let Some((user, binding)) = crate::registrar::from_persisted(&b) {
            if !registered.contains(&user) {
                registered.push(user.clone());
            }
            registrar.restore(&user, binding);
        }
    }
    metrics.set_registrations(registrar.binding_count() as i64);
    info!(count, "registrations restored");

    // The ACD task, its statistics continuing from today's stored log.
    let acd = {
        let sounds = crate::media::sound::SoundLibrary::new(config.media.sounds.clone());
        let (handle, rx) = crate::call::queue::AcdHandle::channel(sounds);
        let now = unix_now().saturating_mul(1000);
        let today = store
            .reader()?
            .acd_events(acd::day_start(now), now.saturating_add(1))?;
        let task = acd::AcdTask::new(
            config.acd.clone(),
            store.clone(),
            &metrics,
            &today,
            &registered,
        );
        tokio::spawn(task.run(rx));
        handle
    };

    let transports =
        transport::Transports::new(udp.clone(), metrics.clone(), &config.sip.user_agent)?;
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let calls = crate::call::Calls::new();
    let ctx = CallContext {
        commands: cmd_tx,
        config: config.clone(),
        addressing: Arc::new(Addressing::new(config.sip.advertise, config.media.address)),
        ports: PortAllocator::new(config.media.rtp_port_min, config.media.rtp_port_max),
        media: MediaEngine::start(config.media.workers).context("starting media workers")?,
        recorder: recorder.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        taps: crate::call::Taps::new(),
        calls: calls.clone(),
        prompts: Arc::new(crate::media::sound::SoundLibrary::new(
            config.media.sounds.clone(),
        )),
        acd,
    };
    let number_lists = lists::start(store.clone(), &metrics).await?;
    let (core_tx, core_rx) = mpsc::channel(8192);
    let core = Core::new(
        config.clone(),
        registrar,
        store.clone(),
        transports.clone(),
        ctx,
        number_lists,
        crate::call::notice::Notices::default(),
    );
    // The core task reads the UDP sockets itself: no hand-over per datagram.
    let udp_inbox = transport::UdpInbox::new(&udp);
    let core_task = tokio::spawn(core.run(core_rx, cmd_rx, udp_inbox));
    for l in tcp {
        tokio::spawn(transport::tcp_accept_loop(
            l,
            transports.clone(),
            core_tx.clone(),
            config.sip.max_tcp_connections,
        ));
    }
    let draining = Arc::new(AtomicBool::new(false));
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    if let Some(listener) = http {
        let state = crate::http::HttpState {
            metrics: metrics.clone(),
            draining: draining.clone(),
        };
        let mut app = crate::http::router(state);
        if let Some(token) = &config.http.api_token {
            app = app.merge(crate::http::api::router(calls.clone(), token));
        }
        tokio::spawn(async move {
            let stop = async {
                let _ = http_stop_rx.await;
            };
            if let Err(e) = crate::http::serve_router(listener, app, stop).await {
                error!(error = %e, "HTTP server failed");
            }
        });
    }

    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    info!(version = env!("CARGO_PKG_VERSION"), "denwa ready");

    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // Reloadable settings this task applies itself.
    let mut shutdown_grace = config.calls.shutdown_grace;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]);
                match source.load() {
                    Ok(new) => {
                        if new.sip.udp != config.sip.udp || new.sip.tcp != config.sip.tcp {
                            warn!("listen addresses changed: they take effect at the next restart");
                        }
                        if new.acd != config.acd {
                            warn!("[acd] changed: it takes effect at the next restart");
                        }
                        shutdown_grace = new.calls.shutdown_grace;
                        let _ = core_tx.send(CoreInput::Reload(Arc::new(new))).await;
                    }
                    Err(errors) => {
                        for e in &errors.0 {
                            error!(error = %e, "configuration refused; the running configuration stays");
                        }
                    }
                }
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }

    info!("stopping: no new calls; waiting for active calls to finish");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    // The core first, then /healthz: once a client sees "draining", the
    // Drain is queued ahead of anything it sends next, so a new INVITE is
    // refused with 503.
    let _ = core_tx.send(CoreInput::Drain).await;
    draining.store(true, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + shutdown_grace;
    while metrics.calls_active().get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    if metrics.calls_active().get() > 0 {
        warn!(
            active = metrics.calls_active().get(),
            "shutdown deadline reached: hanging up the calls still up"
        );
        let _ = core_tx.send(CoreInput::HangUpAll).await;
        // BYEs and CANCELs go out now; give the actors a moment to write
        // their call records.
        let hangup_deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while metrics.calls_active().get() > 0 && tokio::time::Instant::now() < hangup_deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let _ = http_stop_tx.send(());
    core_task.abort();
    // Recordings still open are closed before the store goes.
    let closing = recorder.clone();
    tokio::task::spawn_blocking(move || closing.close()).await??;
    let store_for_close = store.clone();
    tokio::task::spawn_blocking(move || store_for_close.close()).await??;
    info!("denwa stopped");
    Ok(())
}
