//! Receiver-side statistics of one RTP stream (RFC 3550 §6.4.1, A.1, A.3,
//! A.8) and the line-quality summary of a leg.
//!
//! Owns: [`ReceptionStats`] (extended sequence numbers with probation,
//! expected and lost packets, the loss fraction per report interval,
//! interarrival jitter at 8000 Hz), [`LineQualityMeter`] (those statistics
//! plus what the phone's own RTCP reports say about denwa's stream) and the
//! [`LineQuality`] a call record keeps.
//!
//! Must not: read the clock (arrival times are arguments in milliseconds)
//! or parse RTP; the caller hands in sequence number and timestamp of each
//! packet it accepted.

use super::{ntp_middle, parse_compound, reports_about, ReportBlock, RtcpError, RtcpPacket};

/// Timestamp clock of G.711, in Hz.
pub const CLOCK_RATE: u32 = 8000;
/// A forward jump this large (in packets) is not taken as loss.
const MAX_DROPOUT: u16 = 3000;
/// A packet this far behind the highest sequence number is reordered; one
/// farther back is a jump.
const MAX_MISORDER: u16 = 100;
/// Packets in sequence needed before a new source is believed.
const MIN_SEQUENTIAL: u32 = 2;
const SEQ_MOD: u64 = 1 << 16;

/// Sequence-number state of a source (RFC 3550 A.1).
#[derive(Debug, Clone, Copy)]
struct Sequence {
    max_seq: u16,
    /// Wraps of the sequence number, times 2^16.
    cycles: u64,
    base_seq: u64,
    /// The sequence number after a large jump: if it comes next, the
    /// source restarted. Outside 0..2^16 when unset.
    bad_seq: u32,
    /// Sequential packets still needed before the source is valid.
    probation: u32,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
}

impl Sequence {
    fn probing(seq: u16) -> Sequence {
        Sequence {
            max_seq: seq.wrapping_sub(1),
            probation: MIN_SEQUENTIAL,
            ..Sequence::restart(seq)
        }
    }

    fn restart(seq: u16) -> Sequence {
        Sequence {
            max_seq: seq,
            cycles: 0,
            base_seq: u64::from(seq),
            bad_seq: 1 << 16 | 1,
            probation: 0,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
        }
    }

    fn extended_max(&self) -> u64 {
        self.cycles + u64::from(self.max_seq)
    }

    fn expected(&self) -> u64 {
        (self.extended_max() + 1).saturating_sub(self.base_seq)
    }

    /// Takes `seq` into account; what the packet is.
    fn update(&mut self, seq: u16) -> Accepted {
        let delta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    *self = Sequence::restart(seq);
                    self.received += 1;
                    return Accepted::Restarted;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return Accepted::No;
        }
        let mut accepted = Accepted::Yes;
        if delta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles += SEQ_MOD;
            }
            self.max_seq = seq;
        } else if u32::from(delta) <= (1 << 16) - u32::from(MAX_MISORDER) {
            if u32::from(seq) != self.bad_seq {
                self.bad_seq = u32::from(seq.wrapping_add(1));
                return Accepted::No;
            }
            // Two packets in sequence after the jump: the source restarted.
            *self = Sequence::restart(seq);
            accepted = Accepted::Restarted;
        }
        // Otherwise a duplicate or a reordered packet: counted, no change.
        self.received += 1;
        accepted
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accepted {
    Yes,
    /// Counted, and the statistics began anew with this packet.
    Restarted,
    No,
}

/// Reception statistics of one RTP source. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct ReceptionStats {
    sequence: Option<Sequence>,
    /// Relative transit time of the previous packet, in timestamp units.
    transit: Option<u32>,
    /// Interarrival jitter times 16 (RFC 3550 A.8).
    jitter_16: u64,
    jitter_16_sum: u64,
    jitter_16_max: u64,
    jitter_samples: u64,
    /// LSR of the last SR from this source and when it arrived.
    last_sr: Option<(u32, u64)>,
}

impl ReceptionStats {
    pub fn new() -> ReceptionStats {
        ReceptionStats::default()
    }

