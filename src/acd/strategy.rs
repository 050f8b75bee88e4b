//! Ring strategies: which of the candidate agents a waiting call is offered
//! to. The engine has already narrowed the candidates to the agents who may
//! take the call now, at the group's lowest level in play (every strategy
//! but weighted, where the level is a share instead of a tier).
//!
//! What this module must not do: look at agent statuses, levels in play or
//! reservations (the engine's job), or use any randomness but the engine's
//! seeded generator.

use rand::rngs::StdRng;
use rand::Rng;

use super::types::{Strategy, UnixMs};

/// Weighted shares are `WEIGHT_SCALE / level`: level 1 gets twice the calls
/// of level 2 and three times those of level 3. The scale divides evenly by
/// every level up to 16.
pub const WEIGHT_SCALE: i64 = 720_720;

/// One agent the call may be offered to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The engine's index of the agent (returned by [`pick`]).
    pub agent: usize,
    /// Position in the group's member list (round robin order).
    pub member: usize,
    pub level: u8,
    /// When the agent's last call ended (`None`: no call yet).
    pub last_call_end: Option<UnixMs>,
    /// The agent's talk time so far.
    pub talk_ms: u64,
}

/// What a strategy remembers between calls, per group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StrategyState {
    /// Member index of the last agent round robin chose.
    rr_last: Option<usize>,
    /// Smooth weighted round robin: current weight per member index.
    wrr_current: Vec<i64>,
}

impl StrategyState {
    pub fn new(members: usize) -> StrategyState {
        StrategyState {
            rr_last: None,
            wrr_current: vec![0; members],
        }
    }
}

/// Choose among `candidates` (in member order, non-empty for a choice):
/// every one for ring all, one for the others. Returns engine agent indices.
pub fn pick(
    strategy: Strategy,
    candidates: &[Candidate],
    state: &mut StrategyState,
    rng: &mut StdRng,
) -> Vec<usize> {
    if candidates.is_empty() {
        return Vec::new();
    }
    let chosen = match strategy {
        Strategy::RingAll => return candidates.iter().map(|c| c.agent).collect(),
        Strategy::LongestIdle => candidates.iter().min_by_key(|c| c.last_call_end),
        Strategy::LeastTalkTime => candidates
            .iter()
            .min_by_key(|c| (c.talk_ms, c.last_call_end)),
        Strategy::Random => candidates.get(rng.gen_range(0..candidates.len())),
        Strategy::RoundRobin => round_robin(candidates, state),
        Strategy::Weighted => weighted(candidates, state),
    };
    chosen.map(|c| vec![c.agent]).unwrap_or_default()
}

fn round_robin<'a>(
    candidates: &'a [Candidate],
    state: &mut StrategyState,
) -> Option<&'a Candidate> {
    let next = match state.rr_last {
        Some(last) => candidates.iter().find(|c| c.member > last),
        None => None,
    };
    let chosen = next.or_else(|| candidates.first());
    if let Some(c) = chosen {
        state.rr_last = Some(c.member);
    }
    chosen
}

fn share(level: u8) -> i64 {
    WEIGHT_SCALE / i64::from(level.max(1))
}

