//! Channel names: validation and the Pusher channel kinds.
//!
//! Pusher names are at most 164 characters of `[A-Za-z0-9_\-=@,.;]`; the
//! kind follows from the prefix. `#server-to-user-{id}` is the one name
//! outside that alphabet: the per-user channel of `pusher:signin`, which
//! only the signed-in user may join.

/// Maximum channel-name length (PUSHER.md).
pub const MAX_CHANNEL_NAME: usize = 164;

/// The prefix of a signed-in user's delivery channel.
pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

/// What a channel is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// No authorization.
    Public,
    /// `private-…`: signed joins, client events allowed.
    Private,
    /// `private-encrypted-…`: signed joins, no client events (the server
    /// cannot read the payloads; end-to-end encrypted by the clients).
    PrivateEncrypted,
    /// `presence-…`: signed joins with `channel_data`, a per-user roster.
    Presence,
    /// `#server-to-user-{id}`: the signed-in user's own channel.
    ServerToUser,
}

impl ChannelKind {
    /// Whether `client-*` events may be sent on it.
    pub fn allows_client_events(self) -> bool {
        matches!(self, Self::Private | Self::Presence)
    }
}

/// Why a name is not a valid channel name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    /// Empty.
    Empty,
    /// Longer than [`MAX_CHANNEL_NAME`].
    TooLong,
    /// A character outside `[A-Za-z0-9_\-=@,.;]`.
    BadCharacter,
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Empty => "channel name is empty",
            Self::TooLong => "channel name is longer than 164 characters",
            Self::BadCharacter => "channel name may only contain A-Za-z0-9_-=@,.;",
        })
    }
}

impl std::error::Error for NameError {}

fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'=' | b'@' | b',' | b'.' | b';')
}

/// The prefixes of cache channels (PUSHER.md, "Cache channels"). Each is a
/// channel of its base kind (`private-cache-x` is private, and so on) whose
/// last event is kept for new subscribers (`cache/`).
pub const CACHE_PREFIXES: [&str; 4] = [
    "cache-",
    "private-cache-",
    "private-encrypted-cache-",
    "presence-cache-",
];

/// Whether `name` is a cache channel.
pub fn is_cache(name: &str) -> bool {
    CACHE_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Validates `name` and returns its kind.
///
/// # Errors
///
/// [`NameError`] for an empty, too long or badly spelled name.
pub fn classify(name: &str) -> Result<ChannelKind, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_CHANNEL_NAME {
        return Err(NameError::TooLong);
    }
    if let Some(user) = name.strip_prefix(SERVER_TO_USER_PREFIX) {
        if user.is_empty() || !user.bytes().all(allowed) {
            return Err(NameError::BadCharacter);
        }
        return Ok(ChannelKind::ServerToUser);
    }
    if !name.bytes().all(allowed) {
        return Err(NameError::BadCharacter);
    }
    Ok(if name.starts_with("private-encrypted-") {
        ChannelKind::PrivateEncrypted
    } else if name.starts_with("private-") {
        ChannelKind::Private
    } else if name.starts_with("presence-") {
        ChannelKind::Presence
    } else {
        ChannelKind::Public
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_classify_by_prefix() {
        assert_eq!(classify("orders"), Ok(ChannelKind::Public));
        assert_eq!(
            classify("private-encrypted-x"),
            Ok(ChannelKind::PrivateEncrypted)
        );
        assert_eq!(classify("presence-room.1"), Ok(ChannelKind::Presence));
        assert_eq!(
            classify("#server-to-user-42"),
            Ok(ChannelKind::ServerToUser)
        );
        assert!(classify("a b").is_err());
    }

    #[test]
    fn names_are_limited_to_164_characters_of_the_alphabet() {
        assert_eq!(classify(&"a".repeat(164)), Ok(ChannelKind::Public));
        assert_eq!(classify(&"a".repeat(165)), Err(NameError::TooLong));
        assert_eq!(classify(""), Err(NameError::Empty));
        for bad in [
            "a b",
            "a/b",
            "é",
            "a#b",
            "a:b",
            "#server-to-user-",
            "#server-to-user-a b",
        ] {
            assert!(classify(bad).is_err(), "{bad}");
        }
        assert_eq!(classify("A-z_0=9@,.;"), Ok(ChannelKind::Public));
    }

    #[test]
    fn cache_channels_keep_their_base_kind() {
        assert_eq!(classify("cache-x"), Ok(ChannelKind::Public));
        assert_eq!(classify("private-cache-x"), Ok(ChannelKind::Private));
        assert_eq!(
            classify("private-encrypted-cache-x"),
            Ok(ChannelKind::PrivateEncrypted)
        );
        assert_eq!(classify("presence-cache-x"), Ok(ChannelKind::Presence));
        for c in [
            "cache-x",
            "private-cache-x",
            "private-encrypted-cache-x",
            "presence-cache-x",
        ] {
            assert!(is_cache(c), "{c}");
        }
        for c in ["cache", "news", "private-x", "presence-cachex", "x-cache-y"] {
            assert!(!is_cache(c), "{c}");
        }
    }

    #[test]
    fn kinds_follow_prefixes() {
        assert_eq!(classify("private-x"), Ok(ChannelKind::Private));
        assert_eq!(classify("presence"), Ok(ChannelKind::Public));
        assert!(ChannelKind::Private.allows_client_events());
        assert!(!ChannelKind::PrivateEncrypted.allows_client_events());
    }
}
