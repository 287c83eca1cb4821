//! `POST /apps/{id}/events` and `/batch_events`: checked, encoded once
//! per channel, published through the bus.
//!
//! An event names 1..=[`MAX_CHANNELS_PER_EVENT`] valid channels, a name
//! of at most [`MAX_EVENT_NAME`] bytes and data within the app's
//! `max_event_size` (413 past it); a batch holds at most [`MAX_BATCH`]
//! events and is refused whole if any is bad. `info` asks for this node's
//! channel counts in the answer.

use realtime_mio::HttpResponse;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::channels::event_info;
use super::{bad_request, ApiResult};
use crate::app::App;
use crate::bus::Publisher;
use crate::channel::{self, ChannelKind};
use crate::protocol;

/// Most channels one event may name.
pub const MAX_CHANNELS_PER_EVENT: usize = 100;
/// Most events in one batch.
pub const MAX_BATCH: usize = 10;
/// Longest event name.
pub const MAX_EVENT_NAME: usize = 200;

#[derive(Deserialize)]
struct EventBody {
    name: Option<String>,
    data: Option<Value>,
    channels: Option<Vec<String>>,
    channel: Option<String>,
    socket_id: Option<String>,
    /// `subscription_count` and/or `user_count`: answer with channel info.
    info: Option<String>,
}

#[derive(Deserialize)]
struct BatchBody {
    batch: Vec<EventBody>,
}

/// An event checked and ready to publish.
struct Checked {
    name: String,
    data: String,
    channels: Vec<String>,
    socket_id: Option<String>,
    info: Vec<String>,
}

fn valid_socket_id(s: &str) -> bool {
    s.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && a.bytes().all(|c| c.is_ascii_digit())
            && b.bytes().all(|c| c.is_ascii_digit())
    })
}

fn check_event(app: &App, e: EventBody, batch: bool) -> Result<Checked, HttpResponse> {
    let name = e
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad_request("Missing event name"))?;
    if name.len() > MAX_EVENT_NAME {
        return Err(bad_request("Event name is longer than 200 characters"));
    }
    let channels = match (e.channels, e.channel) {
        (Some(cs), None) if !batch => cs,
        (None, Some(c)) => vec![c],
        (Some(_), Some(_)) => return Err(bad_request("Give channels or channel, not both")),
        (Some(_), None) => return Err(bad_request("Batch events name one channel")),
        (None, None) => return Err(bad_request("Missing channels")),
    };
    if channels.is_empty() {
        return Err(bad_request("Missing channels"));
    }
    if channels.len() > MAX_CHANNELS_PER_EVENT {
        return Err(bad_request("An event may name at most 100 channels"));
    }
    for c in &channels {
        if let Err(err) = channel::classify(c) {
            return Err(bad_request(format!("Invalid channel {c:?}: {err}")));
        }
    }
    let data = match e.data {
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => return Err(bad_request("Missing data")),
    };
    if data.len() > app.config().max_event_size {
        return Err(HttpResponse::text(
            413,
            format!(
                "Event data is larger than {} bytes",
                app.config().max_event_size
            ),
        ));
    }
    if let Some(s) = &e.socket_id {
        if !valid_socket_id(s) {
            return Err(bad_request("Invalid socket_id"));
        }
    }
    let info: Vec<String> = e
        .info
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect();
    if info.iter().any(|f| f == "user_count")
        && channels
            .iter()
            .any(|c| channel::classify(c) != Ok(ChannelKind::Presence))
    {
        return Err(bad_request(
            "info=user_count is only available for presence channels",
        ));
    }
    Ok(Checked {
        name,
        data,
        channels,
        socket_id: e.socket_id,
        info,
    })
}

fn publish(bus: &Publisher, app: &App, e: &Checked) {
    for ch in &e.channels {
        // Encoded once per channel (the channel is part of the frame);
        // every recipient shares it.
        let frame = protocol::event_frame(&e.name, Some(ch), &e.data);
        bus.publish(app, ch, &e.name, frame, e.socket_id.as_deref());
    }
}

/// `POST /apps/{id}/events`.
pub(crate) fn events(bus: &Publisher, app: &App, body: &[u8]) -> ApiResult {
    let e: EventBody =
        serde_json::from_slice(body).map_err(|e| bad_request(format!("Invalid JSON body: {e}")))?;
    let e = check_event(app, e, false)?;
    publish(bus, app, &e);
    if e.info.is_empty() {
        return Ok(HttpResponse::json(200, "{}"));
    }
    let channels: Map<String, Value> = e
        .channels
        .iter()
        .map(|c| (c.clone(), event_info(app, c, &e.info)))
        .collect();
    Ok(HttpResponse::json(
        200,
        json!({ "channels": channels }).to_string(),
    ))
}

/// `POST /apps/{id}/batch_events`.
pub(super) fn batch(bus: &Publisher, app: &App, body: &[u8]) -> ApiResult {
    let b: BatchBody =
        serde_json::from_slice(body).map_err(|e| bad_request(format!("Invalid JSON body: {e}")))?;
    if b.batch.len() > MAX_BATCH {
        return Err(bad_request("A batch may hold at most 10 events"));
    }
    let checked = b
        .batch
        .into_iter()
        .map(|e| check_event(app, e, true))
        .collect::<Result<Vec<_>, _>>()?;
    for e in &checked {
        publish(bus, app, e);
    }
    if checked.iter().all(|e| e.info.is_empty()) {
        return Ok(HttpResponse::json(200, "{}"));
    }
    let batch: Vec<Value> = checked
        .iter()
        .map(|e| event_info(app, &e.channels[0], &e.info))
        .collect();
    Ok(HttpResponse::json(
        200,
        json!({ "batch": batch }).to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_ids_are_two_decimal_numbers() {
        assert!(valid_socket_id("123.456"));
        for bad in ["123", ".1", "1.", "a.1", "1.2.3", ""] {
            assert!(!valid_socket_id(bad), "{bad}");
        }
    }
}