    /// Takes an RTP packet with `seq` and `rtp_ts` that arrived at
    /// `arrival_ms`; whether it was counted (packets of an unconfirmed
    /// source, and the first after a large jump, are not).
    pub fn on_rtp(&mut self, seq: u16, rtp_ts: u32, arrival_ms: u64) -> bool {
        let sequence = self.sequence.get_or_insert_with(|| Sequence::probing(seq));
        let accepted = sequence.update(seq);
        if accepted == Accepted::Restarted {
            self.transit = None;
        }
        if accepted != Accepted::No {
            self.update_jitter(rtp_ts, arrival_ms);
        }
        accepted != Accepted::No
    }

    fn update_jitter(&mut self, rtp_ts: u32, arrival_ms: u64) {
        let arrival = (arrival_ms.wrapping_mul(u64::from(CLOCK_RATE / 1000)) & 0xffff_ffff) as u32;
        let transit = arrival.wrapping_sub(rtp_ts);
        if let Some(previous) = self.transit.replace(transit) {
            let d = u64::from((transit.wrapping_sub(previous) as i32).unsigned_abs());
            self.jitter_16 = self.jitter_16 + d - ((self.jitter_16 + 8) >> 4);
            self.jitter_16_sum = self.jitter_16_sum.saturating_add(self.jitter_16);
            self.jitter_16_max = self.jitter_16_max.max(self.jitter_16);
            self.jitter_samples += 1;
        }
    }

    /// Notes an SR from this source (its NTP timestamp), for the LSR and
    /// DLSR of the next report block.
    pub fn on_sender_report(&mut self, ntp_timestamp: u64, arrival_ms: u64) {
        self.last_sr = Some((ntp_middle(ntp_timestamp), arrival_ms));
    }

    pub fn packets_received(&self) -> u64 {
        self.sequence.map_or(0, |s| s.received)
    }

    /// Packets expected from the first counted one to the highest.
    pub fn packets_expected(&self) -> u64 {
        self.sequence
            .filter(|s| s.probation == 0)
            .map_or(0, |s| s.expected())
    }

    /// Expected minus received; negative when duplicates outnumber losses.
    pub fn packets_lost(&self) -> i64 {
        let expected = i64::try_from(self.packets_expected()).unwrap_or(i64::MAX);
        let received = i64::try_from(self.packets_received()).unwrap_or(i64::MAX);
        expected.saturating_sub(received)
    }

    /// Lost over expected since the statistics began, in percent (0 when
    /// nothing is lost on balance).
    pub fn loss_percent(&self) -> f32 {
        match self.packets_expected() {
            0 => 0.0,
            expected => (self.packets_lost().max(0) as f64 * 100.0 / expected as f64) as f32,
        }
    }

    pub fn extended_highest_seq(&self) -> u32 {
        self.sequence
            .map_or(0, |s| (s.extended_max() & 0xffff_ffff) as u32)
    }

    /// Interarrival jitter in timestamp units, as an RR carries it.
    pub fn jitter(&self) -> u32 {
        u32::try_from(self.jitter_16 >> 4).unwrap_or(u32::MAX)
    }

    pub fn jitter_ms(&self) -> f32 {
        jitter_16_to_ms(self.jitter_16 as f64)
    }

    /// The mean of the jitter estimate over the packets so far, in ms.
    pub fn jitter_ms_avg(&self) -> f32 {
        match self.jitter_samples {
            0 => 0.0,
            n => jitter_16_to_ms(self.jitter_16_sum as f64 / n as f64),
        }
    }

    pub fn jitter_ms_max(&self) -> f32 {
        jitter_16_to_ms(self.jitter_16_max as f64)
    }

    /// The report block about this source (RFC 3550 A.3) at `now_ms`,
    /// opening a new interval for the fraction lost; `None` before the
    /// first counted packet.
    pub fn report_block(&mut self, ssrc: u32, now_ms: u64) -> Option<ReportBlock> {
        let jitter = self.jitter();
        let sequence = self.sequence.as_mut().filter(|s| s.probation == 0)?;
        let expected = sequence.expected();
        let expected_interval = expected.saturating_sub(sequence.expected_prior);
        let received_interval = sequence.received.saturating_sub(sequence.received_prior);
        sequence.expected_prior = expected;
        sequence.received_prior = sequence.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = match expected_interval {
            0 => 0,
            n => u8::try_from((lost_interval << 8) / n).unwrap_or(u8::MAX),
        };
        let lost = i64::try_from(expected).unwrap_or(i64::MAX)
            - i64::try_from(sequence.received).unwrap_or(i64::MAX);
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            Some((lsr, at)) => {
                let delay = now_ms.saturating_sub(at).saturating_mul(65_536) / 1000;
                (lsr, u32::try_from(delay).unwrap_or(u32::MAX))
            }
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: i32::try_from(lost.clamp(-0x80_0000, 0x7f_ffff)).unwrap_or(0),
            extended_highest_seq: (sequence.extended_max() & 0xffff_ffff) as u32,
            jitter,
            last_sr,
            delay_since_last_sr,
        })
    }
}

