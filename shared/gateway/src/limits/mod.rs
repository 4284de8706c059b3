//! Traffic limits. Today: failed authentication attempts per client address
//! ([`FailedAttempts`]); the keyed rate limits of the traffic-limits work land here too.

mod failed_attempts;

pub use failed_attempts::FailedAttempts;
