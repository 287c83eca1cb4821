//! Gateway server (work in progress).
fn main() {}
