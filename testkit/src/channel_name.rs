//! The `channel_name` oracle: any bytes (lossy UTF-8) as a channel name.
//! `classify_channel` agrees with a byte-prefix reference (R5), and a Hub
//! treats the channel accordingly: the authorizer is asked exactly for
//! private and presence joins, with that type; only presence joins send a
//! roster; the channel leaves the table with its one member.

use std::sync::Arc;

use bytes::Bytes;
use realtime::{classify_channel, AuthRequest, AuthResult, ChannelType, Hub, Member};

use crate::probe::{lock, reference_class, Probe, Recorder};

/// Any bytes (lossy UTF-8) as a channel name: `classify_channel` agrees with
/// a byte-prefix reference (R5), and a Hub treats the channel accordingly:
/// the authorizer is asked exactly for private and presence channels, with
/// that type, and only presence joins send a roster.
pub(crate) fn run(data: &[u8]) {
    let name = String::from_utf8_lossy(data);
    let want = reference_class(name.as_bytes());
    assert_eq!(classify_channel(&name), want, "{name:?}");

    let rec = Arc::new(Recorder::default());
    let hub = {
        let rec = rec.clone();
        Hub::builder()
            .authorizer(move |r: &AuthRequest| {
                lock(&rec.auth_calls).push((
                    r.channel.clone(),
                    r.channel_type,
                    r.client_id.clone(),
                ));
                AuthResult::allow(Member::new("u", ""))
            })
            .build()
    };
    let probe = Arc::new(Probe::default());
    let Ok(client) = hub.attach(probe, ()) else {
        panic!("attach to an open Hub failed");
    };
    assert_eq!(hub.subscribe(&client, &name), Ok(()), "{name:?}");
    let calls = std::mem::take(&mut *lock(&rec.auth_calls));
    match want {
        ChannelType::Public => assert!(calls.is_empty(), "{name:?}: public join authorized"),
        _ => assert_eq!(calls, [(name.to_string(), want, client.id().to_owned())]),
    }
    let mut frames = 0;
    while client.pop_frame().is_some() {
        frames += 1;
    }
    let expected = if want == ChannelType::Presence { 2 } else { 0 };
    assert_eq!(frames, expected, "{name:?}: frames on join");
    assert_eq!(
        hub.presence(&name).len(),
        usize::from(want == ChannelType::Presence)
    );
    assert_eq!(hub.channel_count(&name), 1);
    assert_eq!(hub.broadcast(&name, "x"), Ok(()));
    assert_eq!(
        client.pop_frame().map(|f| f.payload().clone()),
        Some(Bytes::from_static(b"x"))
    );
    assert_eq!(hub.unsubscribe(&client, &name), Ok(()));
    assert_eq!(hub.channel_count(&name), 0);
    assert!(hub.channels().is_empty());
    assert_eq!(
        hub.channel_table_len(),
        0,
        "{name:?}: channel left in the table"
    );
}
