//! The Pusher Channels protocol v7 on the wire: parsing client messages
//! and building server frames.
//!
//! Input is parsed once, at the edge, into a [`ClientMessage`]; everything
//! after works on typed values. Server→client `data` is a JSON-encoded
//! string ("double encoding"), except in `pusher:error`, `pusher:ping` and
//! `pusher:pong` whose `data` is an object, and in forwarded client events,
//! whose `data` is relayed exactly as the sender wrote it.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::json;

/// The Pusher error and close codes this server sends (PUSHER.md).
pub mod code {
    /// App does not exist (unknown key).
    pub const APP_NOT_FOUND: u16 = 4001;
    /// App disabled.
    pub const APP_DISABLED: u16 = 4003;
    /// Over the app's connection quota.
    pub const OVER_QUOTA: u16 = 4004;
    /// Path not found.
    pub const PATH_NOT_FOUND: u16 = 4005;
    /// Unsupported protocol version.
    pub const UNSUPPORTED_PROTOCOL: u16 = 4007;
    /// No protocol version supplied.
    pub const NO_PROTOCOL: u16 = 4008;
    /// Unauthorized (terminated by the app).
    pub const UNAUTHORIZED: u16 = 4009;
    /// Over capacity: reconnect after a backoff.
    pub const OVER_CAPACITY: u16 = 4100;
    /// Generic reconnect-at-once (server restarting).
    pub const RESTARTING: u16 = 4200;
    /// Pong not received in time.
    pub const PONG_TIMEOUT: u16 = 4201;
    /// Closed for inactivity.
    pub const INACTIVITY: u16 = 4202;
    /// Client event rate limit exceeded.
    pub const CLIENT_EVENT_RATE_LIMIT: u16 = 4301;
    /// A presence member or sign-in over a size limit (`max_user_id_length`,
    /// `max_member_size`): the 4300 range ("other"), as Soketi answers an
    /// oversized member. Retrying the same request cannot succeed.
    pub const OVER_LIMIT: u16 = 4301;
}

/// The protocol version this server speaks.
pub const PROTOCOL_VERSION: u32 = 7;

/// `{"event":"pusher:ping","data":{}}`.
pub const PING: &str = r#"{"event":"pusher:ping","data":{}}"#;
/// `{"event":"pusher:pong","data":{}}`.
pub const PONG: &str = r#"{"event":"pusher:pong","data":{}}"#;

/// A message from a client, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// `pusher:ping`.
    Ping,
    /// `pusher:pong` (answer to our ping).
    Pong,
    /// `pusher:subscribe`.
    Subscribe {
        /// The channel.
        channel: String,
        /// `KEY:SIG` for private and presence channels.
        auth: Option<String>,
        /// The exact `channel_data` string (presence).
        channel_data: Option<String>,
    },
    /// `pusher:unsubscribe`.
    Unsubscribe {
        /// The channel.
        channel: String,
    },
    /// `pusher:signin`.
    Signin {
        /// `KEY:SIG` over `socket_id::user::user_data`.
        auth: String,
        /// The exact `user_data` string.
        user_data: String,
    },
    /// A `client-*` event.
    ClientEvent {
        /// The event name (starts with `client-`).
        event: String,
        /// The channel.
        channel: String,
        /// `data` exactly as sent (raw JSON), `null` if absent.
        data: String,
    },
    /// Any other `pusher:*` event: ignored.
    OtherPusher(String),
}

/// Why a client message was refused before dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// Not a JSON object with a string `event`.
    InvalidJson,
    /// A known event with a missing or mistyped field.
    BadData(&'static str),
    /// A `pusher_internal:*` event from a client.
    Internal,
    /// An event that is neither `pusher:*` nor `client-*`.
    UnknownEvent(String),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidJson => f.write_str("Invalid JSON message"),
            Self::BadData(what) => write!(f, "Invalid message data: {what}"),
            Self::Internal => f.write_str("Clients may not send pusher_internal events"),
            Self::UnknownEvent(e) => write!(f, "Unsupported event: {e}"),
        }
    }
}

impl std::error::Error for ParseError {}

