//! The audio mixer for conferences and supervisor taps (monitor, whisper,
//! barge): one sans-IO core that turns the frames its participants spoke
//! during a tick into the frame each of them hears.
//!
//! Owns: the participant list with each one's [`Role`], the rule of who hears
//! whom, the 32-bit mix and a per-listener limiter so that many loud
//! speakers never clip or wrap around.
//!
//! Must not: decode or encode G.711, pace itself, read the clock or touch a
//! socket. The caller decodes what each leg sent, calls [`Mixer::tick`] once
//! per 20 ms frame and encodes what comes out. Audio is 8000 Hz, 16-bit
//! linear, mono.
//!
//! # Who hears whom
//!
//! A speaker X is heard by a listener Y (X ≠ Y) when X's role lets Y hear it
//! and Y's role listens to X:
//!
//! | role                          | heard by      | hears            |
//! |-------------------------------|---------------|------------------|
//! | [`Role::Member`]              | everyone      | everyone         |
//! | [`Role::Muted`]               | nobody        | everyone         |
//! | [`Role::Monitor`] `a, b`      | nobody        | `a` and `b`      |
//! | [`Role::Whisper`] `to, other` | `to` only     | `to` and `other` |
//! | [`Role::Barge`] `a, b`        | `a` and `b`   | `a` and `b`      |
//!
//! A two-party call under supervision is a mix of two members (agent and
//! caller) plus the supervisor in one of the last three roles; a conference
//! is a mix of members. Frames given to [`Mixer::announce`] (join and leave
//! tones) are heard by everyone.
//!
//! # Cost
//!
//! The frames of all members are summed once; a member's output is that sum
//! minus its own frame, plus the few whisperers and bargers it hears. A
//! tick is O(N·(1 + P)) for N participants of which P whisper or barge, so
//! a conference of 50 costs about 50 frame additions.
//!
//! # Limiter
//!
//! Each output has its own gain, unity until the mix of that output would
//! exceed [`LIMITER_CEILING`]. The mixer sees a whole frame before emitting
//! it, so the gain drops at once to what that frame needs (no sample ever
//! passes the ceiling) and then climbs back towards unity over a few hundred
//! milliseconds. At unity the output is the mix itself, bit for bit: one
//! speaker at a normal level passes unchanged.

use thiserror::Error;

/// Samples per second of the mixed audio.
pub const SAMPLE_RATE: u32 = 8000;
/// Samples in one 20 ms frame.
pub const FRAME_SAMPLES: usize = 160;
/// One 20 ms frame of 16-bit linear audio.
pub type Frame = [i16; FRAME_SAMPLES];
/// A frame of silence.
pub const SILENCE: Frame = [0; FRAME_SAMPLES];
/// Largest number of participants in one mix.
pub const MAX_PARTICIPANTS: usize = 64;
/// Largest sample magnitude the limiter lets out once it engages (about
/// −0.2 dBFS); mixes that stay within it pass at unity gain.
pub const LIMITER_CEILING: i32 = 32_000;

/// Unity gain in the limiter's Q16 fixed point.
const UNITY: u32 = 1 << 16;
/// Each frame the gain closes 1/8 of its distance to unity (a release time
/// constant of about 160 ms).
const RELEASE_SHIFT: u32 = 3;
/// Once this close to unity the gain snaps to it (a step of 0.4 %).
const SNAP_TO_UNITY: u32 = UNITY >> 8;

/// Names a participant of one mix; the caller chooses the numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(pub u64);

/// What a participant hears and who hears it (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A conference member: hears every other member, heard by everyone.
    Member,
    /// A member nobody hears; it still hears the others.
    Muted,
    /// Listens to the pair `a`, `b`; heard by nobody.
    Monitor { a: ParticipantId, b: ParticipantId },
    /// Heard by `to` only (the agent being coached); hears `to` and `other`.
    Whisper {
        to: ParticipantId,
        other: ParticipantId,
    },
    /// Joins the pair `a`, `b`: heard by both, hears both.
    Barge { a: ParticipantId, b: ParticipantId },
}