/// Smooth weighted round robin over the candidates: each gains its share,
/// the richest is chosen and pays the total. Over many calls each agent's
/// part follows its share exactly, without randomness.
fn weighted<'a>(candidates: &'a [Candidate], state: &mut StrategyState) -> Option<&'a Candidate> {
    let needed = candidates.iter().map(|c| c.member + 1).max().unwrap_or(0);
    if state.wrr_current.len() < needed {
        state.wrr_current.resize(needed, 0);
    }
    let mut total = 0i64;
    for c in candidates {
        let w = share(c.level);
        total = total.saturating_add(w);
        if let Some(cur) = state.wrr_current.get_mut(c.member) {
            *cur = cur.saturating_add(w);
        }
    }
    let chosen = candidates
        .iter()
        .rev()
        .max_by_key(|c| state.wrr_current.get(c.member).copied().unwrap_or(0))?;
    if let Some(cur) = state.wrr_current.get_mut(chosen.member) {
        *cur = cur.saturating_sub(total);
    }
    Some(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn cand(agent: usize, level: u8, last_call_end: Option<UnixMs>, talk_ms: u64) -> Candidate {
        Candidate {
            agent,
            member: agent,
            level,
            last_call_end,
            talk_ms,
        }
    }

    fn run(strategy: Strategy, cands: &[Candidate], state: &mut StrategyState) -> Vec<usize> {
        let mut rng = StdRng::seed_from_u64(7);
        pick(strategy, cands, state, &mut rng)
    }

    #[test]
    fn ring_all_takes_everyone_and_empty_takes_no_one() {
        let c = [cand(0, 1, None, 0), cand(3, 1, None, 0)];
        let mut st = StrategyState::new(4);
        assert_eq!(run(Strategy::RingAll, &c, &mut st), [0, 3]);
        assert!(run(Strategy::LongestIdle, &[], &mut st).is_empty());
    }

    #[test]
    fn longest_idle_prefers_never_called_then_oldest_end() {
        let mut st = StrategyState::new(3);
        let c = [
            cand(0, 1, Some(500), 0),
            cand(1, 1, Some(100), 0),
            cand(2, 1, Some(300), 0),
        ];
        assert_eq!(run(Strategy::LongestIdle, &c, &mut st), [1]);
        let c = [cand(0, 1, Some(500), 0), cand(1, 1, None, 0)];
        assert_eq!(run(Strategy::LongestIdle, &c, &mut st), [1]);
    }

    #[test]
    fn least_talk_time_breaks_ties_by_idle_time() {
        let mut st = StrategyState::new(3);
        let c = [
            cand(0, 1, Some(9), 60_000),
            cand(1, 1, Some(5), 20_000),
            cand(2, 1, Some(1), 20_000),
        ];
        assert_eq!(run(Strategy::LeastTalkTime, &c, &mut st), [2]);
    }

    #[test]
    fn round_robin_goes_in_member_order_and_wraps() {
        let mut st = StrategyState::new(4);
        let all = [
            cand(0, 1, None, 0),
            cand(1, 1, None, 0),
            cand(2, 1, None, 0),
        ];
        let picks: Vec<_> = (0..4)
            .flat_map(|_| run(Strategy::RoundRobin, &all, &mut st))
            .collect();
        assert_eq!(picks, [0, 1, 2, 0]);
        // Member 1 busy: the turn passes to 2.
        let some = [cand(0, 1, None, 0), cand(2, 1, None, 0)];
        assert_eq!(run(Strategy::RoundRobin, &some, &mut st), [2]);
    }

    #[test]
    fn random_is_reproducible_with_a_seed_and_covers_everyone() {
        let c = [
            cand(0, 1, None, 0),
            cand(1, 1, None, 0),
            cand(2, 1, None, 0),
        ];
        let mut st = StrategyState::new(3);
        let mut rng = StdRng::seed_from_u64(42);
        let a: Vec<_> = (0..60)
            .flat_map(|_| pick(Strategy::Random, &c, &mut st, &mut rng))
            .collect();
        let mut rng = StdRng::seed_from_u64(42);
        let b: Vec<_> = (0..60)
            .flat_map(|_| pick(Strategy::Random, &c, &mut st, &mut rng))
            .collect();
        assert_eq!(a, b);
        for agent in 0..3 {
            assert!(a.contains(&agent), "agent {agent} never picked");
        }
    }

    #[test]
    fn weighted_follows_the_inverse_level_shares_exactly() {
        let c = [
            cand(0, 1, None, 0),
            cand(1, 2, None, 0),
            cand(2, 3, None, 0),
        ];
        let mut st = StrategyState::new(3);
        let mut counts = [0usize; 3];
        for _ in 0..110 {
            for a in run(Strategy::Weighted, &c, &mut st) {
                counts[a] += 1;
            }
        }
        // Shares 6:3:2 over 11 calls per cycle.
        assert_eq!(counts, [60, 30, 20]);
    }

    #[test]
    fn weighted_spreads_rather_than_bursts() {
        let c = [cand(0, 1, None, 0), cand(1, 2, None, 0)];
        let mut st = StrategyState::new(2);
        let picks: Vec<_> = (0..6)
            .flat_map(|_| run(Strategy::Weighted, &c, &mut st))
            .collect();
        assert_eq!(picks, [0, 1, 0, 0, 1, 0]);
    }
}
