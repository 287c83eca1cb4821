//! Every address on the bus and every payload format, in one place.
//!
//! A bus event (`broadcasting::Event`) has a channel, a name and
//! opaque payload bytes, carried exactly by every driver (Redis included),
//! so everything a receiving node needs is packed into those three.
//!
//! # Published events
//!
//! - channel: `{app_id}/{channel}`: app ids never contain `/` (checked at
//!   start-up), so the first `/` splits them, and each app subscribes to
//!   its own prefix `{app_id}/`;
//! - name: the Pusher event name (informational: the frame carries it too);
//! - payload: `P1 {except_socket_id}\n{frame}`, where `frame` is the Pusher
//!   frame, encoded once by the publisher, that every node hands to its
//!   Hub unchanged, and `except_socket_id` (possibly empty) is the
//!   connection to skip (`socket_id` of the API, the sender of a client
//!   event), wherever in the cluster it lives.
//!
//! A payload without the `P1 ` mark comes from a foreign publisher; it is
//! taken as the event's `data` and wrapped into a Pusher frame on receipt.
//!
//! # Presence changes (cluster mode)
//!
//! - channel: `#presence/{app_id}/{channel}` (`#` cannot start an app id,
//!   so the two namespaces never meet);
//! - name: `join` or `leave`;
//! - payload: JSON `{"node","user","info"}`: the node where the user joined
//!   or left, the user id and (for a join) its `user_info` JSON as signed.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::protocol;

const MARK: &[u8] = b"P1 ";

/// The bus channel of `channel` in app `app_id`.
pub fn bus_channel(app_id: &str, channel: &str) -> String {
    format!("{app_id}/{channel}")
}

/// The bus prefix of every channel of `app_id`.
pub fn bus_prefix(app_id: &str) -> String {
    format!("{app_id}/")
}

/// Splits a bus channel into (app id, channel).
pub fn split_bus_channel(bus_channel: &str) -> Option<(&str, &str)> {
    bus_channel.split_once('/')
}

/// The bus prefix of every presence change, all apps.
pub const PRESENCE_PREFIX: &str = "#presence/";

/// The bus channel of presence changes of `channel` in app `app_id`.
pub fn presence_channel(app_id: &str, channel: &str) -> String {
    format!("{PRESENCE_PREFIX}{app_id}/{channel}")
}

/// Splits a presence bus channel into (app id, channel).
pub fn split_presence_channel(bus_channel: &str) -> Option<(&str, &str)> {
    bus_channel.strip_prefix(PRESENCE_PREFIX)?.split_once('/')
}

/// A user's first join or last leave on one node, as other nodes hear it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceChange {
    /// The node where it happened.
    pub node: String,
    /// The user id.
    pub user: String,
    /// The `user_info` JSON of a join; empty for a leave.
    #[serde(default)]
    pub info: String,
}

impl PresenceChange {
    /// The event name of a join (`true`) or a leave.
    pub fn name(joined: bool) -> &'static str {
        if joined {
            "join"
        } else {
            "leave"
        }
    }

    /// Whether an event name is a join.
    pub fn is_join(name: &str) -> bool {
        name == "join"
    }
}

/// Packs a frame and the socket id to exclude.
pub fn encode(frame: &str, except: Option<&str>) -> Bytes {
    let except = except.unwrap_or("");
    let mut out = Vec::with_capacity(MARK.len() + except.len() + 1 + frame.len());
    out.extend_from_slice(MARK);
    out.extend_from_slice(except.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(frame.as_bytes());
    Bytes::from(out)
}

/// A decoded bus payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The Pusher frame to deliver.
    pub frame: String,
    /// The socket id to skip.
    pub except: Option<String>,
}

/// Unpacks a payload received on `channel` for event `name`. Foreign
/// payloads become the `data` of a frame built here; `None` if the payload
/// is marked but broken (not UTF-8, no newline).
pub fn decode(channel: &str, name: &str, payload: &[u8]) -> Option<Decoded> {
    match payload.strip_prefix(MARK) {
        Some(rest) => {
            let nl = rest.iter().position(|&b| b == b'\n')?;
            let except = std::str::from_utf8(&rest[..nl]).ok()?;
            let frame = std::str::from_utf8(&rest[nl + 1..]).ok()?;
            Some(Decoded {
                frame: frame.to_owned(),
                except: (!except.is_empty()).then(|| except.to_owned()),
            })
        }
        None => Some(Decoded {
            frame: protocol::event_frame(name, Some(channel), &String::from_utf8_lossy(payload)),
            except: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let f = r#"{"event":"e","channel":"c","data":"x\ny"}"#;
        let p = encode(f, Some("1.2"));
        assert_eq!(
            decode("c", "e", &p),
            Some(Decoded {
                frame: f.into(),
                except: Some("1.2".into())
            })
        );
        assert_eq!(decode("c", "e", &encode(f, None)).unwrap().except, None);
        assert_eq!(decode("c", "e", b"P1 no-newline"), None);
        assert_eq!(
            split_bus_channel(&bus_channel("app-1", "private-x")),
            Some(("app-1", "private-x"))
        );
    }

    #[test]
    fn presence_addresses_stay_apart_from_event_addresses() {
        let c = presence_channel("1", "presence-room/a");
        assert_eq!(split_presence_channel(&c), Some(("1", "presence-room/a")));
        assert!(!c.starts_with(&bus_prefix("1")));
        assert_eq!(split_presence_channel(&bus_channel("1", "x")), None);
    }

    #[test]
    fn foreign_payloads_become_event_data() {
        let d = decode("orders", "created", br#"{"id":1}"#).unwrap();
        assert_eq!(
            d.frame,
            r#"{"event":"created","channel":"orders","data":"{\"id\":1}"}"#
        );
    }
}
