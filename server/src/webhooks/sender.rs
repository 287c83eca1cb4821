//! A sender thread: takes batches from its [`Source`], POSTs each to its
//! target, signed, and retries with capped exponential backoff and jitter
//! within the retry budget (the policy is in the parent module's docs).

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::queue::{wait, Batch, Source};
use super::{now_ms, Shared};
use crate::auth;

/// The first backoff.
pub(crate) const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// The longest backoff.
pub(crate) const BACKOFF_CAP: Duration = Duration::from_secs(10);

/// How a batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Sent,
    /// Given up after the retry budget (or its app is unknown).
    Dropped,
    /// Given up because the node is stopping.
    Stopped,
}

/// The thread's loop.
pub(crate) fn run(shared: &Shared, mut source: Source) {
    let stop = || shared.stopping.load(Ordering::SeqCst);
    while let Some(taken) = source.take(&stop) {
        match deliver(shared, &taken.batch) {
            Outcome::Stopped if source.durable() => {} // requeued at stop
            Outcome::Stopped => {
                shared
                    .metrics
                    .webhook_queue_depth
                    .dec_by(events(&taken.batch));
                drop_events(shared, &taken.batch, "shutdown");
            }
            Outcome::Sent | Outcome::Dropped => {
                if !source.durable() {
                    shared
                        .metrics
                        .webhook_queue_depth
                        .dec_by(events(&taken.batch));
                }
                source.ack(&taken);
            }
        }
    }
}

fn events(b: &Batch) -> i64 {
    i64::try_from(b.events).unwrap_or(i64::MAX)
}

fn drop_events(shared: &Shared, b: &Batch, reason: &str) {
    shared
        .metrics
        .webhooks_dropped
        .get_or_create(&[("reason", reason.to_owned())])
        .inc_by(b.events as u64);
}

/// The `n`th backoff (from 0): `BACKOFF_BASE * 2^n`, capped, drawn in
/// [half, whole].
pub(crate) fn backoff(n: u32) -> Duration {
    let whole = BACKOFF_BASE
        .saturating_mul(1u32.checked_shl(n.min(16)).unwrap_or(u32::MAX))
        .min(BACKOFF_CAP);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(n);
    let half = whole / 2;
    let jitter = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_micros(h.finish() % jitter)
}

/// Sends one batch until it is acknowledged, the retry budget is spent or
/// the node stops.
fn deliver(shared: &Shared, batch: &Batch) -> Outcome {
    let Some((key, secret)) = shared.apps.get(&batch.app) else {
        tracing::warn!(app = %batch.app, "webhook batch of an unknown app: dropped");
        drop_events(shared, batch, "unknown_app");
        return Outcome::Dropped;
    };
    let signature = auth::sign(secret, &batch.body);
    let id = hex::encode(Sha256::digest(batch.body.as_bytes()));
    let deadline = Instant::now() + shared.retry;
    let mut attempt = 0u32;
    loop {
        if shared
            .give_up_at
            .get()
            .is_some_and(|at| Instant::now() >= *at)
        {
            return Outcome::Stopped;
        }
        if attempt > 0 {
            shared.metrics.webhooks_retried.inc();
        }
        let answer = shared
            .agent
            .post(&batch.url)
            .header("Content-Type", "application/json")
            .header("X-Pusher-Key", key.as_str())
            .header("X-Pusher-Signature", signature.as_str())
            .header("X-Pusher-Webhook-Id", id.as_str())
            .send(batch.body.as_str());
        let failure = match answer {
            Ok(resp) if resp.status().is_success() => {
                shared.metrics.webhooks_sent.inc();
                let ms = now_ms().saturating_sub(batch.first_ms);
                shared.metrics.webhook_seconds.observe(ms as f64 / 1000.0);
                return Outcome::Sent;
            }
            Ok(resp) => format!("HTTP {}", resp.status().as_u16()),
            Err(e) => e.to_string(),
        };
        shared.metrics.webhooks_failed.inc();
        tracing::debug!(app = %batch.app, url = %batch.url, attempt, error = %failure, "webhook attempt failed");
        if shared.stopping.load(Ordering::SeqCst) {
            return Outcome::Stopped;
        }
        let pause = backoff(attempt);
        if Instant::now() + pause > deadline {
            tracing::warn!(
                app = %batch.app,
                url = %batch.url,
                events = batch.events,
                attempts = attempt + 1,
                error = %failure,
                "webhook batch dropped after the retry budget (--webhook-retry-ms)"
            );
            drop_events(shared, batch, "retry_budget");
            return Outcome::Dropped;
        }
        if wait(&shared.stop_rx, pause) {
            return Outcome::Stopped;
        }
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        for n in 0..40 {
            let whole = (BACKOFF_BASE * 2u32.pow(n.min(16))).min(BACKOFF_CAP);
            let d = backoff(n);
            assert!(d >= whole / 2 && d <= whole, "{n}: {d:?}");
        }
    }
}
