//! Delivery: broadcasts to a channel's subscribers (R13) and frames to one
//! client (R19). A broadcast takes no lock: it loads the channel from the
//! table and walks its slots (`channel.rs`).

use super::Hub;
use crate::channel::Slots;
use crate::client::{Client, ClientShared, Enqueued};
use crate::error::{Error, Result};
use crate::message::{Frame, IntoPayload};
use crate::sync::Arc;

impl Hub {
    /// Sends a text frame to every subscriber of `channel` (R13). Unknown
    /// channels are a no-op.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after close; [`Error::InvalidUtf8`].
    pub fn broadcast(&self, channel: &str, payload: impl IntoPayload) -> Result<()> {
        self.check_open()?;
        self.broadcast_frame(channel, Frame::text(payload)?, None)
    }

    /// Sends a binary frame to every subscriber of `channel`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after close.
    pub fn broadcast_binary(&self, channel: &str, payload: impl IntoPayload) -> Result<()> {
        self.broadcast_frame(channel, Frame::binary(payload), None)
    }

    /// Sends a text frame to every subscriber of `channel` but `except`
    /// (Echo's `toOthers`).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after close; [`Error::InvalidUtf8`].
    pub fn broadcast_except(
        &self,
        channel: &str,
        payload: impl IntoPayload,
        except: &Client,
    ) -> Result<()> {
        self.check_open()?;
        self.broadcast_frame(channel, Frame::text(payload)?, Some(except))
    }

    /// Sends a binary frame to every subscriber of `channel` but `except`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after close.
    pub fn broadcast_binary_except(
        &self,
        channel: &str,
        payload: impl IntoPayload,
        except: &Client,
    ) -> Result<()> {
        self.broadcast_frame(channel, Frame::binary(payload), Some(except))
    }

    /// Sends a prepared frame to every subscriber of `channel`, but
    /// `except` if given. The frame is shared, never copied, per recipient.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after close.
    pub fn broadcast_frame(
        &self,
        channel: &str,
        frame: Frame,
        except: Option<&Client>,
    ) -> Result<()> {
        self.check_open()?;
        let Some(ch) = self.0.channels.find(channel) else {
            return Ok(());
        };
        let mut shut = Vec::new();
        fan_out(&ch.slots, &frame, false, except.map(|c| &c.0), &mut shut);
        self.0.cleanup_all(shut);
        Ok(())
    }

    /// Sends a text frame to one client by id (R13).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after close; [`Error::ClientNotFound`] for an
    /// unknown id; [`Error::InvalidUtf8`].
    pub fn send_to(&self, client_id: &str, payload: impl IntoPayload) -> Result<()> {
        self.check_open()?;
        self.send_frame_to(client_id, Frame::text(payload)?)
    }

    /// Sends a binary frame to one client by id.
    ///
    /// # Errors
    ///
    /// As [`Hub::send_to`].
    pub fn send_binary_to(&self, client_id: &str, payload: impl IntoPayload) -> Result<()> {
        self.send_frame_to(client_id, Frame::binary(payload))
    }

    /// Sends a prepared frame to one client by id.
    ///
    /// # Errors
    ///
    /// As [`Hub::send_to`].
    pub fn send_frame_to(&self, client_id: &str, frame: Frame) -> Result<()> {
        self.check_open()?;
        let client = self
            .client(client_id)
            .ok_or_else(|| Error::ClientNotFound(client_id.to_owned()))?;
        match client.send_frame(frame) {
            // Closed while we looked it up: it is gone.
            Err(Error::Closed) => Err(Error::ClientNotFound(client_id.to_owned())),
            other => other,
        }
    }
}

/// Enqueues `frame` to every member of `slots` but `except`; members shut
/// by an overflow go to `shut`, for the caller to clean up once it holds no
/// channel lock. `force`: see `ClientShared::enqueue`. Broadcasts and the
/// presence frames of joins and leaves share it.
pub(super) fn fan_out(
    slots: &Slots,
    frame: &Frame,
    force: bool,
    except: Option<&Arc<ClientShared>>,
    shut: &mut Vec<Client>,
) {
    slots.for_each_chunk(|chunk| {
        // Pass 1: a plain load of each member's hot line, no fence
        // between them, so up to 16 cache misses overlap instead of
        // waiting on each other behind the locked read-modify-writes
        // of pass 2.
        let mut open = [false; 16];
        for (slot, member) in open.iter_mut().zip(chunk) {
            *slot = member.as_ref().is_some_and(|m| m.outbox.warm());
        }
        // Pass 2: push.
        for (member, open) in chunk.iter().zip(open) {
            let Some(member) = member.as_ref().filter(|_| open) else {
                continue;
            };
            if except.is_some_and(|e| Arc::ptr_eq(e, member)) {
                continue;
            }
            if member.enqueue(frame.clone(), force) == Enqueued::Shut {
                shut.push(Client(member.clone()));
            }
        }
    });
}
