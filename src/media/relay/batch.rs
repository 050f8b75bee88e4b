//! Reading a socket's queued datagrams in one system call (`recvmmsg`).
//!
//! Owns: a worker's receive buffers, one per datagram of a batch, and the
//! message headers the kernel fills, allocated once per worker thread.
//!
//! Must not: block (the sockets are non-blocking and every call passes
//! `MSG_DONTWAIT`), allocate per call, or let a datagram that did not fit
//! its buffer pass as whole.
//!
//! # Why a batch
//!
//! The worker's readiness is edge-triggered, so a socket must be read
//! until the kernel says it is empty. With one `recvfrom` per datagram that
//! is a second, failing call after every packet, and at 50 packets a
//! second per leg a socket rarely holds more than one. `recvmmsg` asks for
//! up to [`BATCH`] at once: a batch that comes back short has emptied the
//! socket, so one call per wake-up suffices.

use std::io;
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrIn, SockaddrIn6, SockaddrLike};

/// Datagrams asked for per system call. A leg's socket rarely holds more
/// than one; a longer queue takes a few calls.
pub(super) const BATCH: usize = 4;
/// Receive buffer size per datagram; a longer datagram is cut and reported
/// as such.
pub(super) const MAX_DATAGRAM: usize = 8192;

/// One datagram of the last batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Received {
    pub len: usize,
    /// `None` when the kernel gave no IP source (never for UDP over IP).
    pub source: Option<SocketAddr>,
    /// The datagram did not fit its buffer: what is there is only its
    /// start.
    pub truncated: bool,
}

/// The receive side of a worker. Not `Send` (the kernel headers hold raw
/// pointers): each worker thread makes its own.
pub(super) struct BatchReceiver {
    buffers: Box<[u8]>,
    /// Headers per address family, each with room for exactly its own
    /// addresses (an IPv6 socket reports IPv4 peers as mapped IPv6).
    v4: MultiHeaders<SockaddrIn>,
    v6: MultiHeaders<SockaddrIn6>,
    received: [Received; BATCH],
    count: usize,
}

impl BatchReceiver {
    pub fn new() -> BatchReceiver {
        BatchReceiver {
            buffers: vec![0; BATCH * MAX_DATAGRAM].into_boxed_slice(),
            v4: MultiHeaders::preallocate(BATCH, None),
            v6: MultiHeaders::preallocate(BATCH, None),
            received: [Received {
                len: 0,
                source: None,
                truncated: false,
            }; BATCH],
            count: 0,
        }
    }

    /// Reads what `socket` (bound to `local`) has queued, at most
    /// [`BATCH`] datagrams; how many. `WouldBlock` when there was nothing.
    pub fn receive(&mut self, socket: &impl AsRawFd, local: SocketAddr) -> io::Result<usize> {
        let fd = socket.as_raw_fd();
        self.count = if local.is_ipv4() {
            receive_into(fd, &mut self.v4, &mut self.buffers, &mut self.received)?
        } else {
            receive_into(fd, &mut self.v6, &mut self.buffers, &mut self.received)?
        };
        Ok(self.count)
    }

    /// Datagram `index` of the last batch: its bytes (to rewrite in place)
    /// and how it came.
    pub fn datagram(&mut self, index: usize) -> Option<(&mut [u8], Received)> {
        if index >= self.count {
            return None;
        }
        let received = *self.received.get(index)?;
        let start = index.checked_mul(MAX_DATAGRAM)?;
        let bytes = self
            .buffers
            .get_mut(start..start.checked_add(received.len.min(MAX_DATAGRAM))?)?;
        Some((bytes, received))
    }
}