impl Role {
    /// Whether this participant's voice reaches `listener` (self excluded
    /// by the caller).
    fn is_heard_by(self, listener: ParticipantId) -> bool {
        match self {
            Role::Member => true,
            Role::Muted | Role::Monitor { .. } => false,
            Role::Whisper { to, .. } => to == listener,
            Role::Barge { a, b } => a == listener || b == listener,
        }
    }

    /// The pair this participant listens to, or `None` for everyone.
    fn pair(self) -> Option<[ParticipantId; 2]> {
        match self {
            Role::Member | Role::Muted => None,
            Role::Monitor { a, b } | Role::Barge { a, b } => Some([a, b]),
            Role::Whisper { to, other } => Some([to, other]),
        }
    }

    /// Heard by some but not by everyone: added listener by listener.
    fn is_private_speaker(self) -> bool {
        matches!(self, Role::Whisper { .. } | Role::Barge { .. })
    }
}

/// Why a change to the participant list was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MixerError {
    #[error("the mix already has {max} participants")]
    Full { max: usize },
    #[error("participant {0:?} is already in the mix")]
    AlreadyJoined(ParticipantId),
    #[error("participant {0:?} is not in the mix")]
    NotJoined(ParticipantId),
}

/// One output's gain, attacking within the frame that needs it and
/// releasing slowly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limiter {
    /// Q16 gain applied at the end of the last frame.
    gain: u32,
}

impl Limiter {
    const fn new() -> Limiter {
        Limiter { gain: UNITY }
    }

    /// The gain the next frame may reach if it needs no attack.
    fn released(self) -> u32 {
        let gap = UNITY - self.gain;
        if gap <= SNAP_TO_UNITY {
            UNITY
        } else {
            self.gain + (gap >> RELEASE_SHIFT).max(1)
        }
    }

    /// Writes `mix` scaled to fit the ceiling into `out`.
    fn process(&mut self, mix: &[i32; FRAME_SAMPLES], out: &mut Frame) {
        let peak = mix.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        let ceiling = LIMITER_CEILING.unsigned_abs();
        let required = if peak > ceiling {
            // < UNITY because peak > ceiling; fits u32.
            u32::try_from((u64::from(ceiling) << 16) / u64::from(peak)).unwrap_or(0)
        } else {
            UNITY
        };
        let previous = self.gain;
        let target = self.released().min(required);
        self.gain = target;
        if previous == UNITY && target == UNITY {
            for (o, &s) in out.iter_mut().zip(mix) {
                *o = saturate(s);
            }
        } else if target < previous {
            // Attack: the whole frame at the gain its peak needs.
            for (o, &s) in out.iter_mut().zip(mix) {
                *o = scale(s, target);
            }
        } else {
            // Release: ramp up across the frame; every step is ≤ target.
            let rise = i64::from(target - previous);
            let steps = FRAME_SAMPLES as i64;
            for (i, (o, &s)) in (1..).zip(out.iter_mut().zip(mix)) {
                let gain = i64::from(previous) + rise * i / steps;
                *o = scale(s, u32::try_from(gain).unwrap_or(target));
            }
        }
    }
}

fn saturate(sample: i32) -> i16 {
    i16::try_from(sample).unwrap_or(if sample < 0 { i16::MIN } else { i16::MAX })
}

fn scale(sample: i32, gain: u32) -> i16 {
    let scaled = (i64::from(sample) * i64::from(gain)) >> 16;
    saturate(i32::try_from(scaled).unwrap_or(if scaled < 0 { i32::MIN } else { i32::MAX }))
}

fn add_into(acc: &mut [i32; FRAME_SAMPLES], frame: &Frame) {
    for (a, &s) in acc.iter_mut().zip(frame) {
        *a += i32::from(s);
    }
}

fn subtract_from(acc: &mut [i32; FRAME_SAMPLES], frame: &Frame) {
    for (a, &s) in acc.iter_mut().zip(frame) {
        *a -= i32::from(s);
    }
}

#[derive(Debug, Clone)]
struct Slot {
    id: ParticipantId,
    role: Role,
    limiter: Limiter,
    /// What the participant spoke this tick; meaningful when `speaking`.
    input: Frame,
    speaking: bool,
}

