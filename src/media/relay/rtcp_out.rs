//! denwa's own RTCP to a leg that hears denwa's stream.
//!
//! Once a leg gets denwa's own RTP stream (a prompt, music on hold, keys,
//! a mix), the other phone's RTCP no longer describes what it hears and is
//! not forwarded to it. Instead denwa sends the leg its own compound
//! packet (RFC 3550 §6): a sender report for denwa's stream (the SSRC the
//! leg receives, packets and payload octets sent under it, the NTP and RTP
//! timestamps of one instant), a report block about the RTP the leg sends
//! denwa (loss, jitter, and the leg's last SR with the delay since), and an
//! SDES CNAME. Reports go out at the RFC 3550 interval for a two-party
//! session: 5 s nominal, each interval drawn uniformly from 0.5 to 1.5
//! times that, the first one after half an interval (§6.2, §6.3).
//!
//! Owns: per leg, when the next report is due, the SSRC the leg's phone
//! sends with, and building the compound from the leg's signal state.
//!
//! Must not: read the clock or touch sockets (the worker passes its frame
//! time and the wall clock, and sends what comes out), or report on a leg
//! that only hears relayed media.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::signal::LegSignal;
use crate::media::rtcp::{build_report, ntp_from_unix_ms, SenderInfo};

/// The nominal report interval: RFC 3550's 5 s minimum, as a session of
/// two participants never reaches the bandwidth-derived one.
pub const NOMINAL_INTERVAL_MS: u64 = 5000;

/// One leg's RTCP sender.
pub(super) struct RtcpSender {
    cname: String,
    rng: StdRng,
    /// When the next report is due, once the leg hears denwa's stream.
    next_ms: Option<u64>,
    /// The SSRC of the RTP the leg's phone sends.
    phone_ssrc: Option<u32>,
}

impl RtcpSender {
    /// A sender calling itself `cname`, drawing its intervals from `seed`.
    pub fn new(cname: String, seed: u64) -> RtcpSender {
        RtcpSender {
            cname,
            rng: StdRng::seed_from_u64(seed),
            next_ms: None,
            phone_ssrc: None,
        }
    }

    /// An RTP packet (already validated) arrived from the leg's phone.
    pub fn heard(&mut self, packet: &[u8]) {
        if let Some(ssrc) = packet.get(8..12).and_then(|b| b.first_chunk::<4>()) {
            self.phone_ssrc = Some(u32::from_be_bytes(*ssrc));
        }
    }

    /// The next interval: `NOMINAL_INTERVAL_MS` times a factor drawn from
    /// 0.5..1.5, scaled by `share` (0.5 for the first report).
    fn interval(&mut self, share: f64) -> u64 {
        let factor: f64 = self.rng.gen_range(0.5..1.5);
        (NOMINAL_INTERVAL_MS as f64 * factor * share) as u64
    }