/// One `recvmmsg` into `buffers` with `headers`; what came, in `received`.
fn receive_into<S>(
    fd: std::os::fd::RawFd,
    headers: &mut MultiHeaders<S>,
    buffers: &mut [u8],
    received: &mut [Received; BATCH],
) -> io::Result<usize>
where
    S: SockaddrLike + Copy + Into<SocketAddr>,
{
    let mut chunks = buffers.chunks_mut(MAX_DATAGRAM);
    let mut slices: [[IoSliceMut<'_>; 1]; BATCH] =
        std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
    let results = recvmmsg(fd, headers, slices.iter_mut(), MsgFlags::MSG_DONTWAIT, None)
        .map_err(|errno| io::Error::from_raw_os_error(errno as i32))?;
    let mut count = 0;
    for (slot, message) in received.iter_mut().zip(results) {
        *slot = Received {
            len: message.bytes,
            source: message.address.map(Into::into),
            truncated: message.flags.contains(MsgFlags::MSG_TRUNC),
        };
        count += 1;
    }
    Ok(count)
}

/// Whether an error from [`BatchReceiver::receive`] means "nothing more".
pub(super) fn is_would_block(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::WouldBlock || error.raw_os_error() == Some(Errno::EAGAIN as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    /// A receiving socket (blocking, so a test can wait for a datagram;
    /// the batch itself never waits) and a sender.
    fn pair(ip: &str) -> Option<(UdpSocket, UdpSocket)> {
        let receiver = UdpSocket::bind((ip, 0)).ok()?;
        receiver
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        let sender = UdpSocket::bind((ip, 0)).ok()?;
        Some((receiver, sender))
    }

    /// Waits until `socket` has a datagram queued, then reads a batch.
    fn receive_waiting(batch: &mut BatchReceiver, socket: &UdpSocket) -> usize {
        socket.peek_from(&mut [0; 1]).unwrap();
        batch.receive(socket, socket.local_addr().unwrap()).unwrap()
    }

    #[test]
    fn a_batch_takes_what_is_queued_and_then_reports_an_empty_socket() {
        let (receiver, sender) = pair("127.0.0.1").unwrap();
        let local = receiver.local_addr().unwrap();
        let mut batch = BatchReceiver::new();
        let err = batch.receive(&receiver, local).unwrap_err();
        assert!(is_would_block(&err), "{err}");
        for n in 0..3u8 {
            sender.send_to(&[n; 12], local).unwrap();
        }
        let mut seen = Vec::new();
        while seen.len() < 3 {
            for i in 0..receive_waiting(&mut batch, &receiver) {
                let (bytes, received) = batch.datagram(i).unwrap();
                assert_eq!(received.source, Some(sender.local_addr().unwrap()));
                assert!(!received.truncated);
                seen.push(bytes.to_vec());
            }
        }
        assert_eq!(seen, vec![vec![0; 12], vec![1; 12], vec![2; 12]]);
        assert!(batch.datagram(3).is_none());
        let err = batch.receive(&receiver, local).unwrap_err();
        assert!(is_would_block(&err), "emptied: {err}");
    }

    #[test]
    fn an_oversized_datagram_is_marked_cut() {
        let (receiver, sender) = pair("127.0.0.1").unwrap();
        let local = receiver.local_addr().unwrap();
        sender.send_to(&vec![7; MAX_DATAGRAM + 100], local).unwrap();
        let mut batch = BatchReceiver::new();
        assert_eq!(receive_waiting(&mut batch, &receiver), 1);
        let (bytes, received) = batch.datagram(0).unwrap();
        assert!(received.truncated);
        assert_eq!(bytes.len(), MAX_DATAGRAM);
    }

    #[test]
    fn ipv6_sources_survive_ipv4_batches() {
        let mut batch = BatchReceiver::new();
        let (r4, s4) = pair("127.0.0.1").unwrap();
        s4.send_to(b"four", r4.local_addr().unwrap()).unwrap();
        assert_eq!(receive_waiting(&mut batch, &r4), 1);
        // A machine without IPv6 loopback has nothing more to show.
        let Some((r6, s6)) = pair("::1") else {
            return;
        };
        s6.send_to(b"six", r6.local_addr().unwrap()).unwrap();
        assert_eq!(receive_waiting(&mut batch, &r6), 1);
        let (bytes, received) = batch.datagram(0).unwrap();
        assert_eq!(bytes, b"six");
        assert_eq!(received.source, Some(s6.local_addr().unwrap()));
    }
}
