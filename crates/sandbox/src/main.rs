//! Runs the 4me sandbox as a standalone server.
fn main() {}
