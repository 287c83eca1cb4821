//! WebSocket transport (work in progress).
