//! [`Pauses`]: where the fault tests kill the operator, varied but the same in every run.

use std::time::Duration;

/// A deterministic sequence of pauses (a linear congruential generator from a fixed seed): the
/// kill points vary, every run is the same.
pub struct Pauses(pub u64);

impl Pauses {
    /// The next pause, `min_ms` to `max_ms` inclusive.
    pub fn next(&mut self, min_ms: u64, max_ms: u64) -> Duration {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Duration::from_millis(min_ms + (self.0 >> 33) % (max_ms - min_ms + 1))
    }
}
