//! skald CLI.
fn main() {}
