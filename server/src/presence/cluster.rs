//! The presence encoder of a cluster node: Pusher's frames, with the
//! cluster roster for newcomers and local joins/leaves that are not news
//! to the cluster turned into a no-op frame.
//!
//! The Hub always sends the frame its encoder returns to every local
//! member; an encoder cannot say "send nothing". Until the core's
//! `PresenceEncoder::member_added`/`member_removed` may return `None`, a
//! join or leave that is not news cluster-wide (the user is also present on
//! another node) becomes [`NOOP_EVENT`], which pusher-js ignores (an
//! unknown `pusher_internal:` event on a channel).

use std::sync::Arc;

use realtime::{ChannelType, Frame, Member, PresenceEncoder};

use super::roster::ClusterRoster;
use super::PusherPresenceEncoder;
use crate::protocol::event_frame;

/// The event name of the no-op frame.
pub const NOOP_EVENT: &str = "pusher_internal:presence_noop";

/// See the module docs.
#[derive(Debug, Clone)]
pub struct ClusterPresenceEncoder {
    roster: Arc<ClusterRoster>,
}

impl ClusterPresenceEncoder {
    /// An encoder reading `roster`.
    pub fn new(roster: Arc<ClusterRoster>) -> Self {
        Self { roster }
    }

    fn noop(channel: &str) -> Frame {
        Frame::from_string(event_frame(NOOP_EVENT, Some(channel), "{}"))
    }
}

impl PresenceEncoder for ClusterPresenceEncoder {
    fn subscription_succeeded(
        &self,
        channel: &str,
        roster: &[&Member],
        newcomer: &Member,
    ) -> Frame {
        let cluster = self.roster.members(channel);
        let mut all: Vec<&Member> = roster.to_vec();
        for m in &cluster {
            if m.id != newcomer.id && !all.iter().any(|r| r.id == m.id) {
                all.push(m);
            }
        }
        PusherPresenceEncoder.subscription_succeeded(channel, &all, newcomer)
    }

    fn member_added(&self, channel: &str, member: &Member) -> Frame {
        if self.roster.elsewhere(channel, &member.id) {
            return Self::noop(channel);
        }
        PusherPresenceEncoder.member_added(channel, member)
    }

    fn member_removed(&self, channel: &str, member: &Member) -> Frame {
        if self.roster.elsewhere(channel, &member.id) {
            return Self::noop(channel);
        }
        PusherPresenceEncoder.member_removed(channel, member)
    }

    fn newcomer_sees_own_join(&self) -> bool {
        false
    }

    fn subscribed(&self, channel: &str, kind: ChannelType) -> Option<Frame> {
        PusherPresenceEncoder.subscribed(channel, kind)
    }
}
