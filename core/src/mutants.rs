//! The loom mutants: one switch per step of the Hub's concurrency protocol
//! that a loom model must be able to catch broken.
//!
//! A model that cannot fail proves nothing, so every model in `loom-tests/`
//! has a mutant: a build with `--cfg loom_mutant="<name>"` (given to this
//! crate alone by `loom-tests/run.sh`) re-introduces one bug, and the loom
//! stage requires its model to fail. Each switch below is the only place
//! that names its cfg; the protocol code reads `if mutants::name() { .. }`
//! at the one step the mutant breaks, with no `cfg` attribute there.
//!
//! In every other build each switch is the constant `false`: the branch is
//! removed at compile time, so the product's code and the loom models'
//! plain runs execute exactly the same operations as without the switch.
//! Nothing here is read at run time.
//!
//! | switch | breaks (file: step) | caught by (`loom-tests/tests/`) |
//! |---|---|---|
//! | [`dead_channel`] | `hub.rs` `leave`: the last leaver removes the channel without marking it dead, so a racing subscriber joins a channel no longer in the table (R6) | `loom_subscribe.rs` `subscribes_racing_last_unsubscribe_keep_the_channel` |
//! | [`create_joins_dead`] | `hub/membership.rs` `create`: a subscriber that lost the race to create a channel joins the winner's channel without checking `dead`; if its last member left meanwhile, the subscriber lands in a channel no longer in the table (R6) | `loom_subscribe.rs` `a_subscriber_losing_the_race_to_create_never_joins_a_dead_channel` |
//! | [`ghost`] | `hub.rs` `join`: no re-check of `closed` under `subs`; a close between the caller's check and the join cleans up first and leaves a ghost subscriber (R7) | `loom_close.rs` `subscribe_racing_close_leaves_no_ghost` |
//! | [`empty_channel`] | `hub.rs` `join`: a join that created the channel and then found its client closed does not retire it, leaving it empty in the table | `loom_close.rs` `presence_subscribe_racing_close_leaves_no_phantom_member` |
//! | [`presence_order`] | `hub.rs` `join`: the channel lock is released before the `member_added` fan-out and the hooks, so members see joins in different orders (R9) | `loom_presence.rs` `presence_joins_and_leave_reach_every_member_in_one_order` |
//! | [`roster_late`] | `hub.rs` `join`: the newcomer takes its slot, visible to lock-free broadcasts, before its roster is queued, so a racing broadcast reaches it first (R9) | `loom_presence.rs` `newcomer_gets_its_roster_before_a_racing_broadcast` |
//! | [`add_no_recheck`] | `hub.rs` `register`: no re-check of the Hub's `closed` after the insert; a client inserted after close's sweep stays registered (R4, R16) | `loom_hub_close.rs` `hub_close_racing_attach_and_subscribe_leaves_nothing_registered` |
//! | [`deliver_after_close`] | `client.rs` `pop_frame`: no `closed` check; a frame queued before a close is delivered after it (R7) | `loom_broadcast.rs` `broadcast_racing_close_delivers_nothing_after_close_returns` |
//! | [`double_close`] | `client.rs` `shut`: a load, then a store, instead of the swap; two racing closers both win and close the transport twice (R14) | `loom_overflow.rs` `disconnect_client_overflow_closes_exactly_once` |
//! | [`lost_drop`] | `client.rs` `enqueue`: the drop counter is bumped with a load and a store instead of one read-modify-write; concurrent drops are lost (R14) | `loom_overflow.rs` `drop_message_overflow_counts_every_dropped_frame` |
//! | [`reply_dropped`] | `client.rs` `send_reply`: a reply obeys `DropMessage` like a broadcast and is silently dropped (R34) | `loom_bytes.rs` `replies_past_the_bound_close_the_client_exactly_once` |
//! | [`account_after_push`] | `outbox.rs` `push`: the bound is checked with a load and the bytes are added after the frame is queued; the drainer can release them first, `queued` wraps and a client that keeps up looks hopelessly slow (R34, R17) | `loom_bytes.rs` `a_reader_that_keeps_up_is_never_disconnected_for_a_burst_that_fits` |
//! | [`lost_wakeup`] | `outbox.rs` `push`: `scheduled` is set with a relaxed load, then a store, instead of the swap; two producers both wake, or a drainer's re-arm races the check and a frame is stranded (R30) | `loom_wakeup.rs` `wakeup_is_never_lost_and_never_doubled` |
//! | [`wakeup_relaxed`] | `outbox.rs` `push`: the same swap, but the check before it is a `Relaxed` load, which can read the `true` from before the drainer's re-arm and strand the frame: the protocol needs SeqCst there, not only the right logic (R30) | `loom_wakeup.rs` `wakeup_is_never_lost_and_never_doubled` |
//! | [`reserve_then_undo`] | `outbox.rs` `reserve`: the reservation is a `fetch_add` undone when over (the first v2 code); a refused frame is briefly counted, and a racing reply looks over the bound and closes a client within it (R34) | `loom_bytes.rs` `a_reply_is_queued_where_a_broadcast_is_dropped` |
//! | [`refuse_on_stale_count`] | `outbox.rs` `reserve`: refuses on a plain load of the count, which may predate a pop whose bytes are already reported unsent (counted twice) | `loom_bytes.rs` `a_reader_that_keeps_up_is_never_disconnected_for_a_burst_that_fits` |
//! | [`reserve_not_atomic`] | `outbox.rs` `reserve`: a plain store instead of the compare-and-swap; a racing push's bytes are lost from the count (R14, R34) | `loom_bytes.rs` `every_frame_is_delivered_or_dropped_once_and_no_byte_leaks` |
//! | [`bound_ignores_unsent`] | `outbox.rs` `over`: the bound counts only what is queued, so bytes the socket refused do not count and a client that stopped reading is never found slow (R34) | `loom_bytes.rs` `unsent_bytes_count_toward_the_bound_drop_message` (and `..._disconnect_client`) |
//! | [`ring_after_spill`] | `outbox.rs` `fifo_push`: a producer uses the ring whenever it has a free slot, even while frames wait in the overflow; a later frame then leaves before an earlier one (R30's order) | `loom_fifo.rs` `frames_leave_in_order_across_the_ring_and_the_overflow` |
//! | [`pop_skips_unwritten`] | `outbox.rs` `fifo_pop`: a ring slot claimed but not yet written is passed over for the overflow, whose frames are later than the ring's | `loom_fifo.rs` `a_slot_being_written_is_waited_for_not_passed_over` |
//! | [`head_before_take`] | `outbox.rs` `fifo_pop`: the ring's head is advanced before the slot is emptied, so the next lap's producer can store over a frame not yet taken; it is lost and a later one leaves in its place | `loom_fifo.rs` `frames_leave_in_order_across_the_ring_and_the_overflow` |
//!
//! To add one: a switch here and a row above, one `if mutants::name()` at
//! the step it breaks, and a line in `loom-tests/run.sh`'s `MUTANTS` list
//! naming the model that must catch it (`loom-tests/README.md`).