/// The mix of one conference or supervised call. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct Mixer {
    /// Sorted by id.
    slots: Vec<Slot>,
    outputs: Vec<(ParticipantId, Frame)>,
    /// Announcements queued for the next tick, summed.
    announcement: Option<Box<[i32; FRAME_SAMPLES]>>,
    /// Indices of whisperers and bargers who spoke this tick.
    private_speakers: Vec<usize>,
}

impl Mixer {
    pub fn new() -> Mixer {
        Mixer::default()
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The participants and their roles, in id order.
    pub fn participants(&self) -> impl Iterator<Item = (ParticipantId, Role)> + '_ {
        self.slots.iter().map(|slot| (slot.id, slot.role))
    }

    pub fn role(&self, id: ParticipantId) -> Option<Role> {
        let index = self.find(id).ok()?;
        self.slots.get(index).map(|slot| slot.role)
    }

    /// Adds `id` with `role`; its output starts at unity gain.
    pub fn join(&mut self, id: ParticipantId, role: Role) -> Result<(), MixerError> {
        let index = match self.find(id) {
            Ok(_) => return Err(MixerError::AlreadyJoined(id)),
            Err(index) => index,
        };
        if self.slots.len() >= MAX_PARTICIPANTS {
            return Err(MixerError::Full {
                max: MAX_PARTICIPANTS,
            });
        }
        let slot = Slot {
            id,
            role,
            limiter: Limiter::new(),
            input: SILENCE,
            speaking: false,
        };
        self.slots.insert(index, slot);
        Ok(())
    }

    /// Changes `id`'s role (mute, unmute, monitor → whisper → barge).
    pub fn set_role(&mut self, id: ParticipantId, role: Role) -> Result<(), MixerError> {
        let index = self.find(id).map_err(|_| MixerError::NotJoined(id))?;
        if let Some(slot) = self.slots.get_mut(index) {
            slot.role = role;
        }
        Ok(())
    }

    /// Removes `id`; whether it was there.
    pub fn leave(&mut self, id: ParticipantId) -> bool {
        match self.find(id) {
            Ok(index) => {
                self.slots.remove(index);
                true
            }
            Err(_) => false,
        }
    }

    /// Queues `frame` for the next tick, heard by every participant. Several
    /// announcements in one tick are summed.
    pub fn announce(&mut self, frame: &Frame) {
        let acc = self
            .announcement
            .get_or_insert_with(|| Box::new([0; FRAME_SAMPLES]));
        add_into(acc, frame);
    }

    /// Mixes one frame period. `inputs` holds at most one frame per
    /// participant (a later frame for the same id and frames of unknown ids
    /// are ignored); a participant without a frame is silent. Returns every
    /// participant's output, in id order.
    pub fn tick(&mut self, inputs: &[(ParticipantId, &Frame)]) -> &[(ParticipantId, Frame)] {
        self.take_inputs(inputs);
        let announcement = self
            .announcement
            .take()
            .map_or([0; FRAME_SAMPLES], |frame| *frame);
        let mut members = announcement;
        self.private_speakers.clear();
        for (index, slot) in self.slots.iter().enumerate().filter(|(_, s)| s.speaking) {
            if slot.role == Role::Member {
                add_into(&mut members, &slot.input);
            } else if slot.role.is_private_speaker() {
                self.private_speakers.push(index);
            }
        }
        self.outputs.clear();
        for index in 0..self.slots.len() {
            let mix = self.mix_for(index, &members, &announcement);
            if let Some(slot) = self.slots.get_mut(index) {
                let mut out = SILENCE;
                slot.limiter.process(&mix, &mut out);
                self.outputs.push((slot.id, out));
            }
        }
        &self.outputs
    }

    fn take_inputs(&mut self, inputs: &[(ParticipantId, &Frame)]) {
        for slot in &mut self.slots {
            slot.speaking = false;
        }
        for &(id, frame) in inputs {
            let Ok(index) = self.find(id) else { continue };
            if let Some(slot) = self.slots.get_mut(index).filter(|s| !s.speaking) {
                slot.input = *frame;
                slot.speaking = true;
            }
        }
    }