#[derive(Deserialize)]
struct Envelope<'a> {
    event: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct SubscribeData {
    channel: String,
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    channel_data: Option<String>,
}

#[derive(Deserialize)]
struct SigninData {
    auth: String,
    user_data: String,
}

/// Parses `data` that is an object, or a JSON string holding an object
/// (some clients double-encode what they send).
fn parse_data<'a, T: Deserialize<'a>>(raw: Option<&'a RawValue>) -> Option<T> {
    let raw = raw?;
    if let Ok(v) = serde_json::from_str::<T>(raw.get()) {
        return Some(v);
    }
    let inner: String = serde_json::from_str(raw.get()).ok()?;
    // Owned re-parse: the inner text does not live as long as `raw`.
    let value: serde_json::Value = serde_json::from_str(&inner).ok()?;
    T::deserialize(value).ok()
}

/// Parses one client message.
///
/// # Errors
///
/// [`ParseError`] for anything that is not a well-formed message.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, ParseError> {
    let env: Envelope<'_> = serde_json::from_str(text).map_err(|_| ParseError::InvalidJson)?;
    let event = env.event;
    match event.as_str() {
        "pusher:ping" => Ok(ClientMessage::Ping),
        "pusher:pong" => Ok(ClientMessage::Pong),
        "pusher:subscribe" => {
            let d: SubscribeData =
                parse_data(env.data).ok_or(ParseError::BadData("subscribe needs data.channel"))?;
            Ok(ClientMessage::Subscribe {
                channel: d.channel,
                auth: d.auth,
                channel_data: d.channel_data,
            })
        }
        "pusher:unsubscribe" => {
            let d: SubscribeData = parse_data(env.data)
                .ok_or(ParseError::BadData("unsubscribe needs data.channel"))?;
            Ok(ClientMessage::Unsubscribe { channel: d.channel })
        }
        "pusher:signin" => {
            let d: SigninData = parse_data(env.data).ok_or(ParseError::BadData(
                "signin needs data.auth and data.user_data",
            ))?;
            Ok(ClientMessage::Signin {
                auth: d.auth,
                user_data: d.user_data,
            })
        }
        e if e.starts_with("pusher_internal:") => Err(ParseError::Internal),
        e if e.starts_with("pusher:") => Ok(ClientMessage::OtherPusher(event)),
        e if e.starts_with("client-") => {
            let channel = env
                .channel
                .ok_or(ParseError::BadData("client events need a channel"))?;
            let data = env
                .data
                .map_or_else(|| "null".to_owned(), |d| d.get().to_owned());
            Ok(ClientMessage::ClientEvent {
                event,
                channel,
                data,
            })
        }
        _ => Err(ParseError::UnknownEvent(event)),
    }
}

/// A frame `{"event":E,"channel":C,"data":"<data as a JSON string>"}`;
/// `channel` is omitted when `None`.
pub fn event_frame(event: &str, channel: Option<&str>, data: &str) -> String {
    let mut out = String::with_capacity(40 + event.len() + data.len() * 9 / 8);
    out.push_str("{\"event\":");
    json::push_str(&mut out, event);
    if let Some(channel) = channel {
        out.push_str(",\"channel\":");
        json::push_str(&mut out, channel);
    }
    out.push_str(",\"data\":");
    json::push_str(&mut out, data);
    out.push('}');
    out
}

/// `pusher:connection_established` for this socket.
pub fn connection_established(socket_id: &str, activity_timeout: u64) -> String {
    let mut data = String::from("{\"socket_id\":");
    json::push_str(&mut data, socket_id);
    data.push_str(&format!(",\"activity_timeout\":{activity_timeout}}}"));
    event_frame("pusher:connection_established", None, &data)
}

/// `pusher:error` with `data` as an object; `code` is `null` when `None`.
pub fn error_frame(message: &str, code: Option<u16>) -> String {
    let mut out = String::from("{\"event\":\"pusher:error\",\"data\":{\"message\":");
    json::push_str(&mut out, message);
    match code {
        Some(c) => out.push_str(&format!(",\"code\":{c}}}}}")),
        None => out.push_str(",\"code\":null}}"),
    }
    out
}

