//! One webhook event, in Pusher's wire format (PUSHER.md, Webhooks).

use serde::Serialize;

/// One webhook event, serialised as Pusher's (PUSHER.md, Webhooks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub(crate) enum WebhookEvent {
    /// The channel got its first subscriber.
    ChannelOccupied { channel: String },
    /// The channel lost its last subscriber.
    ChannelVacated { channel: String },
    /// A user's first connection joined the presence channel.
    MemberAdded { channel: String, user_id: String },
    /// A user's last connection left the presence channel.
    MemberRemoved { channel: String, user_id: String },
    /// A client event.
    ClientEvent {
        channel: String,
        event: String,
        data: String,
        socket_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
    },
    /// A subscriber of a cache channel found no cached event.
    CacheMiss { channel: String },
}

impl WebhookEvent {
    /// The event's `name`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::ChannelOccupied { .. } => "channel_occupied",
            Self::ChannelVacated { .. } => "channel_vacated",
            Self::MemberAdded { .. } => "member_added",
            Self::MemberRemoved { .. } => "member_removed",
            Self::ClientEvent { .. } => "client_event",
            Self::CacheMiss { .. } => "cache_miss",
        }
    }

    /// The event's channel.
    pub(crate) fn channel(&self) -> &str {
        match self {
            Self::ChannelOccupied { channel }
            | Self::ChannelVacated { channel }
            | Self::MemberAdded { channel, .. }
            | Self::MemberRemoved { channel, .. }
            | Self::ClientEvent { channel, .. }
            | Self::CacheMiss { channel } => channel,
        }
    }

    /// `channel_occupied` or `channel_vacated`.
    pub(crate) fn occupancy(channel: &str, occupied: bool) -> Self {
        let channel = channel.to_owned();
        if occupied {
            Self::ChannelOccupied { channel }
        } else {
            Self::ChannelVacated { channel }
        }
    }

    /// `member_added` or `member_removed`.
    pub(crate) fn membership(channel: &str, user_id: &str, joined: bool) -> Self {
        let (channel, user_id) = (channel.to_owned(), user_id.to_owned());
        if joined {
            Self::MemberAdded { channel, user_id }
        } else {
            Self::MemberRemoved { channel, user_id }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_as_pushers() {
        let e = WebhookEvent::occupancy("c", true);
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"name":"channel_occupied","channel":"c"}"#
        );
        let e = WebhookEvent::membership("presence-c", "u", false);
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"name":"member_removed","channel":"presence-c","user_id":"u"}"#
        );
        let e = WebhookEvent::ClientEvent {
            channel: "private-c".into(),
            event: "client-x".into(),
            data: "{}".into(),
            socket_id: "1.2".into(),
            user_id: None,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"name":"client_event","channel":"private-c","event":"client-x","data":"{}","socket_id":"1.2"}"#
        );
        let e = WebhookEvent::CacheMiss {
            channel: "cache-c".into(),
        };
        assert_eq!(e.name(), "cache_miss");
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"name":"cache_miss","channel":"cache-c"}"#
        );
    }
}
