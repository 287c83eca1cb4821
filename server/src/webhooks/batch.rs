//! The batching thread: groups events per target (app, URL) and closes a
//! group at [`MAX_BATCH_EVENTS`] events or [`BATCH_WINDOW`] after it
//! opened, encoding its body once.

use crate::metrics::{self, Metrics};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::queue::{Batch, Queue};
use super::{now_ms, Intake, WebhookEvent, BATCH_WINDOW, MAX_BATCH_EVENTS};

/// One target's open batch.
struct Group {
    app: Arc<str>,
    url: String,
    events: Vec<WebhookEvent>,
    opened: Instant,
    first_ms: u64,
}

impl Group {
    fn close(self) -> Batch {
        let time_ms = now_ms();
        #[derive(Serialize)]
        struct Body<'a> {
            time_ms: u64,
            events: &'a [WebhookEvent],
        }
        let body = serde_json::to_string(&Body {
            time_ms,
            events: &self.events,
        })
        .unwrap_or_default();
        Batch {
            app: self.app.to_string(),
            url: self.url,
            body,
            events: self.events.len(),
            first_ms: self.first_ms,
        }
    }
}

/// The batching thread: see the module docs.
pub(super) fn batcher(rx: &Receiver<Intake>, mut queue: Queue, metrics: &Metrics) {
    let mut open: HashMap<(Arc<str>, String), Group> = HashMap::new();
    loop {
        let next = open.values().map(|g| g.opened + BATCH_WINDOW).min();
        let got = match next {
            Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match got {
            Ok(Intake::Push(q)) => {
                metrics.webhook_queue_depth.dec();
                for t in q.targets.iter() {
                    if !t.wants(q.event.name(), q.event.channel()) {
                        continue;
                    }
                    metrics.webhook_queue_depth.inc();
                    let key = (Arc::clone(&q.app), t.url.clone());
                    let group = open.entry(key.clone()).or_insert_with(|| Group {
                        app: Arc::clone(&q.app),
                        url: t.url.clone(),
                        events: Vec::new(),
                        opened: Instant::now(),
                        first_ms: now_ms(),
                    });
                    group.events.push(q.event.clone());
                    if group.events.len() >= MAX_BATCH_EVENTS {
                        if let Some(g) = open.remove(&key) {
                            queue.push(g.close(), metrics);
                        }
                    }
                }
            }
            Ok(Intake::Stop) | Err(RecvTimeoutError::Disconnected) => {
                for (_, g) in open.drain() {
                    queue.push(g.close(), metrics);
                }
                // Events queued after the stop are the shutdown's losses.
                while let Ok(Intake::Push(q)) = rx.try_recv() {
                    let _ = q;
                    metrics.webhook_queue_depth.dec();
                    metrics::inc(&metrics.webhooks_dropped, "reason", "shutdown");
                }
                return;
            }
            Err(RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                let due: Vec<_> = open
                    .iter()
                    .filter(|(_, g)| g.opened + BATCH_WINDOW <= now)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in due {
                    if let Some(g) = open.remove(&k) {
                        queue.push(g.close(), metrics);
                    }
                }
            }
        }
    }
}
