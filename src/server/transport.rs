//! SIP transports: the thin I/O shell around the protocol core.
//!
//! The SIP core task reads the UDP sockets itself through [`UdpInbox`]; one
//! task per TCP connection reads the stream through
//! [`crate::sip::framing::StreamFramer`] and hands messages to the core task.
//! Both parse where they read and answer unparsable requests with 400
//! straight away.
//! Sending never blocks the core: UDP uses `try_send_to`, TCP connections
//! have a bounded queue each and a full queue drops the message (counted).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, warn};

use crate::metrics::Metrics;
use crate::sip::framing::{Frame, StreamFramer};
use rsip::SipMessage;

use crate::sip::{message, Peer, Transmit, TransportKind};

use super::core::CoreInput;

type ConnMap = HashMap<(SocketAddr, SocketAddr), mpsc::Sender<Vec<u8>>>;

/// Handles for sending; cheap to clone.
#[derive(Clone)]
pub struct Transports {
    /// Each UDP socket with its local address (few: a linear search).
    udp: Arc<Vec<(SocketAddr, Arc<UdpSocket>)>>,
    tcp: Arc<Mutex<ConnMap>>,
    metrics: Metrics,
    user_agent: Arc<str>,
}

/// Bind a UDP socket; IPv6 sockets are v6-only so `0.0.0.0:5060` and
/// `[::]:5060` can both be bound.
pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// Bind a TCP listener (v6-only for IPv6, SO_REUSEADDR for fast restarts).
pub fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    TcpListener::from_std(s.into())
}

impl Transports {
    pub fn new(udp: Vec<Arc<UdpSocket>>, metrics: Metrics, user_agent: &str) -> io::Result<Self> {
        let mut sockets = Vec::with_capacity(udp.len());
        for s in udp {
            sockets.push((s.local_addr()?, s));
        }
        Ok(Transports {
            udp: Arc::new(sockets),
            tcp: Arc::new(Mutex::new(HashMap::new())),
            metrics,
            user_agent: user_agent.into(),
        })
    }

    /// Send without waiting. A message that cannot go out now is dropped and
    /// counted; SIP's own retransmissions cover UDP losses.
    pub fn send(&self, t: Transmit) {
        self.metrics.sip_message_out(&t.data);
        match t.peer.transport {
            TransportKind::Udp => {
                let Some(sock) = self
                    .udp
                    .iter()
                    .find_map(|(local, s)| (*local == t.peer.local).then_some(s))
                    .or_else(|| self.any_udp(t.peer.remote))
                else {
                    warn!(local = %t.peer.local, "no UDP socket to send from");
                    return;
                };
                if let Err(e) = sock.try_send_to(&t.data, t.peer.remote) {
                    self.metrics.send_dropped();
                    debug!(remote = %t.peer.remote, error = %e, "UDP send dropped");
                }
            }
            TransportKind::Tcp => {
                let conn = self
                    .tcp
                    .lock()
                    .ok()
                    .and_then(|m| m.get(&(t.peer.local, t.peer.remote)).cloned());
                match conn {
                    Some(tx) => {
                        if tx.try_send(t.data).is_err() {
                            self.metrics.send_dropped();
                        }
                    }
                    None => {
                        self.metrics.send_dropped();
                        debug!(remote = %t.peer.remote, "no TCP connection to send on");
                    }
                }
            }
        }
    }

    fn any_udp(&self, remote: SocketAddr) -> Option<&Arc<UdpSocket>> {
        self.any_udp_with_addr(remote).map(|(_, s)| s)
    }

    fn any_udp_with_addr(&self, remote: SocketAddr) -> Option<(SocketAddr, &Arc<UdpSocket>)> {
        self.udp
            .iter()
            .find(|(local, _)| local.is_ipv4() == remote.is_ipv4())
            .map(|(local, s)| (*local, s))
    }

    /// A UDP peer for sending to `remote` from our socket of the same family.
    pub fn udp_peer_for(&self, remote: SocketAddr) -> Option<Peer> {
        let (local, _) = self.any_udp_with_addr(remote)?;
        Some(Peer {
            transport: TransportKind::Udp,
            remote,
            local,
        })
    }

    fn answer_bad(&self, raw: &[u8], err: &message::ParseError, peer: Peer) {
        self.metrics.sip_parse_error();
        if let Some(data) = message::bad_request_for(raw, err, &self.user_agent) {
            self.send(Transmit { peer, data });
        }
    }
}

/// The UDP sockets, read by the SIP core task itself: a datagram is read,
/// parsed and handled on one thread with no hand-over between tasks, as a
/// worker process of a classic SIP server does. Waiting for the next
/// datagram is the only suspension point.
pub struct UdpInbox {
    sockets: Vec<(Arc<UdpSocket>, SocketAddr)>,
    buf: Vec<u8>,
    /// The socket looked at first next time: turns go round, so a flood on
    /// one socket cannot starve the others.
    next: usize,
}

/// Datagrams read from one socket before the core looks at its other inputs.
const UDP_BATCH: usize = 64;

