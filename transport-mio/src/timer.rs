//! The per-loop timer: a hashed timing wheel of connection tokens, checked
//! lazily.
//!
//! Each connection has at most one live entry: the tick at which the loop
//! must look at it again (`Connection::timer`). Activity never touches the
//! wheel: reading a frame only updates the connection's `last_in` time.
//! When an entry fires, the loop recomputes the connection's real deadlines
//! (handshake, ping, idle, write stall, close linger), acts on the expired
//! ones and re-inserts one entry for the earliest remaining deadline. An
//! entry whose tick no longer matches the connection's `timer` field (it was
//! rescheduled earlier, or the slot was reused: tokens carry a generation)
//! is stale and ignored.
//!
//! Cost: O(1) to schedule; per tick, O(entries in the slot). An idle
//! connection costs one entry every `min(ping_interval, wheel span)`; an
//! active one costs nothing more. The wheel has [`SLOTS`] slots of
//! `Config::tick()` (1–100 ms); a deadline beyond the span is parked in the
//! farthest slot and re-checked then. The loop's `poll` timeout is the time
//! to the next tick, so an idle loop wakes at most 1/tick times a second.
//!
//! Memory: a fired slot that had grown past [`KEEP`] entries gives its
//! capacity back, so the wheel holds about its live entries plus at most
//! `SLOTS × KEEP × 16 B` (256 KiB), not `SLOTS ×` the largest group of
//! connections sharing a tick.

use std::time::{Duration, Instant};

use mio::Token;

/// Slots in the wheel (its span is `SLOTS × tick`).
pub(crate) const SLOTS: u64 = 1024;

/// Capacity, in entries, a fired slot may keep for its next visit; a slot
/// that had grown past it starts again from nothing (see [`Wheel::expire`]).
const KEEP: usize = 16;

pub(crate) struct Wheel {
    slots: Vec<Vec<(Token, u64)>>,
    tick: Duration,
    start: Instant,
    /// Ticks processed so far: slots up to this tick have fired.
    done: u64,
    len: usize,
}

impl Wheel {
    pub(crate) fn new(tick: Duration, now: Instant) -> Self {
        Self {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            tick,
            start: now,
            done: 0,
            len: 0,
        }
    }

    /// The tick that covers `at` (rounded up, so nothing fires early).
    fn tick_of(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.start);
        let t = since.as_nanos().div_ceil(self.tick.as_nanos().max(1));
        u64::try_from(t).unwrap_or(u64::MAX)
    }

    /// The tick [`Self::schedule`] would use for `at`.
    pub(crate) fn tick_for(&self, at: Instant) -> u64 {
        self.tick_of(at).clamp(self.done + 1, self.done + SLOTS)
    }

    /// Schedules `token` at `at`; returns the tick to remember as the live
    /// entry.
    pub(crate) fn schedule(&mut self, token: Token, at: Instant) -> u64 {
        let tick = self.tick_for(at);
        self.slots[(tick % SLOTS) as usize].push((token, tick));
        self.len += 1;
        tick
    }

    /// Moves every entry due by `now` into `out`, as `(token, tick)`.
    pub(crate) fn expire(&mut self, now: Instant, out: &mut Vec<(Token, u64)>) {
        // Tick k is due once `start + k × tick <= now` (rounded down).
        let since = now.saturating_duration_since(self.start).as_nanos();
        let elapsed = u64::try_from(since / self.tick.as_nanos().max(1)).unwrap_or(u64::MAX);
        let target = elapsed.min(self.done + SLOTS);
        while self.done < target {
            self.done += 1;
            let slot = &mut self.slots[(self.done % SLOTS) as usize];
            let before = out.len();
            let due = self.done;
            slot.retain(|&(token, tick)| {
                if tick <= due {
                    out.push((token, tick));
                    false
                } else {
                    true
                }
            });
            self.len -= out.len() - before;
            // A slot fires once per span and most of it leaves; keeping the
            // capacity of its fullest visit would, over time, give every
            // slot the capacity of the largest group of connections that
            // share a deadline (connections opened in one burst keep
            // sharing one): SLOTS times that group, for ever (issue 18).
            if slot.capacity() > KEEP && slot.len() <= slot.capacity() / 4 {
                slot.shrink_to(slot.len());
            }
        }
    }

    /// Time until the next tick, or `None` if the wheel is empty.
    pub(crate) fn timeout(&self, now: Instant) -> Option<Duration> {
        if self.len == 0 {
            return None;
        }
        let nanos = u64::try_from(self.tick.as_nanos()).unwrap_or(u64::MAX);
        let next = self.start + Duration::from_nanos(nanos.saturating_mul(self.done + 1));
        Some(next.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_fire_once_due_and_not_before() {
        let t0 = Instant::now();
        let mut w = Wheel::new(Duration::from_millis(10), t0);
        let tick = w.schedule(Token(7), t0 + Duration::from_millis(25));
        let mut out = Vec::new();
        w.expire(t0 + Duration::from_millis(20), &mut out);
        assert!(out.is_empty());
        w.expire(t0 + Duration::from_millis(30), &mut out);
        assert_eq!(out, vec![(Token(7), tick)]);
        assert_eq!(w.timeout(t0), None);
    }

    /// Total slot capacity, in entries.
    fn capacity(w: &Wheel) -> usize {
        w.slots.iter().map(Vec::capacity).sum()
    }

    /// Issue 18: connections that connected in one burst stay together (one
    /// slot), and each ping cycle moves the group to another slot. A slot's
    /// `Vec` kept its capacity when it fired, so after the group had visited
    /// every slot the wheel held `SLOTS × group` entries of capacity (16 B
    /// each): RSS grew one step per ping interval until it had.
    #[test]
    fn fired_slots_give_back_their_capacity() {
        let t0 = Instant::now();
        let tick = Duration::from_millis(100);
        let mut w = Wheel::new(tick, t0);
        let group = 1000;
        let mut at = t0 + Duration::from_secs(30);
        for i in 0..group {
            w.schedule(Token(i), at);
        }
        let mut out = Vec::new();
        // 2,000 ping cycles of 30.1 s: the group moves 301 slots each time.
        let cycle = Duration::from_millis(30_100);
        for _ in 0..2000 {
            w.expire(at, &mut out);
            assert_eq!(out.len(), group);
            at += cycle;
            for (token, _) in out.drain(..) {
                w.schedule(token, at);
            }
        }
        // The live group's slot (at most doubled); every slot the group
        // left has given its capacity back.
        let bound = 2 * group;
        assert!(
            capacity(&w) <= bound,
            "{} entries of capacity for {group} live entries (bound {bound})",
            capacity(&w)
        );
    }

    #[test]
    fn far_deadlines_are_parked_and_fire_no_later_than_the_span() {
        let t0 = Instant::now();
        let tick = Duration::from_millis(1);
        let mut w = Wheel::new(tick, t0);
        w.schedule(Token(1), t0 + Duration::from_secs(3600));
        let mut out = Vec::new();
        w.expire(t0 + tick * (SLOTS as u32 + 1), &mut out);
        assert_eq!(out.len(), 1);
    }
}
