//! Exponential backoff with jitter for reconnecting the stream, so that many SDKs cut off by
//! the same outage do not all come back at the same instant.

use std::time::Duration;

use rand::Rng;

/// Delays `initial`, `2·initial`, `4·initial`… capped at `max`, each drawn uniformly from the
/// upper half of that step ("equal jitter": never less than half the step, never more).
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The step before jitter for the next attempt.
    fn step(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before the next attempt; each call grows the next one until `max`.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let step = self.step();
        self.attempt = self.attempt.saturating_add(1);
        step.mul_f64(rng.random_range(0.5..=1.0))
    }

    /// Changes the initial delay (the server's `retry:` hint), keeping the cap above it.
    pub fn set_initial(&mut self, initial: Duration) {
        self.initial = initial.max(Duration::from_millis(1));
        self.max = self.max.max(self.initial);
    }

    /// Back to the initial delay, after a connection that worked.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_in_the_upper_half() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let steps = [100u64, 200, 400, 800, 1600, 2000, 2000, 2000];
        for step in steps {
            let delay = backoff.next_delay(&mut rng);
            let step = Duration::from_millis(step);
            assert!(
                delay >= step / 2 && delay <= step,
                "{delay:?} not within [{:?}, {step:?}]",
                step / 2
            );
        }
    }

    #[test]
    fn jitter_spreads_clients_apart() {
        let mut rng = StdRng::seed_from_u64(1);
        let delays: Vec<Duration> = (0..50)
            .map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).next_delay(&mut rng))
            .collect();
        let min = delays.iter().min().expect("50 delays");
        let max = delays.iter().max().expect("50 delays");
        assert!(
            (*max).checked_sub(*min).unwrap() > Duration::from_millis(200),
            "delays not spread: {min:?}..{max:?}"
        );
    }

    #[test]
    fn reset_returns_to_the_initial_delay() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(60));
        for _ in 0..10 {
            backoff.next_delay(&mut rng);
        }
        assert!(backoff.next_delay(&mut rng) > Duration::from_secs(2));
        backoff.reset();
        assert!(backoff.next_delay(&mut rng) <= Duration::from_millis(10));
    }

    #[test]
    fn many_attempts_never_overflow() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for _ in 0..1000 {
            assert!(backoff.next_delay(&mut rng) <= Duration::from_secs(30));
        }
    }
}
