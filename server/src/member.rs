//! Presence identities: `channel_data` of a presence subscribe and
//! `user_data` of a sign-in, parsed keeping `user_info` byte for byte as
//! signed, and the limits on both (`max_user_id_length`,
//! `max_member_size`).

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::config::ClientLimits;

/// A presence member as signed in `channel_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelData {
    /// `user_id`, as a string (numbers are spelled as sent).
    pub user_id: String,
    /// `user_info` JSON as sent, empty if absent.
    pub user_info: String,
}

#[derive(Deserialize)]
struct RawChannelData<'a> {
    #[serde(borrow)]
    user_id: &'a RawValue,
    #[serde(borrow, default)]
    user_info: Option<&'a RawValue>,
}

/// Parses `channel_data`: a JSON object with a string or number
/// `user_id` (required, non-empty) and any `user_info`.
pub fn parse_channel_data(text: &str) -> Option<ChannelData> {
    let raw: RawChannelData<'_> = serde_json::from_str(text).ok()?;
    let user_id = match serde_json::from_str::<serde_json::Value>(raw.user_id.get()).ok()? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    if user_id.is_empty() {
        return None;
    }
    Some(ChannelData {
        user_id,
        user_info: raw
            .user_info
            .map(|r| r.get().to_owned())
            .unwrap_or_default(),
    })
}

/// Parses sign-in `user_data`: a JSON object with a non-empty string or
/// number `id` and any `user_info` (kept as sent), as a [`ChannelData`]
/// (`user_id` is the `id`).
pub fn parse_user_data(text: &str) -> Option<ChannelData> {
    #[derive(Deserialize)]
    struct RawUserData<'a> {
        #[serde(borrow)]
        id: &'a RawValue,
        #[serde(borrow, default)]
        user_info: Option<&'a RawValue>,
    }
    let raw: RawUserData<'_> = serde_json::from_str(text).ok()?;
    let id = match serde_json::from_str::<serde_json::Value>(raw.id.get()).ok()? {
        serde_json::Value::String(s) if !s.is_empty() => s,
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Some(ChannelData {
        user_id: id,
        user_info: raw
            .user_info
            .map(|r| r.get().to_owned())
            .unwrap_or_default(),
    })
}

/// A presence identity over one of the app's member limits (R35).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberLimit {
    /// `user_id` (or sign-in `id`) longer than `max_user_id_length`.
    UserIdLength {
        /// Its length, in characters.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// `user_info` larger than `max_member_size`.
    MemberSize {
        /// Its size, in bytes of the JSON as sent.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

impl MemberLimit {
    /// The limit's configuration name, which is also its counter label.
    pub fn name(&self) -> &'static str {
        match self {
            Self::UserIdLength { .. } => "max_user_id_length",
            Self::MemberSize { .. } => "max_member_size",
        }
    }
}

impl std::fmt::Display for MemberLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::UserIdLength { len, limit } => write!(
                f,
                "user_id is {len} characters long: at most {limit} are allowed (max_user_id_length)"
            ),
            Self::MemberSize { len, limit } => write!(
                f,
                "user_info is {len} bytes: presence member data is at most {limit} bytes (max_member_size)"
            ),
        }
    }
}

/// Checks a presence identity against `limits`: the user id in characters,
/// `user_info` in bytes of its JSON as sent (what rosters carry byte for
/// byte, R10).
///
/// # Errors
///
/// The first limit the identity is over.
pub fn check_member(limits: &ClientLimits, member: &ChannelData) -> Result<(), MemberLimit> {
    let len = member.user_id.chars().count();
    if len > limits.max_user_id_length {
        return Err(MemberLimit::UserIdLength {
            len,
            limit: limits.max_user_id_length,
        });
    }
    if member.user_info.len() > limits.max_member_size {
        return Err(MemberLimit::MemberSize {
            len: member.user_info.len(),
            limit: limits.max_member_size,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_data_needs_a_user_id_and_keeps_info_verbatim() {
        let cd = parse_channel_data(r#"{"user_id":7,"user_info":{"n":  "A"}}"#).unwrap();
        assert_eq!(cd.user_id, "7");
        assert_eq!(cd.user_info, r#"{"n":  "A"}"#);
        assert_eq!(
            parse_channel_data(r#"{"user_id":"u"}"#).unwrap().user_info,
            ""
        );
        assert!(parse_channel_data(r#"{"user_info":{}}"#).is_none());
        assert!(parse_channel_data(r#"{"user_id":""}"#).is_none());
        assert!(parse_channel_data(r#"{"user_id":[1]}"#).is_none());
        assert!(parse_channel_data("nope").is_none());
    }

    #[test]
    fn user_data_keeps_info_verbatim_and_needs_an_id() {
        let u = parse_user_data(r#"{"id":"u1","user_info":{"n":  1},"watchlist":[]}"#).unwrap();
        assert_eq!(
            (u.user_id.as_str(), u.user_info.as_str()),
            ("u1", r#"{"n":  1}"#)
        );
        assert_eq!(parse_user_data(r#"{"id":42}"#).unwrap().user_id, "42");
        assert!(parse_user_data(r#"{"id":""}"#).is_none());
        assert!(parse_user_data(r#"{"user_info":{}}"#).is_none());
    }

    #[test]
    fn member_limits_count_id_characters_and_info_bytes() {
        let limits = ClientLimits {
            max_user_id_length: 3,
            max_member_size: 4,
            ..ClientLimits::default()
        };
        let m = |id: &str, info: &str| ChannelData {
            user_id: id.into(),
            user_info: info.into(),
        };
        assert_eq!(
            check_member(&limits, &m("ééé", "[1,2]"))
                .unwrap_err()
                .name(),
            "max_member_size"
        );
        assert!(check_member(&limits, &m("ééé", "[12]")).is_ok());
        assert_eq!(
            check_member(&limits, &m("abcd", "")),
            Err(MemberLimit::UserIdLength { len: 4, limit: 3 })
        );
    }
}
