//! The loop's connection table: a slab whose tokens carry a generation.
//!
//! A token is `generation << 32 | index`. Freeing a slot bumps its
//! generation, so a token still queued for a closed connection (a late wake,
//! a timer entry) finds nothing instead of the slot's next occupant. The two
//! highest token values are reserved for the waker and the listener.

use mio::Token;

#[cfg(not(target_pointer_width = "64"))]
compile_error!("realtime-mio packs a generation into mio tokens and needs 64-bit usize");

/// Generations wrap below this, so no token reaches the reserved values.
const GEN_LIMIT: u32 = 0x7FFF_FFFF;

struct Entry<T> {
    generation: u32,
    value: Option<T>,
}

/// A slab of `T` addressed by generational [`Token`]s.
pub(crate) struct Slots<T> {
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Slots<T> {
    pub(crate) fn new() -> Self {
        Self {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    fn token(index: u32, generation: u32) -> Token {
        Token(((generation as usize) << 32) | index as usize)
    }

    fn split(token: Token) -> (usize, u32) {
        (token.0 & 0xFFFF_FFFF, (token.0 >> 32) as u32)
    }

    /// Inserts the value built from its token.
    pub(crate) fn insert_with(&mut self, make: impl FnOnce(Token) -> T) -> Token {
        self.len += 1;
        if let Some(index) = self.free.pop() {
            let entry = &mut self.entries[index as usize];
            let token = Self::token(index, entry.generation);
            entry.value = Some(make(token));
            return token;
        }
        // Fewer than 2^32 connections: the fd limit is far below.
        let index = self.entries.len() as u32;
        let token = Self::token(index, 0);
        self.entries.push(Entry {
            generation: 0,
            value: Some(make(token)),
        });
        token
    }

    pub(crate) fn get_mut(&mut self, token: Token) -> Option<&mut T> {
        let (index, generation) = Self::split(token);
        let entry = self.entries.get_mut(index)?;
        if entry.generation != generation {
            return None;
        }
        entry.value.as_mut()
    }

    pub(crate) fn remove(&mut self, token: Token) -> Option<T> {
        let (index, generation) = Self::split(token);
        let entry = self.entries.get_mut(index)?;
        if entry.generation != generation {
            return None;
        }
        let value = entry.value.take()?;
        entry.generation = (entry.generation + 1) % GEN_LIMIT;
        self.free.push(index as u32);
        self.len -= 1;
        Some(value)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Tokens of every live entry.
    pub(crate) fn tokens(&self) -> Vec<Token> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.value.is_some())
            .map(|(i, e)| Self::token(i as u32, e.generation))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_token_does_not_reach_the_slot_reuser() {
        let mut s = Slots::new();
        let a = s.insert_with(|_| "a");
        assert_eq!(s.remove(a), Some("a"));
        let b = s.insert_with(|_| "b");
        assert_ne!(a, b);
        assert!(s.get_mut(a).is_none());
        assert_eq!(s.get_mut(b), Some(&mut "b"));
        assert_eq!(s.len(), 1);
        assert_eq!(s.tokens(), vec![b]);
    }
}