    /// The 32-bit mix the participant at `index` hears.
    fn mix_for(
        &self,
        index: usize,
        members: &[i32; FRAME_SAMPLES],
        announcement: &[i32; FRAME_SAMPLES],
    ) -> [i32; FRAME_SAMPLES] {
        let Some(listener) = self.slots.get(index) else {
            return [0; FRAME_SAMPLES];
        };
        match listener.role.pair() {
            None => {
                let mut mix = *members;
                if listener.speaking && listener.role == Role::Member {
                    subtract_from(&mut mix, &listener.input);
                }
                for &speaker in &self.private_speakers {
                    if let Some(slot) = self.slots.get(speaker) {
                        if speaker != index && slot.role.is_heard_by(listener.id) {
                            add_into(&mut mix, &slot.input);
                        }
                    }
                }
                mix
            }
            Some([a, b]) => {
                let mut mix = *announcement;
                let pair = if a == b { &[a][..] } else { &[a, b][..] };
                for &id in pair {
                    let Ok(speaker) = self.find(id) else { continue };
                    if let Some(slot) = self.slots.get(speaker) {
                        if speaker != index && slot.speaking && slot.role.is_heard_by(listener.id) {
                            add_into(&mut mix, &slot.input);
                        }
                    }
                }
                mix
            }
        }
    }