/// `hub.rs` `leave`: forget the emptied channel without marking it dead.
#[inline(always)]
pub(crate) const fn dead_channel() -> bool {
    cfg!(loom_mutant = "dead_channel")
}

/// `hub/membership.rs` `create`: the race's loser joins the winner's
/// channel without checking `dead`.
#[inline(always)]
pub(crate) const fn create_joins_dead() -> bool {
    cfg!(loom_mutant = "create_joins_dead")
}
/// `hub.rs` `join`: no re-check of the client's `closed` under `subs`.
#[inline(always)]
pub(crate) const fn ghost() -> bool {
    cfg!(loom_mutant = "ghost")
}

/// `hub.rs` `join`: a join that finds its client closed leaves the channel
/// it created in the table.
#[inline(always)]
pub(crate) const fn empty_channel() -> bool {
    cfg!(loom_mutant = "empty_channel")
}

/// `hub.rs` `join`: the presence fan-out and hooks run after the channel
/// lock is released.
#[inline(always)]
pub(crate) const fn presence_order() -> bool {
    cfg!(loom_mutant = "presence_order")
}

/// `hub.rs` `join`: the newcomer's slot is taken before its roster is
/// queued.
#[inline(always)]
pub(crate) const fn roster_late() -> bool {
    cfg!(loom_mutant = "roster_late")
}