fn jitter_16_to_ms(jitter_16: f64) -> f32 {
    (jitter_16 / 16.0 * 1000.0 / f64::from(CLOCK_RATE)) as f32
}

/// The line quality of one leg, kept with the call record.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LineQuality {
    /// RTP packets denwa received from the leg's phone.
    pub packets_received: u64,
    /// Packets the phone sent that never arrived (0 when duplicates
    /// outnumber them).
    pub packets_lost: u64,
    pub loss_percent: f32,
    /// Interarrival jitter of what the phone sent, mean and peak, in ms.
    pub jitter_ms_avg: f32,
    pub jitter_ms_max: f32,
    /// Mean of the loss the phone reported about denwa's stream (its RTCP
    /// fraction lost), if it sent reports.
    pub remote_reported_loss_percent: Option<f32>,
    /// Mean of the jitter the phone reported about denwa's stream, in ms.
    pub remote_reported_jitter_ms: Option<f32>,
}

/// What one leg's phone sends (RTP statistics) and says (its RTCP reports
/// about denwa's stream), summed up as [`LineQuality`].
#[derive(Debug, Clone, Default)]
pub struct LineQualityMeter {
    reception: ReceptionStats,
    remote_reports: u64,
    remote_loss_percent_sum: f64,
    remote_jitter_ms_sum: f64,
}

impl LineQualityMeter {
    pub fn new() -> LineQualityMeter {
        LineQualityMeter::default()
    }

    pub fn reception(&self) -> &ReceptionStats {
        &self.reception
    }

    pub fn reception_mut(&mut self) -> &mut ReceptionStats {
        &mut self.reception
    }

    /// See [`ReceptionStats::on_rtp`].
    pub fn on_rtp(&mut self, seq: u16, rtp_ts: u32, arrival_ms: u64) -> bool {
        self.reception.on_rtp(seq, rtp_ts, arrival_ms)
    }

    /// Takes a compound RTCP packet from the phone: its SR timestamps the
    /// next report denwa sends, its report blocks about `denwa_ssrc` (the
    /// stream denwa sends the phone) feed the remote figures.
    pub fn on_rtcp(
        &mut self,
        packet: &[u8],
        denwa_ssrc: u32,
        arrival_ms: u64,
    ) -> Result<(), RtcpError> {
        let packets = parse_compound(packet)?;
        for packet in &packets {
            if let RtcpPacket::SenderReport { sender, .. } = packet {
                self.reception
                    .on_sender_report(sender.ntp_timestamp, arrival_ms);
            }
        }
        for block in reports_about(&packets, denwa_ssrc) {
            self.on_remote_report(block);
        }
        Ok(())
    }

    /// Takes one report block the phone sent about denwa's stream.
    pub fn on_remote_report(&mut self, block: &ReportBlock) {
        self.remote_reports += 1;
        self.remote_loss_percent_sum += f64::from(block.loss_percent());
        self.remote_jitter_ms_sum += f64::from(block.jitter_ms(CLOCK_RATE));
    }

