//! Virtual time for the sans-IO cores' tests: one epoch per test process;
//! tests add durations to it and pass the result in as `now`. The cores
//! themselves never read the clock.

use std::sync::LazyLock;
use std::time::Instant;

/// The start of virtual time (read once per test process).
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// The start of virtual time.
pub(crate) fn epoch() -> Instant {
    *EPOCH
}