/// `hub.rs` `register`: no re-check of the Hub's `closed` after the insert.
#[inline(always)]
pub(crate) const fn add_no_recheck() -> bool {
    cfg!(loom_mutant = "add_no_recheck")
}

/// `client.rs` `pop_frame`: frames are popped after close.
#[inline(always)]
pub(crate) const fn deliver_after_close() -> bool {
    cfg!(loom_mutant = "deliver_after_close")
}

/// `client.rs` `shut`: check, then set, instead of one swap.
#[inline(always)]
pub(crate) const fn double_close() -> bool {
    cfg!(loom_mutant = "double_close")
}

/// `client.rs` `enqueue`: the drop counter is bumped with a load and a
/// store.
#[inline(always)]
pub(crate) const fn lost_drop() -> bool {
    cfg!(loom_mutant = "lost_drop")
}

/// `client.rs` `send_reply`: a reply may be dropped like a broadcast.
#[inline(always)]
pub(crate) const fn reply_dropped() -> bool {
    cfg!(loom_mutant = "reply_dropped")
}

/// `outbox.rs` `push`: bound checked with a load, bytes added after the
/// push.
#[inline(always)]
pub(crate) const fn account_after_push() -> bool {
    cfg!(loom_mutant = "account_after_push")
}

/// `outbox.rs` `push`: `scheduled` set with a relaxed load and a store.
#[inline(always)]
pub(crate) const fn lost_wakeup() -> bool {
    cfg!(loom_mutant = "lost_wakeup")
}

/// `outbox.rs` `push`: the check of `scheduled` before the swap is
/// `Relaxed`.
#[inline(always)]
pub(crate) const fn wakeup_relaxed() -> bool {
    cfg!(loom_mutant = "wakeup_relaxed")
}

/// `outbox.rs` `reserve`: reserve with a `fetch_add`, undo when over.
#[inline(always)]
pub(crate) const fn reserve_then_undo() -> bool {
    cfg!(loom_mutant = "reserve_then_undo")
}

/// `outbox.rs` `reserve`: refuse on the plainly loaded count.
#[inline(always)]
pub(crate) const fn refuse_on_stale_count() -> bool {
    cfg!(loom_mutant = "refuse_on_stale_count")
}

/// `outbox.rs` `reserve`: a store instead of the compare-and-swap.
#[inline(always)]
pub(crate) const fn reserve_not_atomic() -> bool {
    cfg!(loom_mutant = "reserve_not_atomic")
}

/// `outbox.rs` `over`: the bound ignores the bytes the transport holds
/// unsent.
#[inline(always)]
pub(crate) const fn bound_ignores_unsent() -> bool {
    cfg!(loom_mutant = "bound_ignores_unsent")
}

/// `outbox.rs` `fifo_push`: the ring is used while frames are spilled.
#[inline(always)]
pub(crate) const fn ring_after_spill() -> bool {
    cfg!(loom_mutant = "ring_after_spill")
}

/// `outbox.rs` `fifo_pop`: a claimed but unwritten slot is passed over.
#[inline(always)]
pub(crate) const fn pop_skips_unwritten() -> bool {
    cfg!(loom_mutant = "pop_skips_unwritten")
}

/// `outbox.rs` `fifo_pop`: the head is advanced before the take.
#[inline(always)]
pub(crate) const fn head_before_take() -> bool {
    cfg!(loom_mutant = "head_before_take")
}
