//! What was published and when, the fault windows, and the per-subscription
//! gap tracker that proves a healthy client received every event published
//! after it subscribed.
//!
//! The rule. Each channel has a sequence: the publisher takes the next
//! number and records the publish start under the channel's lock, then sends
//! the request, then records when it was answered (or that it failed). A
//! client that receives `subscription_succeeded` reads the channel's length
//! `L` under the same lock: every number from `L` on was taken after the
//! server had subscribed it, so each of them that the server accepted (HTTP
//! 200) must reach it, in any order, exactly once. A [`Period`] tracks one
//! subscription from `L`: `next` is the lowest number not yet accounted for,
//! `ahead` holds numbers received above it. [`Ledger::settle`] walks `next`
//! forward over numbers received, failed, or answered more than `grace`
//! milliseconds ago and never received (lost). A loss whose publish overlaps
//! a fault window (widened by [`FAULT_PAD_MS`]) is counted apart. A number
//! counted lost that arrives later, while the subscription lasts, was late:
//! its loss is taken back and it is counted late instead.
//!
//! Who touches what: the publisher threads append to and complete entries
//! of a channel under its mutex; the client threads read them under it; the
//! driver's main thread opens and closes fault windows.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// `done` of an entry whose request is still in flight.
const PENDING: u32 = 0;
/// `done` of an entry whose request failed: nobody may expect it.
const FAILED: u32 = u32::MAX;
/// Milliseconds a fault window is widened on each side: a publish answered
/// just before a node is killed may still be in its queues.
pub(crate) const FAULT_PAD_MS: u32 = 1000;

#[derive(Clone, Copy)]
struct Entry {
    /// Milliseconds since the driver started when the request was sent.
    start: u32,
    /// When it was answered 200 (at least 1), or [`PENDING`], or [`FAILED`].
    done: u32,
}

/// One fault window, in milliseconds since the driver started.
#[derive(Clone, Debug)]
pub(crate) struct Window {
    pub(crate) name: String,
    pub(crate) start: u32,
    pub(crate) end: Option<u32>,
}

/// The outcome of settling a period.
#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct Settled {
    pub(crate) lost: u64,
    pub(crate) lost_in_fault: u64,
}

/// Every channel's publishes and the fault windows.
pub(crate) struct Ledger {
    channels: Vec<Mutex<Vec<Entry>>>,
    faults: Mutex<Vec<Window>>,
}

/// One subscription of one healthy client.
pub(crate) struct Period {
    pub(crate) channel: usize,
    first: u64,
    next: u64,
    ahead: BTreeSet<u64>,
    /// Numbers counted lost (and whether inside a fault window), so that a
    /// late arrival takes its loss back.
    lost: BTreeMap<u64, bool>,
}

impl Ledger {
    pub(crate) fn new(channels: usize) -> Self {
        Self {
            channels: (0..channels).map(|_| Mutex::new(Vec::new())).collect(),
            faults: Mutex::new(Vec::new()),
        }
    }

    /// Takes the channel's next sequence number for a publish starting now.
    pub(crate) fn begin(&self, channel: usize, now_ms: u32) -> u64 {
        let mut g = lock(&self.channels[channel]);
        g.push(Entry {
            start: now_ms,
            done: PENDING,
        });
        g.len() as u64 - 1
    }

    /// Records the answer to publish `seq` of `channel`.
    pub(crate) fn finish(&self, channel: usize, seq: u64, now_ms: u32, ok: bool) {
        let mut g = lock(&self.channels[channel]);
        if let Some(e) = g.get_mut(seq as usize) {
            e.done = if ok {
                now_ms.clamp(1, FAILED - 1)
            } else {
                FAILED
            };
        }
    }

    /// A period for a subscription acknowledged now.
    pub(crate) fn subscribe(&self, channel: usize) -> Period {
        let next = lock(&self.channels[channel]).len() as u64;
        Period {
            channel,
            first: next,
            next,
            ahead: BTreeSet::new(),
            lost: BTreeMap::new(),
        }
    }

    pub(crate) fn fault_start(&self, name: &str, now_ms: u32) {
        lock(&self.faults).push(Window {
            name: name.to_owned(),
            start: now_ms,
            end: None,
        });
    }

    pub(crate) fn fault_end(&self, name: &str, now_ms: u32) {
        let mut g = lock(&self.faults);
        if let Some(w) = g
            .iter_mut()
            .rev()
            .find(|w| w.name == name && w.end.is_none())
        {
            w.end = Some(now_ms);
        }
    }

    pub(crate) fn windows(&self) -> Vec<Window> {
        lock(&self.faults).clone()
    }

    pub(crate) fn any_fault_open(&self) -> bool {
        lock(&self.faults).iter().any(|w| w.end.is_none())
    }

    fn in_fault(&self, e: Entry) -> bool {
        let done = if e.done == FAILED { e.start } else { e.done };
        lock(&self.faults).iter().any(|w| {
            let lo = w.start.saturating_sub(FAULT_PAD_MS);
            let hi = w.end.map_or(u32::MAX, |x| x.saturating_add(FAULT_PAD_MS));
            done >= lo && e.start <= hi
        })
    }

