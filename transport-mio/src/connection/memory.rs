//! An in-memory socket: input the driver supplies, output it inspects, a
//! write room it controls (`WouldBlock` when it is used up). The unit tests
//! (`testing.rs`) and the fuzz hook (`fuzz.rs`) drive a [`Connection`]
//! over it, without a socket or a loop.
//!
//! [`Connection`]: super::Connection

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};

use super::Stream;

/// An in-memory socket.
#[derive(Debug)]
pub(crate) struct MemStream {
    /// Bytes the peer sent and we have not read.
    pub(crate) input: VecDeque<u8>,
    /// The peer closed its write side: reads past `input` return 0.
    pub(crate) eof: bool,
    /// Everything we wrote.
    pub(crate) written: Vec<u8>,
    /// Bytes the socket still takes before it pushes back (`WouldBlock`).
    pub(crate) room: usize,
    /// Our write side was shut down (`shutdown_write` takes `&self`).
    shut: Cell<bool>,
    /// Write calls that took bytes.
    pub(crate) writes: usize,
}

impl MemStream {
    /// Whether our write side was shut down.
    #[cfg(test)]
    pub(crate) fn is_shut(&self) -> bool {
        self.shut.get()
    }

    pub(crate) fn with_room(room: usize) -> Self {
        Self {
            input: VecDeque::new(),
            eof: false,
            written: Vec::new(),
            room,
            shut: Cell::new(false),
            writes: 0,
        }
    }
}

impl Read for MemStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return match self.eof {
                true => Ok(0),
                false => Err(io::ErrorKind::WouldBlock.into()),
            };
        }
        let n = buf.len().min(self.input.len());
        for (slot, byte) in buf.iter_mut().zip(self.input.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }
}

impl Write for MemStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        assert!(!self.shut.get(), "write after shutdown");
        if self.room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let before = self.written.len();
        for buf in bufs {
            let n = buf.len().min(self.room);
            self.written.extend_from_slice(&buf[..n]);
            self.room -= n;
        }
        self.writes += 1;
        Ok(self.written.len() - before)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream for MemStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shut.set(true);
        Ok(())
    }
}
