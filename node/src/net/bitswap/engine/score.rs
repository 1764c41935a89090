//! Misbehaviour scores: each offence adds to a peer's score, which halves every half-life; a
//! peer over [`BAN_SCORE`] is banned until its score decays under [`UNBAN_SCORE`]. At most
//! [`MAX_SCORES`] scores are kept.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::PeerId;

use super::config::{BAN_SCORE, FORGET_SCORE, MAX_SCORES, SCORE_HALF_LIFE, SCORE_SWEEP, UNBAN_SCORE};
use super::Engine;

/// A peer's score as of `at` (it decays from there).
struct Score {
    value: f64,
    at: Instant,
}

/// How fast scores decay.
#[derive(Debug, Clone, Copy)]
struct HalfLife(Duration);

impl Default for HalfLife {
    fn default() -> Self {
        HalfLife(SCORE_HALF_LIFE)
    }
}

/// Every peer's score, and the peers banned.
#[derive(Default)]
pub(super) struct Scores {
    scores: HashMap<PeerId, Score>,
    /// Peers banned until their score decays under [`UNBAN_SCORE`].
    banned: HashSet<PeerId>,
    half_life: HalfLife,
    last_sweep: Option<Instant>,
}

impl Scores {
    /// Scores halve every `half_life` (tests shorten it).
    pub(super) fn set_half_life(&mut self, half_life: Duration) {
        self.half_life = HalfLife(half_life.max(Duration::from_millis(1)));
    }

    /// [`Engine::is_banned`].
    pub(super) fn is_banned(&mut self, peer: &PeerId, now: Instant) -> bool {
        self.banned.contains(peer) && self.score(peer, now) >= UNBAN_SCORE
    }

    fn score(&mut self, peer: &PeerId, now: Instant) -> f64 {
        let half_life = self.half_life.0.as_secs_f64();
        let Some(s) = self.scores.get_mut(peer) else { return 0.0 };
        let halvings = now.saturating_duration_since(s.at).as_secs_f64() / half_life;
        s.value *= 0.5f64.powf(halvings);
        s.at = now;
        s.value
    }

    /// Adds `amount` to a peer's score; true when that gets the peer banned (it was not).
    pub(super) fn penalize(&mut self, peer: PeerId, amount: f64, now: Instant) -> bool {
        let was_banned = self.is_banned(&peer, now);
        let before = self.score(&peer, now);
        let s = self.scores.entry(peer).or_insert(Score { value: 0.0, at: now });
        s.value = before + amount;
        if s.value >= BAN_SCORE {
            self.banned.insert(peer);
        }
        !was_banned && self.banned.contains(&peer)
    }

    /// The peers whose bans end now (their scores decayed under [`UNBAN_SCORE`]), to be let
    /// back in. Every [`SCORE_SWEEP`] it also forgets the scores that decayed away, and the
    /// lowest ones past [`MAX_SCORES`].
    pub(super) fn lifted_bans(&mut self, now: Instant) -> Vec<PeerId> {
        let banned: Vec<PeerId> = self.banned.iter().copied().collect();
        let lifted: Vec<PeerId> = banned.into_iter().filter(|p| !self.is_banned(p, now)).collect();
        for p in &lifted {
            self.banned.remove(p);
        }
        if self.last_sweep.is_none_or(|at| now.saturating_duration_since(at) >= SCORE_SWEEP) {
            self.last_sweep = Some(now);
            let peers: Vec<PeerId> = self.scores.keys().copied().collect();
            for p in peers {
                if !self.banned.contains(&p) && self.score(&p, now) < FORGET_SCORE {
                    self.scores.remove(&p);
                }
            }
            if self.scores.len() > MAX_SCORES {
                let mut free: Vec<(f64, PeerId)> =
                    self.scores.iter().filter(|(p, _)| !self.banned.contains(*p)).map(|(p, s)| (s.value, *p)).collect();
                free.sort_by(|a, b| a.0.total_cmp(&b.0));
                let excess = self.scores.len() - MAX_SCORES;
                for (_, p) in free.into_iter().take(excess) {
                    self.scores.remove(&p);
                }
            }
        }
        lifted
    }

    /// Peers whose scores are kept now (bounded by [`MAX_SCORES`] plus the banned).
    pub(super) fn len(&self) -> usize {
        self.scores.len()
    }

    /// Peers banned now.
    pub(super) fn banned(&self) -> usize {
        self.banned.len()
    }
}

impl Engine {
    /// Scores halve every `half_life` (tests shorten it).
    pub fn set_score_half_life(&mut self, half_life: Duration) {
        self.scores.set_half_life(half_life);
    }

    /// Whether `peer` is banned now: its score reached [`BAN_SCORE`] and has not yet decayed
    /// under [`UNBAN_SCORE`]. Only [`Engine::lifted_bans`] ends a ban, so that the driver,
    /// which blocked the peer, hears of every end and unblocks it.
    pub fn is_banned(&mut self, peer: &PeerId, now: Instant) -> bool {
        self.scores.is_banned(peer, now)
    }

    /// Adds `amount` to a peer's score; true when that gets the peer banned (it was not).
    pub fn penalize(&mut self, peer: PeerId, amount: f64, now: Instant) -> bool {
        self.scores.penalize(peer, amount, now)
    }

    /// The peers whose bans end now (their scores decayed under [`UNBAN_SCORE`]), to be let
    /// back in. Every [`SCORE_SWEEP`](super::SCORE_SWEEP) it also forgets the scores that
    /// decayed away, and the lowest ones past [`MAX_SCORES`].
    pub fn lifted_bans(&mut self, now: Instant) -> Vec<PeerId> {
        self.scores.lifted_bans(now)
    }

    /// Peers whose scores are kept now (bounded by [`MAX_SCORES`] plus the banned).
    pub fn scored_peers(&self) -> usize {
        self.scores.len()
    }
}