    /// Accounts for what `p` can account for at `now_ms`: numbers answered
    /// more than `grace_ms` ago and not received are lost. With `end`, the
    /// subscription is over: numbers still pending or answered later than
    /// `now_ms - grace_ms` were never owed to it, and are skipped.
    pub(crate) fn settle(&self, p: &mut Period, now_ms: u32, grace_ms: u32, end: bool) -> Settled {
        let mut out = Settled::default();
        let entries: Vec<Entry> = {
            let g = lock(&self.channels[p.channel]);
            g.get(p.next as usize..)
                .map(<[Entry]>::to_vec)
                .unwrap_or_default()
        };
        let horizon = now_ms.saturating_sub(grace_ms);
        for e in entries {
            let seq = p.next;
            let received = p.ahead.remove(&seq);
            let owed = e.done != FAILED && e.done != PENDING && e.done <= horizon;
            if !received && !owed && !end {
                if e.done == FAILED {
                    p.next += 1;
                    continue;
                }
                break;
            }
            if !received && owed {
                let in_fault = self.in_fault(e);
                if in_fault {
                    out.lost_in_fault += 1;
                } else {
                    out.lost += 1;
                }
                p.lost.insert(seq, in_fault);
            }
            p.next += 1;
        }
        out
    }
}

/// What one received number was to its period.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Receipt {
    /// Owed and now accounted for, or published before the subscription.
    Fine,
    /// Counted lost earlier (inside a fault window or not): it was late,
    /// not lost; the loss is taken back.
    Late { in_fault: bool },
    /// Received already.
    Duplicate,
}

impl Period {
    /// Records number `seq` received.
    pub(crate) fn receive(&mut self, seq: u64) -> Receipt {
        if seq < self.first {
            // Published before the subscription: not owed, not wrong.
            return Receipt::Fine;
        }
        if seq < self.next {
            return match self.lost.remove(&seq) {
                Some(in_fault) => Receipt::Late { in_fault },
                None => Receipt::Duplicate,
            };
        }
        if self.ahead.insert(seq) {
            Receipt::Fine
        } else {
            Receipt::Duplicate
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ledger with one channel and `n` publishes answered at 100 ms.
    fn published(n: u64) -> Ledger {
        let l = Ledger::new(1);
        for _ in 0..n {
            let s = l.begin(0, 10);
            l.finish(0, s, 100, true);
        }
        l
    }

    #[test]
    fn an_event_published_after_the_subscription_and_never_received_is_lost() {
        let l = Ledger::new(1);
        let mut p = l.subscribe(0);
        for _ in 0..3 {
            let s = l.begin(0, 10);
            l.finish(0, s, 100, true);
        }
        assert_eq!((p.receive(0), p.receive(2)), (Receipt::Fine, Receipt::Fine));
        let s = l.settle(&mut p, 10_000, 5_000, false);
        assert_eq!((s.lost, s.lost_in_fault), (1, 0));
    }

    #[test]
    fn events_published_before_the_subscription_are_not_owed() {
        let l = published(5);
        let mut p = l.subscribe(0);
        assert_eq!(
            p.receive(3),
            Receipt::Fine,
            "an early event is not an error"
        );
        let s = l.settle(&mut p, 10_000, 5_000, true);
        assert_eq!(s.lost, 0);
    }

    #[test]
    fn a_missing_event_within_the_grace_is_not_yet_lost() {
        let l = Ledger::new(1);
        let mut p = l.subscribe(0);
        let s = l.begin(0, 10);
        l.finish(0, s, 100, true);
        assert_eq!(l.settle(&mut p, 1_000, 5_000, false).lost, 0);
        assert_eq!(l.settle(&mut p, 6_000, 5_000, false).lost, 1);
    }

    #[test]
    fn failed_publishes_are_owed_to_nobody() {
        let l = Ledger::new(1);
        let mut p = l.subscribe(0);
        let s = l.begin(0, 10);
        l.finish(0, s, 100, false);
        let s = l.settle(&mut p, 60_000, 5_000, false);
        assert_eq!((s.lost, s.lost_in_fault), (0, 0));
    }

    #[test]
    fn a_loss_inside_a_fault_window_is_counted_apart() {
        let l = Ledger::new(1);
        let mut p = l.subscribe(0);
        l.fault_start("kill", 5_000);
        let s = l.begin(0, 5_500);
        l.finish(0, s, 5_600, true);
        l.fault_end("kill", 8_000);
        let s = l.begin(0, 20_000);
        l.finish(0, s, 20_100, true);
        let s = l.settle(&mut p, 60_000, 5_000, false);
        assert_eq!((s.lost, s.lost_in_fault), (1, 1));
    }

    #[test]
    fn a_duplicate_is_refused() {
        let l = Ledger::new(1);
        let mut p = l.subscribe(0);
        let s = l.begin(0, 10);
        l.finish(0, s, 100, true);
        assert_eq!(p.receive(0), Receipt::Fine);
        assert_eq!(p.receive(0), Receipt::Duplicate, "twice before settling");
        l.settle(&mut p, 10_000, 5_000, false);
        assert_eq!(p.receive(0), Receipt::Duplicate, "again after settling");
    }

    #[test]
    fn an_event_counted_lost_that_arrives_later_was_late() {
        let l = Ledger::new(1);
        let mut p = l.subscribe(0);
        let s = l.begin(0, 10);
        l.finish(0, s, 100, true);
        assert_eq!(l.settle(&mut p, 10_000, 5_000, false).lost, 1);
        assert_eq!(p.receive(0), Receipt::Late { in_fault: false });
        assert_eq!(p.receive(0), Receipt::Duplicate);
    }

    #[test]
    fn an_ended_period_skips_what_was_answered_inside_the_grace() {
        let l = Ledger::new(1);
        let mut p = l.subscribe(0);
        let s = l.begin(0, 9_000);
        l.finish(0, s, 9_100, true);
        let pending = l.begin(0, 9_200);
        let _ = pending;
        let s = l.settle(&mut p, 10_000, 5_000, true);
        assert_eq!(s.lost, 0);
    }
}
