//! A token bucket: `rate` events per second, bursts up to `rate`.
//!
//! One bucket per connection limits its client events (Pusher: 10/s →
//! error 4301). The bucket is owned by its connection's state behind a
//! mutex that only that connection's reader thread takes, so it is never
//! contended. Time is passed in, so tests control it.

use std::time::Instant;

/// A token bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket allowing `rate` events per second.
    pub fn new(rate: u32, now: Instant) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            rate,
            tokens: rate,
            last: now,
        }
    }

    /// Takes one token; false if the bucket is empty (the event must be
    /// refused).
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_rate_per_second_then_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, t0);
        for _ in 0..10 {
            assert!(b.try_take(t0));
        }
        assert!(!b.try_take(t0));
        assert!(!b.try_take(t0 + Duration::from_millis(50)));
        assert!(b.try_take(t0 + Duration::from_millis(101)));
        // A long pause refills to the burst size, not beyond.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..10 {
            assert!(b.try_take(later));
        }
        assert!(!b.try_take(later));
    }
}