    pub fn summary(&self) -> LineQuality {
        let reports = self.remote_reports as f64;
        let mean = |sum: f64| (self.remote_reports > 0).then(|| (sum / reports) as f32);
        let stats = &self.reception;
        LineQuality {
            packets_received: stats.packets_received(),
            packets_lost: u64::try_from(stats.packets_lost()).unwrap_or(0),
            loss_percent: stats.loss_percent(),
            jitter_ms_avg: stats.jitter_ms_avg(),
            jitter_ms_max: stats.jitter_ms_max(),
            remote_reported_loss_percent: mean(self.remote_loss_percent_sum),
            remote_reported_jitter_ms: mean(self.remote_jitter_ms_sum),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtcp::{write_receiver_report, write_sender_report, SenderInfo};

    /// Feeds packets `seqs` sent every 20 ms and arriving on time.
    fn feed(stats: &mut ReceptionStats, seqs: impl IntoIterator<Item = u16>) {
        for seq in seqs {
            let ts = u32::from(seq).wrapping_mul(160);
            stats.on_rtp(seq, ts, u64::from(seq) * 20);
        }
    }

    #[test]
    fn no_loss_after_probation() {
        let mut stats = ReceptionStats::new();
        assert!(!stats.on_rtp(1000, 0, 0), "first packet is on probation");
        assert!(stats.on_rtp(1001, 160, 20));
        feed(&mut stats, 1002..1100);
        assert_eq!(stats.packets_received(), 99);
        assert_eq!(stats.packets_expected(), 99);
        assert_eq!(stats.packets_lost(), 0);
        assert_eq!(stats.extended_highest_seq(), 1099);
        assert_eq!(stats.jitter(), 0);
        let block = stats.report_block(0xabcd, 2000).unwrap();
        assert_eq!(
            (block.ssrc, block.fraction_lost, block.cumulative_lost),
            (0xabcd, 0, 0)
        );
        assert_eq!((block.last_sr, block.delay_since_last_sr), (0, 0));
    }

    #[test]
    fn ten_percent_loss_then_a_clean_interval() {
        let mut stats = ReceptionStats::new();
        feed(&mut stats, (0..200).filter(|seq| seq % 10 != 5));
        // Counting starts at 1; 20 of 1..=199 never came.
        assert_eq!(stats.packets_expected(), 199);
        assert_eq!(stats.packets_received(), 179);
        assert_eq!(stats.packets_lost(), 20);
        assert!(
            (stats.loss_percent() - 10.05).abs() < 0.01,
            "{}",
            stats.loss_percent()
        );
        let block = stats.report_block(1, 4000).unwrap();
        assert_eq!(u32::from(block.fraction_lost), 20 * 256 / 199);
        assert_eq!(block.cumulative_lost, 20);
        feed(&mut stats, 200..300);
        let block = stats.report_block(1, 6000).unwrap();
        assert_eq!(block.fraction_lost, 0, "nothing lost in this interval");
        assert_eq!(block.cumulative_lost, 20);
        assert_eq!(block.extended_highest_seq, 299);
    }

    #[test]
    fn reordering_is_not_loss() {
        let mut stats = ReceptionStats::new();
        feed(&mut stats, [1, 2, 3, 5, 4, 6, 8, 7]);
        assert_eq!(stats.packets_lost(), 0);
        assert_eq!(stats.extended_highest_seq(), 8);
        assert_eq!(stats.packets_received(), 7);
    }

    #[test]
    fn duplicates_make_loss_negative_in_reports_only() {
        let mut meter = LineQualityMeter::new();
        for seq in [1u16, 2, 3, 3, 3, 4] {
            meter.on_rtp(seq, u32::from(seq) * 160, u64::from(seq) * 20);
        }
        assert_eq!(meter.reception().packets_lost(), -2);
        let block = meter.reception_mut().report_block(1, 100).unwrap();
        assert_eq!((block.cumulative_lost, block.fraction_lost), (-2, 0));
        let summary = meter.summary();
        assert_eq!((summary.packets_lost, summary.loss_percent), (0, 0.0));
    }

    #[test]
    fn sequence_wrap_extends_the_count() {
        let mut stats = ReceptionStats::new();
        feed(&mut stats, (0..20u16).map(|i| 65_530u16.wrapping_add(i)));
        assert_eq!(stats.extended_highest_seq(), (1 << 16) + 13);
        assert_eq!(stats.packets_expected(), 19);
        assert_eq!(stats.packets_lost(), 0);
    }

    #[test]
    fn restart_after_a_big_jump_and_a_stray_packet() {
        let mut stats = ReceptionStats::new();
        feed(&mut stats, 1..=10);
        // One stray packet far ahead is ignored.
        assert!(!stats.on_rtp(40_000, 0, 215));
        assert!(stats.on_rtp(11, 11 * 160, 220));
        assert_eq!((stats.packets_received(), stats.packets_lost()), (10, 0));
        // Two in sequence far ahead: the source restarted.
        assert!(!stats.on_rtp(30_000, 99_000, 400));
        assert!(stats.on_rtp(30_001, 99_160, 420));
        assert!(stats.on_rtp(30_002, 99_320, 440));
        assert_eq!(stats.packets_received(), 2);
        assert_eq!(stats.packets_expected(), 2);
        assert_eq!(stats.extended_highest_seq(), 30_002);
        assert_eq!(stats.jitter(), 0, "no transit jump across the restart");
    }

    #[test]
    fn jitter_matches_a_hand_computed_example() {
        let mut stats = ReceptionStats::new();
        // (seq, timestamp, arrival ms); the first is on probation. Transit
        // in timestamp units from the second on: 0, 0, 40, 0, so D is 0,
        // 40, 40 and 16·J goes 0 → 40 → 40 + 40 − 3 = 77.
        for (seq, ts, at) in [
            (0, 0, 0),
            (1, 160, 20),
            (2, 320, 40),
            (3, 480, 65),
            (4, 640, 80),
        ] {
            stats.on_rtp(seq, ts, at);
        }
        assert_eq!(stats.jitter(), 77 >> 4);
        assert_eq!(stats.jitter_ms(), 77.0 / 16.0 / 8.0);
        assert_eq!(stats.jitter_ms_max(), 77.0 / 16.0 / 8.0);
        assert_eq!(stats.jitter_ms_avg(), 39.0 / 16.0 / 8.0);
        assert_eq!(stats.report_block(7, 100).unwrap().jitter, 4);
    }

    #[test]
    fn timestamp_and_clock_wrap_do_not_count_as_jitter() {
        let mut stats = ReceptionStats::new();
        let start = u32::MAX - 400;
        let epoch_ms = (1u64 << 32) / 8 - 50;
        for i in 0..10u16 {
            let ts = start.wrapping_add(160 * u32::from(i));
            stats.on_rtp(i, ts, epoch_ms + 20 * u64::from(i));
        }
        assert_eq!(stats.jitter(), 0);
    }

    #[test]
    fn report_block_carries_last_sr_and_its_delay() {
        let mut stats = ReceptionStats::new();
        feed(&mut stats, 0..5);
        stats.on_sender_report(0x0123_4567_89ab_cdef, 1000);
        let block = stats.report_block(9, 1500).unwrap();
        assert_eq!(block.last_sr, 0x4567_89ab);
        assert_eq!(block.delay_since_last_sr, 32_768, "half a second");
        assert!(ReceptionStats::new().report_block(9, 0).is_none());
    }

    #[test]
    fn meter_summarises_own_measurements_and_the_phones_reports() {
        const DENWA: u32 = 0xd0d0;
        let mut meter = LineQualityMeter::new();
        assert_eq!(meter.summary().remote_reported_loss_percent, None);
        for seq in (0..101u16).filter(|seq| seq % 10 != 5) {
            meter.on_rtp(seq, u32::from(seq) * 160, u64::from(seq) * 20);
        }
        let about = |ssrc, fraction_lost, jitter| ReportBlock {
            ssrc,
            fraction_lost,
            jitter,
            ..ReportBlock::default()
        };
        let mut rr = Vec::new();
        write_receiver_report(
            &mut rr,
            0xaaaa,
            &[about(DENWA, 64, 80), about(0x1, 255, 9999)],
        );
        meter.on_rtcp(&rr, DENWA, 2000).unwrap();
        let mut sr = Vec::new();
        let sender = SenderInfo {
            ntp_timestamp: 0x1111_2222_3333_4444,
            ..SenderInfo::default()
        };
        write_sender_report(&mut sr, 0xaaaa, &sender, &[about(DENWA, 0, 160)]);
        meter.on_rtcp(&sr, DENWA, 3000).unwrap();
        assert!(meter.on_rtcp(&sr[..7], DENWA, 3000).is_err());
        let summary = meter.summary();
        assert_eq!(summary.packets_received, 90);
        assert_eq!(summary.packets_lost, 10);
        assert!((summary.loss_percent - 10.0).abs() < 1e-4);
        assert_eq!(summary.jitter_ms_avg, 0.0);
        assert_eq!(summary.remote_reported_loss_percent, Some(12.5));
        assert_eq!(summary.remote_reported_jitter_ms, Some(15.0));
        let block = meter.reception_mut().report_block(0xaaaa, 3250).unwrap();
        assert_eq!(block.last_sr, 0x2222_3333, "the SR's NTP time");
        assert_eq!(block.delay_since_last_sr, 65_536 / 4);
    }
}
