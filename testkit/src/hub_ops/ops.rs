//! Decoding and running one `hub_ops` operation: the Hub call, then the
//! same call on the model, and the two outcomes compared (format in
//! [`super`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use realtime::{Error, Frame};

use super::model::{Put, Want};
use super::{Run, CHANNELS, MAX_CLIENTS};
use crate::probe::Probe;

/// The input, one byte at a time.
pub(super) struct Bytes8<'a> {
    pub(super) data: &'a [u8],
    pub(super) at: usize,
}

impl Bytes8<'_> {
    pub(super) fn next(&mut self) -> Option<u8> {
        let b = *self.data.get(self.at)?;
        self.at += 1;
        Some(b)
    }
}

/// The text payload of the `n`th message.
fn text_payload(n: u64) -> String {
    format!("m{n}")
}

/// Binary payloads are not UTF-8, so they never equal a text payload.
fn binary_payload(n: u64) -> Vec<u8> {
    let mut v = vec![0xfe];
    v.extend_from_slice(&n.to_le_bytes());
    v
}

/// A text payload that is not UTF-8.
fn bad_text(n: u64) -> Vec<u8> {
    let mut v = vec![0xff];
    v.extend_from_slice(&n.to_le_bytes());
    v
}

impl Run<'_> {
    /// The client a byte picks: its index modulo the clients added so far.
    fn client(&self, b: u8) -> Option<usize> {
        let n = self.model.clients.len();
        (n > 0).then(|| usize::from(b) % n)
    }

    /// Decodes and runs one operation; `None` at the end of the input.
    pub(super) fn step(&mut self, r: &mut Bytes8<'_>) -> Option<()> {
        let op = r.next()? % 16;
        match op {
            0 | 1 => {
                let auth = r.next()?;
                if self.model.clients.len() >= MAX_CLIENTS {
                    self.note(format_args!("add (skipped: enough clients)"));
                    return Some(());
                }
                let probe = Arc::new(Probe::default());
                let got = self.hub.attach(probe.clone(), vec![auth]);
                self.note(format_args!("add auth {auth:#04x}"));
                match got {
                    Ok(client) => {
                        if self.model.closed {
                            self.fail("add succeeded after Hub close");
                        }
                        self.model.add(client, probe, auth);
                    }
                    Err(e) => {
                        if !(self.model.closed && e == Error::Closed) {
                            self.fail(&format!("add failed: {e:?}"));
                        }
                    }
                }
            }
            2 | 3 | 4 | 14 => {
                let (c, ch) = (r.next()?, r.next()?);
                let ch = CHANNELS[usize::from(ch) % CHANNELS.len()];
                let Some(c) = self.client(c) else {
                    return Some(());
                };
                self.note(format_args!("subscribe c{c} {ch}"));
                let got = self.hub.subscribe(&self.model.clients[c].handle, ch);
                let want = self.model.subscribe(c, ch);
                self.expect("subscribe", &got, &want);
            }
            5 | 6 => {
                let (c, ch) = (r.next()?, r.next()?);
                let ch = CHANNELS[usize::from(ch) % CHANNELS.len()];
                let Some(c) = self.client(c) else {
                    return Some(());
                };
                self.note(format_args!("unsubscribe c{c} {ch}"));
                let got = self.hub.unsubscribe(&self.model.clients[c].handle, ch);
                let want = self.model.unsubscribe(c, ch);
                self.expect("unsubscribe", &got, &want);
            }
            7 | 8 | 15 => {
                let (ch, flags, ex) = (r.next()?, r.next()?, r.next()?);
                let ch = CHANNELS[usize::from(ch) % CHANNELS.len()];
                let kind = flags & 7;
                let count = 1 + usize::from((flags >> 3) & 3);
                let except = if kind >= 4 { self.client(ex) } else { None };
                self.note(format_args!(
                    "broadcast {ch} kind {kind} x{count} except {except:?}"
                ));
                for _ in 0..count {
                    let n = self.model.next_payload();
                    let ex = except.map(|c| self.model.clients[c].handle.clone());
                    let (got, frame, bad) = match (kind, &ex) {
                        (0 | 4, None) => {
                            let p = text_payload(n);
                            (
                                self.hub.broadcast(ch, p.as_str()),
                                Frame::from_string(p),
                                false,
                            )
                        }
                        (0 | 4, Some(e)) => {
                            let p = text_payload(n);
                            let got = self.hub.broadcast_except(ch, p.as_str(), e);
                            (got, Frame::from_string(p), false)
                        }
                        (1 | 5, None) => {
                            let p = binary_payload(n);
                            (self.hub.broadcast_binary(ch, &p), Frame::binary(p), false)
                        }
                        (1 | 5, Some(e)) => {
                            let p = binary_payload(n);
                            let got = self.hub.broadcast_binary_except(ch, &p, e);
                            (got, Frame::binary(p), false)
                        }
                        (2, _) => {
                            let p = bad_text(n);
                            (self.hub.broadcast(ch, &p), Frame::binary(p), true)
                        }
                        (3, _) => {
                            // A prepared frame, shared by every recipient.
                            let f = Frame::from_string(text_payload(n));
                            (
                                self.hub.broadcast_frame(ch, f.clone(), ex.as_ref()),
                                f,
                                false,
                            )
                        }
                        _ => {
                            let p = text_payload(n);
                            let got = match &ex {
                                Some(e) => self.hub.broadcast_except(ch, p.as_str(), e),
                                None => self.hub.broadcast(ch, p.as_str()),
                            };
                            (got, Frame::from_string(p), false)
                        }
                    };
                    let want = self.model.broadcast(ch, &frame, bad, except);
                    self.expect("broadcast", &got, &want);
                }
            }
            9 => {
                let (t, flags) = (r.next()?, r.next()?);
                let number = u64::from(t) % (MAX_CLIENTS as u64 + 2);
                let id = format!("client-{number}");
                let kind = flags & 3;
                let by_handle = flags & 4 != 0;
                let n = self.model.next_payload();
                let target = self.model.clients.iter().position(|c| c.number == number);
                self.note(format_args!(
                    "send {id} kind {kind} {}",
                    if by_handle { "by handle" } else { "by id" }
                ));
                let (frame, bad) = match kind {
                    1 => (Frame::binary(binary_payload(n)), false),
                    2 => (Frame::binary(bad_text(n)), true),
                    _ => (Frame::from_string(text_payload(n)), false),
                };
                if by_handle {
                    let Some(c) = target else { return Some(()) };
                    let handle = self.model.clients[c].handle.clone();
                    let got = match kind {
                        1 => handle.send_binary(frame.payload()),
                        _ => handle.send_text(frame.payload()),
                    };
                    let want = if bad {
                        Want::InvalidUtf8
                    } else {
                        let g = self.model.fresh();
                        match self.model.enqueue(c, frame, false, g) {
                            Put::Queued | Put::Dropped => Want::Ok,
                            Put::Shut => {
                                let g = self.model.fresh();
                                self.model.cleanup(vec![c], g);
                                Want::Closed
                            }
                            Put::Closed => Want::Closed,
                        }
                    };
                    self.expect("send by handle", &got, &want);
                } else {
                    let got = match kind {
                        1 => self.hub.send_binary_to(&id, frame.payload()),
                        _ => self.hub.send_to(&id, frame.payload()),
                    };
                    let live = target.filter(|&c| !self.model.clients[c].closed);
                    let want = if self.model.closed {
                        Want::Closed
                    } else if bad {
                        Want::InvalidUtf8
                    } else if let Some(c) = live {
                        let g = self.model.fresh();
                        match self.model.enqueue(c, frame, false, g) {
                            Put::Queued | Put::Dropped => Want::Ok,
                            // Disconnected by this very send: the Hub reports
                            // the client as gone (`send_frame_to`).
                            Put::Shut | Put::Closed => {
                                let g = self.model.fresh();
                                self.model.cleanup(vec![c], g);
                                Want::NotFound(id.clone())
                            }
                        }
                    } else {
                        Want::NotFound(id.clone())
                    };
                    self.expect("send_to", &got, &want);
                }
            }
            10 => {
                let (c, flags) = (r.next()?, r.next()?);
                let Some(c) = self.client(c) else {
                    return Some(());
                };
                let handle = self.model.clients[c].handle.clone();
                if flags & 1 != 0 {
                    self.note(format_args!("close_with c{c}"));
                    handle.close_with(4000, "bye");
                    self.model.close_client(c, Some((4000, "bye".to_owned())));
                } else {
                    self.note(format_args!("close c{c}"));
                    handle.close();
                    self.model.close_client(c, None);
                }
            }
            11 => {
                let n = r.next()?;
                self.note(format_args!("hold {}", n % 4));
                // Skips this step's drain and those of the next `1 + n % 4`.
                self.hold = 2 + usize::from(n % 4);
            }
            12 => {
                self.model.deny_all = !self.model.deny_all;
                self.rec
                    .deny_all
                    .store(self.model.deny_all, Ordering::SeqCst);
                let deny = self.model.deny_all;
                self.note(format_args!("deny_all {deny}"));
            }
            _ => {
                self.note(format_args!("hub close"));
                self.hub.close();
                self.model.close_hub();
            }
        }
        Some(())
    }
}