impl UdpInbox {
    pub fn new(sockets: &[Arc<UdpSocket>]) -> Self {
        let sockets = sockets
            .iter()
            .filter_map(|s| s.local_addr().ok().map(|a| (s.clone(), a)))
            .collect();
        UdpInbox {
            sockets,
            buf: vec![0u8; 65536],
            next: 0,
        }
    }

    /// Wait until one of the sockets may have a datagram; its index. Never
    /// resolves when there are no sockets.
    pub async fn readable(&self) -> usize {
        let count = self.sockets.len();
        std::future::poll_fn(|cx| {
            for i in (0..count).map(|k| (self.next + k) % count) {
                // An error is reported by the read that follows.
                if let Some((sock, _)) = self.sockets.get(i) {
                    if sock.poll_recv_ready(cx).is_ready() {
                        return std::task::Poll::Ready(i);
                    }
                }
            }
            std::task::Poll::Pending
        })
        .await
    }

    /// Read what socket `index` has, up to a batch, without waiting. Each
    /// parsed message goes to `deliver`; keep-alives are skipped and
    /// unparsable requests answered here.
    pub fn read(
        &mut self,
        index: usize,
        transports: &Transports,
        mut deliver: impl FnMut(SipMessage, Peer),
    ) {
        let Some((sock, local)) = self.sockets.get(index) else {
            return;
        };
        self.next = index.saturating_add(1);
        for _ in 0..UDP_BATCH {
            let (n, remote) = match sock.try_recv_from(&mut self.buf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // ICMP errors surface here on Linux; they are not fatal.
                    debug!(error = %e, "UDP receive error");
                    continue;
                }
            };
            let data = self.buf.get(..n).unwrap_or_default();
            if data.iter().all(|b| b.is_ascii_whitespace()) {
                continue; // keep-alive
            }
            let peer = Peer {
                transport: TransportKind::Udp,
                remote,
                local: *local,
            };
            if let Some(msg) = transports.parse(data, peer) {
                deliver(msg, peer);
            }
        }
    }
}

impl Transports {
    /// Parse a message read from `peer`, counting it; an unparsable one is
    /// answered (when it can be) and gives `None`.
    fn parse(&self, data: &[u8], peer: Peer) -> Option<SipMessage> {
        match message::parse(data) {
            Ok(msg) => {
                self.metrics.sip_message_in(&msg);
                Some(msg)
            }
            Err(e) => {
                debug!(remote = %peer.remote, error = %e, "unparsable SIP message");
                self.answer_bad(data, &e, peer);
                None
            }
        }
    }
}

/// Parse and hand to the core; false when the core is gone.
async fn deliver(
    data: &[u8],
    peer: Peer,
    transports: &Transports,
    core: &mpsc::Sender<CoreInput>,
) -> bool {
    match transports.parse(data, peer) {
        Some(msg) => core.send(CoreInput::Message { msg, peer }).await.is_ok(),
        None => true,
    }
}

/// Accept TCP connections forever, at most `max_conns` at once.
pub async fn tcp_accept_loop(
    listener: TcpListener,
    transports: Transports,
    core: mpsc::Sender<CoreInput>,
    max_conns: usize,
) {
    let limit = Arc::new(Semaphore::new(max_conns.max(1)));
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let (stream, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "TCP accept failed");
                continue;
            }
        };
        let transports = transports.clone();
        let core = core.clone();
        tokio::spawn(async move {
            tcp_connection(stream, remote, transports, core).await;
            drop(permit);
        });
    }
}

async fn tcp_connection(
    stream: TcpStream,
    remote: SocketAddr,
    transports: Transports,
    core: mpsc::Sender<CoreInput>,
) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
    if let Ok(mut m) = transports.tcp.lock() {
        m.insert((local, remote), tx.clone());
    }
    let writer = tokio::spawn(async move {
        while let Some(data) = rx.recv().await {
            if wr.write_all(&data).await.is_err() {
                break;
            }
        }
    });
    let peer = Peer {
        transport: TransportKind::Tcp,
        remote,
        local,
    };
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16384];
    'read: loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        framer.push(buf.get(..n).unwrap_or_default());
        loop {
            match framer.next_message() {
                Ok(Some(Frame::Message(m))) => {
                    if !deliver(&m, peer, &transports, &core).await {
                        break 'read;
                    }
                }
                Ok(Some(Frame::KeepAlive)) => {
                    let _ = tx.try_send(b"\r\n".to_vec());
                }
                Ok(None) => break,
                Err(e) => {
                    // Without a parsable message there is no Via to answer
                    // to; the stream cannot be resynchronised, so close it.
                    debug!(remote = %remote, error = %e, "closing TCP connection after a framing error");
                    transports.metrics.sip_parse_error();
                    break 'read;
                }
            }
        }
    }
    if let Ok(mut m) = transports.tcp.lock() {
        m.remove(&(local, remote));
    }
    drop(tx);
    let _ = writer.await;
}

/// The local IP the kernel would use to reach `remote` (no packet is sent).
pub fn route_source(remote: IpAddr) -> Option<IpAddr> {
    let bind: SocketAddr = if remote.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let s = std::net::UdpSocket::bind(bind).ok()?;
    s.connect(SocketAddr::new(remote, 9)).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}
