//! The loom side of the `sync` facade (filled in by the loom work, issue #6).
