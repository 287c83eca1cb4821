//! Pub/sub layer (work in progress).