    /// The report due at `now_ms` (worker milliseconds; `unix_ms` gives
    /// the wall clock at the same instant, read only when a report is due)
    /// for the leg whose state is `signal`, if one is due. Nothing while
    /// denwa only relays to the leg.
    pub fn poll(
        &mut self,
        signal: &mut LegSignal,
        now_ms: u64,
        unix_ms: impl FnOnce() -> u64,
    ) -> Option<Vec<u8>> {
        let Some((ssrc, packets, octets)) = signal.sent_counts() else {
            self.next_ms = None;
            return None;
        };
        let due = match self.next_ms {
            Some(due) => due,
            None => {
                // The leg just started hearing denwa's stream.
                let first = now_ms + self.interval(0.5);
                self.next_ms = Some(first);
                first
            }
        };
        if now_ms < due {
            return None;
        }
        self.next_ms = Some(now_ms + self.interval(1.0));
        let rtp_timestamp = signal.out.as_ref()?.rtp_timestamp_at(now_ms);
        let sender = SenderInfo {
            ntp_timestamp: ntp_from_unix_ms(unix_ms()),
            rtp_timestamp,
            // The counts wrap around, as RFC 3550 §6.4.1 has them do.
            packet_count: (packets & 0xffff_ffff) as u32,
            octet_count: (octets & 0xffff_ffff) as u32,
        };
        let blocks: Vec<_> = self
            .phone_ssrc
            .and_then(|phone| signal.quality.reception_mut().report_block(phone, now_ms))
            .into_iter()
            .collect();
        Some(build_report(ssrc, Some(&sender), &blocks, &self.cname))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::g711::Codec;
    use crate::media::relay::signal::LegCodec;
    use crate::media::rtcp::{parse_compound, RtcpPacket};

    fn rtp(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xff; 160]);
        p
    }

    /// A leg that heard 50 packets relayed from the other phone (SSRC 7),
    /// sent 100 of its own (SSRC 9), and then denwa's own stream.
    fn leg_hearing_denwa(sender: &mut RtcpSender) -> LegSignal {
        let mut signal = LegSignal::new();
        signal.codec = LegCodec {
            codec: Some(Codec::Pcmu),
            telephone_event: None,
        };
        for i in 0..50u16 {
            signal.note_relayed(&rtp(i, u32::from(i) * 160, 7), u64::from(i) * 20);
        }
        for i in 0..100u16 {
            let packet = rtp(1000 + i, 5000 + u32::from(i) * 160, 9);
            signal
                .quality
                .on_rtp(1000 + i, 5000 + u32::from(i) * 160, u64::from(i) * 20);
            sender.heard(&packet);
        }
        signal.start_player(
            crate::media::player::Player::new(
                crate::media::player::Playlist::new().then_silence(1000),
            ),
            1000,
        );
        for i in 0..10u64 {
            signal.next_player_packet(1000 + 20 * i);
        }
        signal
    }

    #[test]
    fn nothing_is_sent_while_the_leg_only_hears_relayed_media() {
        let mut sender = RtcpSender::new("denwa@127.0.0.1".into(), 1);
        let mut signal = LegSignal::new();
        signal.note_relayed(&rtp(1, 160, 7), 0);
        for t in (0..60_000).step_by(20) {
            assert_eq!(sender.poll(&mut signal, t, || 1_700_000_000_000 + t), None);
        }
    }

    #[test]
    fn reports_come_at_randomised_intervals_around_five_seconds() {
        let mut sender = RtcpSender::new("denwa@127.0.0.1".into(), 42);
        let mut signal = leg_hearing_denwa(&mut sender);
        let start = 1200;
        let mut sent = Vec::new();
        for t in (start..start + 600_000).step_by(20) {
            if sender
                .poll(&mut signal, t, || 1_700_000_000_000 + t)
                .is_some()
            {
                sent.push(t);
            }
        }
        let first = sent[0] - start;
        assert!((1250..=3750).contains(&first), "first after {first} ms");
        let gaps: Vec<u64> = sent.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|g| (2500..=7520).contains(g)), "{gaps:?}");
        let mean = gaps.iter().sum::<u64>() as f64 / gaps.len() as f64;
        assert!((4500.0..5500.0).contains(&mean), "mean interval {mean}");
        assert!(gaps.iter().any(|&g| g < 4000) && gaps.iter().any(|&g| g > 6000));
        // The same seed, the same schedule.
        let mut again = RtcpSender::new("denwa@127.0.0.1".into(), 42);
        let mut signal = leg_hearing_denwa(&mut again);
        let first_again = (start..).step_by(20).find(|&t| {
            again
                .poll(&mut signal, t, || 1_700_000_000_000 + t)
                .is_some()
        });
        assert_eq!(first_again, Some(sent[0]));
    }

    #[test]
    fn the_report_describes_both_directions() {
        let mut sender = RtcpSender::new("denwa@192.0.2.1".into(), 7);
        let mut signal = leg_hearing_denwa(&mut sender);
        let at = (1200..).step_by(20).find_map(|t| {
            sender
                .poll(&mut signal, t, || 1_700_000_000_000 + t)
                .map(|p| (t, p))
        });
        let (t, packet) = at.expect("a report");
        let packets = parse_compound(&packet).expect("valid compound");
        let RtcpPacket::SenderReport {
            ssrc,
            sender: info,
            reports,
        } = &packets[0]
        else {
            panic!("an SR first: {packets:?}");
        };
        // denwa continued the relayed stream (SSRC 7): its 50 packets, then
        // ten of the player's, 160 octets each.
        assert_eq!(*ssrc, 7);
        assert_eq!((info.packet_count, info.octet_count), (60, 60 * 160));
        assert_eq!(info.ntp_timestamp, ntp_from_unix_ms(1_700_000_000_000 + t));
        let out = signal.out.as_ref().unwrap();
        assert_eq!(info.rtp_timestamp, out.rtp_timestamp_at(t));
        assert_eq!(reports.len(), 1);
        let block = reports[0];
        assert_eq!(block.ssrc, 9, "about the phone's stream");
        assert_eq!(block.extended_highest_seq, 1099);
        assert_eq!((block.cumulative_lost, block.fraction_lost), (0, 0));
        let Some(RtcpPacket::SourceDescription(chunks)) = packets.get(1) else {
            panic!("an SDES second: {packets:?}");
        };
        assert_eq!(chunks[0].ssrc, 7);
        assert_eq!(chunks[0].cname(), Some(&b"denwa@192.0.2.1"[..]));
    }
}