/// `pusher:subscription_error` for `channel`.
pub fn subscription_error(channel: &str, kind: &str, error: &str, status: u16) -> String {
    let mut data = String::from("{\"type\":");
    json::push_str(&mut data, kind);
    data.push_str(",\"error\":");
    json::push_str(&mut data, error);
    data.push_str(&format!(",\"status\":{status}}}"));
    event_frame("pusher:subscription_error", Some(channel), &data)
}

/// `pusher:signin_success` carrying the signed `user_data` string.
pub fn signin_success(user_data: &str) -> String {
    let mut data = String::from("{\"user_data\":");
    json::push_str(&mut data, user_data);
    data.push('}');
    event_frame("pusher:signin_success", None, &data)
}

/// A client event as relayed to the other subscribers: `data` exactly as
/// the sender wrote it, `user_id` on presence channels.
pub fn client_event_frame(event: &str, channel: &str, data: &str, user_id: Option<&str>) -> String {
    let mut out = String::with_capacity(48 + event.len() + channel.len() + data.len());
    out.push_str("{\"event\":");
    json::push_str(&mut out, event);
    out.push_str(",\"channel\":");
    json::push_str(&mut out, channel);
    out.push_str(",\"data\":");
    out.push_str(data);
    if let Some(user_id) = user_id {
        out.push_str(",\"user_id\":");
        json::push_str(&mut out, user_id);
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn v(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn connection_established_double_encodes_data() {
        let f = v(&connection_established("12.34", 120));
        assert_eq!(f["event"], "pusher:connection_established");
        let data = v(f["data"].as_str().unwrap());
        assert_eq!(data["socket_id"], "12.34");
        assert_eq!(data["activity_timeout"], 120);
    }

    #[test]
    fn error_frame_data_is_an_object() {
        let f = v(&error_frame("nope \"x\"", Some(4301)));
        assert_eq!(f["data"]["code"], 4301);
        assert_eq!(f["data"]["message"], "nope \"x\"");
        assert!(v(&error_frame("m", None))["data"]["code"].is_null());
    }

    #[test]
    fn subscribe_accepts_object_and_string_data() {
        let a = parse_client_message(
            r#"{"event":"pusher:subscribe","data":{"channel":"private-a","auth":"k:s"}}"#,
        )
        .unwrap();
        let b = parse_client_message(
            r#"{"event":"pusher:subscribe","data":"{\"channel\":\"private-a\",\"auth\":\"k:s\"}"}"#,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a,
            ClientMessage::Subscribe {
                channel: "private-a".into(),
                auth: Some("k:s".into()),
                channel_data: None
            }
        );
    }

    #[test]
    fn client_event_keeps_data_verbatim() {
        let m = parse_client_message(
            r#"{"event":"client-typing","channel":"private-a","data":{"b":  1}}"#,
        )
        .unwrap();
        let ClientMessage::ClientEvent { data, .. } = &m else {
            panic!("{m:?}")
        };
        assert_eq!(data, r#"{"b":  1}"#);
        let f = client_event_frame("client-typing", "private-a", data, Some("u1"));
        assert_eq!(
            f,
            r#"{"event":"client-typing","channel":"private-a","data":{"b":  1},"user_id":"u1"}"#
        );
    }

    #[test]
    fn bad_messages_are_classified() {
        assert_eq!(parse_client_message("nope"), Err(ParseError::InvalidJson));
        assert_eq!(parse_client_message("[1]"), Err(ParseError::InvalidJson));
        assert_eq!(
            parse_client_message(r#"{"event":"pusher_internal:member_added"}"#),
            Err(ParseError::Internal)
        );
        assert!(matches!(
            parse_client_message(r#"{"event":"pusher:subscribe","data":{}}"#),
            Err(ParseError::BadData(_))
        ));
        assert!(matches!(
            parse_client_message(r#"{"event":"hello"}"#),
            Err(ParseError::UnknownEvent(_))
        ));
        assert_eq!(
            parse_client_message(r#"{"event":"pusher:cache_miss"}"#),
            Ok(ClientMessage::OtherPusher("pusher:cache_miss".into()))
        );
    }
}