    fn find(&self, id: ParticipantId) -> Result<usize, usize> {
        self.slots.binary_search_by_key(&id, |slot| slot.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const A: ParticipantId = ParticipantId(1);
    const B: ParticipantId = ParticipantId(2);
    const C: ParticipantId = ParticipantId(3);
    const S: ParticipantId = ParticipantId(9);

    fn constant(value: i16) -> Frame {
        [value; FRAME_SAMPLES]
    }

    fn tone(hz: f64, amplitude: f64, frame_index: usize) -> Frame {
        let mut frame = SILENCE;
        for (i, sample) in frame.iter_mut().enumerate() {
            let n = (frame_index * FRAME_SAMPLES + i) as f64;
            let phase = 2.0 * std::f64::consts::PI * hz * n / f64::from(SAMPLE_RATE);
            *sample = (amplitude * phase.sin()).round() as i16;
        }
        frame
    }

    fn mixer(roles: &[(ParticipantId, Role)]) -> Mixer {
        let mut mixer = Mixer::new();
        for &(id, role) in roles {
            mixer.join(id, role).unwrap();
        }
        mixer
    }

    /// What each participant hears when everyone in `speakers` sends its
    /// constant: the sum of the constants, one per sample (checked flat).
    fn heard(mixer: &mut Mixer, speakers: &[(ParticipantId, i16)]) -> Vec<(ParticipantId, i16)> {
        let frames: Vec<(ParticipantId, Frame)> =
            speakers.iter().map(|&(id, v)| (id, constant(v))).collect();
        let inputs: Vec<(ParticipantId, &Frame)> = frames.iter().map(|(id, f)| (*id, f)).collect();
        mixer
            .tick(&inputs)
            .iter()
            .map(|(id, frame)| {
                assert!(frame.iter().all(|&s| s == frame[0]), "{id:?} flat");
                (*id, frame[0])
            })
            .collect()
    }

    /// Distinct powers of two: every sum names exactly who was heard.
    const VOICES: [(ParticipantId, i16); 4] = [(A, 1), (B, 2), (C, 4), (S, 8)];

    #[test]
    fn member_does_not_hear_itself() {
        let mut m = mixer(&[(A, Role::Member)]);
        assert_eq!(heard(&mut m, &[(A, 1000)]), [(A, 0)]);
        let mut m = mixer(&[(A, Role::Member), (B, Role::Member)]);
        assert_eq!(heard(&mut m, &[(A, 1000)]), [(A, 0), (B, 1000)]);
    }

    #[test]
    fn three_members_each_hear_the_other_two() {
        let mut m = mixer(&[(A, Role::Member), (B, Role::Member), (C, Role::Member)]);
        assert_eq!(heard(&mut m, &VOICES[..3]), [(A, 6), (B, 5), (C, 3)]);
        // Distinct tones: A's output is exactly B's tone plus C's tone.
        for k in 0..5 {
            let (a, b, c) = (
                tone(300.0, 3000.0, k),
                tone(700.0, 3000.0, k),
                tone(1100.0, 3000.0, k),
            );
            let out = m.tick(&[(A, &a), (B, &b), (C, &c)]).to_vec();
            for i in 0..FRAME_SAMPLES {
                assert_eq!(out[0].1[i], b[i] + c[i]);
                assert_eq!(out[1].1[i], a[i] + c[i]);
                assert_eq!(out[2].1[i], a[i] + b[i]);
            }
        }
    }

    #[test]
    fn muted_member_is_heard_by_nobody_and_still_hears() {
        let mut m = mixer(&[(A, Role::Member), (B, Role::Muted), (C, Role::Member)]);
        assert_eq!(heard(&mut m, &VOICES[..3]), [(A, 4), (B, 5), (C, 1)]);
        m.set_role(B, Role::Member).unwrap();
        assert_eq!(
            heard(&mut m, &VOICES[..3]),
            [(A, 6), (B, 5), (C, 3)],
            "unmuted"
        );
    }

    #[test]
    fn monitor_hears_the_pair_and_nobody_hears_it() {
        let roles = [
            (A, Role::Member),
            (B, Role::Member),
            (S, Role::Monitor { a: A, b: B }),
        ];
        let mut m = mixer(&roles);
        let got = heard(&mut m, &[(A, 1), (B, 2), (S, 8)]);
        assert_eq!(got, [(A, 2), (B, 1), (S, 3)]);
    }

    #[test]
    fn whisper_reaches_the_agent_only() {
        // A is the agent, B the caller, S coaches A.
        let roles = [
            (A, Role::Member),
            (B, Role::Member),
            (S, Role::Whisper { to: A, other: B }),
        ];
        let mut m = mixer(&roles);
        let got = heard(&mut m, &[(A, 1), (B, 2), (S, 8)]);
        assert_eq!(got, [(A, 2 + 8), (B, 1), (S, 3)]);
        // The caller never receives a sample of the whisperer, alone or not.
        let got = heard(&mut m, &[(S, 8)]);
        assert_eq!(got, [(A, 8), (B, 0), (S, 0)]);
    }

    #[test]
    fn barge_is_heard_by_both_and_hears_both() {
        let roles = [
            (A, Role::Member),
            (B, Role::Member),
            (S, Role::Barge { a: A, b: B }),
        ];
        let mut m = mixer(&roles);
        let got = heard(&mut m, &[(A, 1), (B, 2), (S, 8)]);
        assert_eq!(got, [(A, 2 + 8), (B, 1 + 8), (S, 3)]);
    }

    #[test]
    fn supervisor_moves_from_monitor_to_whisper_to_barge() {
        let mut m = mixer(&[(A, Role::Member), (B, Role::Member), (S, Role::Muted)]);
        let voices = [(A, 1), (B, 2), (S, 8)];
        let steps = [
            (Role::Monitor { a: A, b: B }, [(A, 2), (B, 1), (S, 3)]),
            (Role::Whisper { to: A, other: B }, [(A, 10), (B, 1), (S, 3)]),
            (Role::Barge { a: A, b: B }, [(A, 10), (B, 9), (S, 3)]),
            (Role::Monitor { a: A, b: B }, [(A, 2), (B, 1), (S, 3)]),
        ];
        for (role, expected) in steps {
            m.set_role(S, role).unwrap();
            assert_eq!(heard(&mut m, &voices), expected, "{role:?}");
        }
    }

    #[test]
    fn monitor_of_a_pair_inside_a_conference_hears_only_the_pair() {
        let roles = [
            (A, Role::Member),
            (B, Role::Member),
            (C, Role::Member),
            (S, Role::Monitor { a: A, b: C }),
        ];
        let mut m = mixer(&roles);
        let got = heard(&mut m, &VOICES);
        assert_eq!(got, [(A, 6), (B, 5), (C, 3), (S, 5)]);
    }

    #[test]
    fn announcement_is_heard_by_everyone_once() {
        let roles = [
            (A, Role::Member),
            (B, Role::Muted),
            (S, Role::Monitor { a: A, b: B }),
        ];
        let mut m = mixer(&roles);
        m.announce(&constant(100));
        m.announce(&constant(20));
        assert_eq!(heard(&mut m, &[(A, 1)]), [(A, 120), (B, 121), (S, 121)]);
        assert_eq!(
            heard(&mut m, &[(A, 1)]),
            [(A, 0), (B, 1), (S, 1)],
            "consumed"
        );
    }

    #[test]
    fn unknown_and_repeated_inputs_are_ignored() {
        let mut m = mixer(&[(A, Role::Member), (B, Role::Member)]);
        let got = heard(&mut m, &[(A, 1), (A, 50), (ParticipantId(77), 4)]);
        assert_eq!(got, [(A, 0), (B, 1)]);
    }

    #[test]
    fn participant_list_changes() {
        let mut m = mixer(&[(B, Role::Member), (A, Role::Member)]);
        assert_eq!(m.join(A, Role::Muted), Err(MixerError::AlreadyJoined(A)));
        assert_eq!(m.set_role(C, Role::Muted), Err(MixerError::NotJoined(C)));
        assert_eq!(m.role(A), Some(Role::Member));
        assert!(m.leave(A));
        assert!(!m.leave(A));
        assert_eq!(m.participants().collect::<Vec<_>>(), [(B, Role::Member)]);
        for i in 1..MAX_PARTICIPANTS as u64 {
            m.join(ParticipantId(100 + i), Role::Member).unwrap();
        }
        assert_eq!(
            m.join(C, Role::Member),
            Err(MixerError::Full {
                max: MAX_PARTICIPANTS
            })
        );
    }

    /// The rule of the module table, evaluated pair by pair.
    fn reference(
        roles: &[(ParticipantId, Role)],
        inputs: &[(ParticipantId, Frame)],
    ) -> Vec<[i32; FRAME_SAMPLES]> {
        roles
            .iter()
            .map(|&(listener, listener_role)| {
                let mut mix = [0; FRAME_SAMPLES];
                for &(speaker, speaker_role) in roles {
                    let listens = listener_role.pair().is_none_or(|p| p.contains(&speaker));
                    let input = inputs.iter().find(|(id, _)| *id == speaker);
                    if let Some((_, frame)) = input {
                        if speaker != listener && listens && speaker_role.is_heard_by(listener) {
                            add_into(&mut mix, frame);
                        }
                    }
                }
                mix
            })
            .collect()
    }

    #[test]
    fn random_role_sets_match_the_rule_pair_by_pair() {
        let mut rng = StdRng::seed_from_u64(0x31c);
        for _ in 0..300 {
            let n = rng.gen_range(1..12u64);
            let pick = |rng: &mut StdRng| ParticipantId(rng.gen_range(0..n + 1));
            let mut roles = Vec::new();
            for id in 0..n {
                let (x, y) = (pick(&mut rng), pick(&mut rng));
                let role = match rng.gen_range(0..6) {
                    0 | 1 => Role::Member,
                    2 => Role::Muted,
                    3 => Role::Monitor { a: x, b: y },
                    4 => Role::Whisper { to: x, other: y },
                    _ => Role::Barge { a: x, b: y },
                };
                roles.push((ParticipantId(id), role));
            }
            let mut inputs: Vec<(ParticipantId, Frame)> = Vec::new();
            for &(id, _) in &roles {
                if rng.gen_bool(0.8) {
                    let mut frame = SILENCE;
                    frame
                        .iter_mut()
                        .for_each(|s| *s = rng.gen_range(-500..=500));
                    inputs.push((id, frame));
                }
            }
            let mut m = mixer(&roles);
            let borrowed: Vec<_> = inputs.iter().map(|(id, f)| (*id, f)).collect();
            let out = m.tick(&borrowed);
            let expected = reference(&roles, &inputs);
            for ((id, frame), want) in out.iter().zip(&expected) {
                let want: Vec<i16> = want.iter().map(|&s| s as i16).collect();
                assert_eq!(&frame[..], &want[..], "{id:?} in {roles:?}");
            }
        }
    }

    #[test]
    fn single_speaker_passes_bit_exact() {
        let roles = [
            (A, Role::Member),
            (B, Role::Member),
            (S, Role::Monitor { a: A, b: B }),
        ];
        let mut m = mixer(&roles);
        let mut rng = StdRng::seed_from_u64(7);
        for k in 0..100 {
            let mut speech = tone(440.0, 12_000.0, k);
            speech
                .iter_mut()
                .for_each(|s| *s += rng.gen_range(-2000..=2000));
            let out = m.tick(&[(A, &speech)]);
            assert_eq!(out[1].1, speech, "B hears A unchanged");
            assert_eq!(out[2].1, speech, "the monitor hears A unchanged");
            assert_eq!(out[0].1, SILENCE);
        }
    }

    #[test]
    fn ten_full_scale_speakers_never_clip_or_wrap() {
        let ids: Vec<ParticipantId> = (0..11).map(ParticipantId).collect();
        let roles: Vec<_> = ids.iter().map(|&id| (id, Role::Member)).collect();
        let mut m = mixer(&roles);
        for k in 0..50 {
            // Ten speakers; the eleventh only listens. Full-scale squares
            // in phase (all at the top, then all at the bottom), then
            // full-scale tones of different pitch.
            let frames: Vec<Frame> = (0..10)
                .map(|i| match k % 3 {
                    0 => constant(i16::MAX),
                    1 => constant(i16::MIN),
                    _ => tone(200.0 + 97.0 * i as f64, 32_767.0, k),
                })
                .collect();
            let inputs: Vec<_> = ids.iter().zip(&frames).map(|(&id, f)| (id, f)).collect();
            let out = m.tick(&inputs).to_vec();
            for (listener, (_, frame)) in out.iter().enumerate() {
                let mut sum = [0i32; FRAME_SAMPLES];
                for f in frames.iter().enumerate().filter(|(i, _)| *i != listener) {
                    add_into(&mut sum, f.1);
                }
                for (&o, &s) in frame.iter().zip(&sum) {
                    assert!(i32::from(o).abs() <= LIMITER_CEILING, "frame {k}: {o}");
                    assert!(o != i16::MIN && o != i16::MAX);
                    let same_sign = i32::from(o).signum() * s.signum() >= 0;
                    assert!(same_sign, "frame {k}: {o} has the sign of {s}");
                }
            }
        }
    }

    #[test]
    fn limiter_recovers_to_unity_after_a_burst() {
        let ids: Vec<ParticipantId> = (0..6).map(ParticipantId).collect();
        let roles: Vec<_> = ids.iter().map(|&id| (id, Role::Member)).collect();
        let mut m = mixer(&roles);
        let loud = constant(30_000);
        for _ in 0..25 {
            let inputs: Vec<_> = ids[..5].iter().map(|&id| (id, &loud)).collect();
            let out = m.tick(&inputs);
            let first = out[5].1[0];
            assert!(out[5].1.iter().all(|&s| s == first));
            assert!(
                (31_000..=LIMITER_CEILING as i16).contains(&first),
                "{first}"
            );
        }
        let mut exact_from = None;
        for k in 0..100 {
            let voice = tone(440.0, 8_000.0, k);
            let out = m.tick(&[(ids[0], &voice)]);
            let listener = &out[5].1;
            for (&o, &v) in listener.iter().zip(&voice) {
                assert!(
                    o.unsigned_abs() <= v.unsigned_abs(),
                    "release never overshoots"
                );
            }
            match exact_from {
                None if *listener == voice => exact_from = Some(k),
                None => {}
                Some(_) => assert_eq!(*listener, voice, "frame {k} stays at unity"),
            }
        }
        let frames = exact_from.expect("back to unity");
        assert!((10..60).contains(&frames), "released over {frames} frames");
    }

    #[test]
    fn gain_ramps_smoothly_while_releasing() {
        let mut limiter = Limiter { gain: UNITY / 2 };
        let mix = [20_000; FRAME_SAMPLES];
        let mut out = SILENCE;
        limiter.process(&mix, &mut out);
        assert!(out.windows(2).all(|w| w[0] <= w[1]), "monotonic ramp");
        assert!(out[0] > 10_000 && out[FRAME_SAMPLES - 1] < 20_000);
        assert_eq!(limiter.gain, UNITY / 2 + UNITY / 16);
    }
}
