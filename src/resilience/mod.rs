//! Pure resilience state machines: they take `now` (and randomness) as input and return
//! decisions. No I/O, no timers, no tasks: the drivers in `upstream/` own those, which is
//! what makes these testable without sleeping.

pub mod backoff;
