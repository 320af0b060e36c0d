//! Token-bucket arithmetic as GCRA (the generic cell rate algorithm): a
//! bucket's whole state is one timestamp, the *theoretical arrival time*
//! (TAT) of its next token. That makes a take a single compare-and-update
//! of one row, which a database can do atomically for any number of
//! processes; an in-memory limiter could not be shared by replicas.
//!
//! With `per_token` = T and `burst` = C: a take at `now` is allowed iff
//! `tat - now <= (C - 1) * T`, and then `tat = max(tat, now) + T`. A full
//! bucket has `tat <= now`.

use interlock_core::Micros;
use std::time::Duration;

/// A bucket's rule: one token every `per_token`, at most `burst` stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gcra {
    /// Microseconds for one token to come back (at least 1).
    pub per_token: Micros,
    /// Most tokens the bucket holds (at least 1).
    pub burst: u32,
}

impl Gcra {
    /// `refill` tokens every `period`, holding at most `capacity`.
    pub fn new(capacity: u32, refill: u32, period: Duration) -> Self {
        let per_token = period.as_micros() as Micros / Micros::from(refill.max(1));
        Self {
            per_token: per_token.max(1),
            burst: capacity.max(1),
        }
    }

    fn tolerance(&self) -> Micros {
        self.per_token * Micros::from(self.burst - 1)
    }

    /// The time an empty bucket takes to fill: takes older than this no
    /// longer matter.
    pub fn window(&self) -> Micros {
        self.per_token * Micros::from(self.burst)
    }

    /// Decides a take at `now` against `tat`: the new TAT, or how long
    /// until a token is available.
    pub fn take(&self, tat: Micros, now: Micros) -> Result<Micros, Duration> {
        let earliest = tat - self.tolerance();
        if earliest <= now {
            Ok(tat.max(now) + self.per_token)
        } else {
            Err(Duration::from_micros((earliest - now) as u64))
        }
    }

    /// The TAT after replaying takes at these times (oldest first), starting
    /// from a full bucket. A replayed take the rule would refuse (the rule
    /// got stricter) still counts: the bucket can only end up emptier.
    pub fn replay(&self, takes: impl IntoIterator<Item = Micros>) -> Micros {
        takes
            .into_iter()
            .fold(Micros::MIN / 2, |tat, at| tat.max(at) + self.per_token)
    }

    /// Tokens available at `now`, and when the next one arrives (`None`
    /// when the bucket is full).
    pub fn level(&self, tat: Micros, now: Micros) -> (u32, Option<Duration>) {
        let debt = (tat - now).max(0);
        if debt == 0 {
            return (self.burst, None);
        }
        let owed = (debt + self.per_token - 1) / self.per_token;
        let available = (Micros::from(self.burst) - owed).max(0) as u32;
        // The next token arrives when the debt drops to the multiple of T
        // below it.
        let next = debt - (owed - 1) * self.per_token;
        (available, Some(Duration::from_micros(next as u64)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Micros = 60_000_000;

    #[test]
    fn capacity_then_refill() {
        let g = Gcra::new(2, 1, Duration::from_secs(1800));
        let t0 = 1_000 * MIN;
        let full = g.replay([]);
        assert_eq!(g.level(full, t0), (2, None));
        let tat = g.take(full, t0).unwrap();
        let tat = g.take(tat, t0).unwrap();
        assert_eq!(g.take(tat, t0), Err(Duration::from_secs(1800)));
        assert_eq!(g.level(tat, t0), (0, Some(Duration::from_secs(1800))));
        // Ten minutes later the countdown has moved.
        let later = t0 + 10 * MIN;
        assert_eq!(g.level(tat, later), (0, Some(Duration::from_secs(1200))));
        assert_eq!(g.take(tat, later), Err(Duration::from_secs(1200)));
        let refilled = t0 + 30 * MIN;
        assert_eq!(g.level(tat, refilled), (1, Some(Duration::from_secs(1800))));
        assert!(g.take(tat, refilled).is_ok());
        assert_eq!(g.level(tat, t0 + 60 * MIN), (2, None));
    }

    #[test]
    fn replay_matches_live_takes() {
        let g = Gcra::new(3, 1, Duration::from_secs(60));
        let takes = [10 * MIN, 10 * MIN + 5, 10 * MIN + 30_000_000];
        let mut tat = g.replay([]);
        for at in takes {
            tat = g.take(tat, at).unwrap();
        }
        assert_eq!(g.replay(takes), tat);
    }
}
