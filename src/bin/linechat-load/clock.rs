//! Process-local monotonic time in nanoseconds: what publishers embed in
//! payloads and subscribers subtract from to get delivery latency.

use std::time::Instant;

#[derive(Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    pub fn new() -> Self {
        Clock(Instant::now())
    }

    pub fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}
