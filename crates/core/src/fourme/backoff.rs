//! Retry timing: exponential backoff with full jitter and `Retry-After` handling.

use std::time::Duration;

/// The upper bound of the backoff before retry number `attempt` (1-based):
/// `min(max, base * 2^(attempt - 1))`.
pub fn backoff_ceiling(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(31);
    let factor = 1u32 << exponent;
    base.checked_mul(factor).unwrap_or(max).min(max)
}

/// A "full jitter" backoff: uniformly random in `[0, backoff_ceiling(base, max, attempt)]`.
pub fn full_jitter(base: Duration, max: Duration, attempt: u32) -> Duration {
    let ceiling = backoff_ceiling(base, max, attempt);
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::random_range(0..=millis))
}

/// The wait demanded by a `Retry-After` header value (delay seconds), capped by `max`;
/// `fallback` when the header is missing or not a number of seconds.
pub fn retry_after(header: Option<&str>, fallback: Duration, max: Duration) -> Duration {
    header
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(fallback)
        .min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn ceiling_doubles_and_caps() {
        assert_eq!(backoff_ceiling(MS(100), MS(1000), 1), MS(100));
        assert_eq!(backoff_ceiling(MS(100), MS(1000), 2), MS(200));
        assert_eq!(backoff_ceiling(MS(100), MS(1000), 4), MS(800));
        assert_eq!(backoff_ceiling(MS(100), MS(1000), 5), MS(1000));
        assert_eq!(backoff_ceiling(MS(100), MS(1000), 500), MS(1000));
        assert_eq!(backoff_ceiling(MS(100), MS(1000), 0), MS(100));
    }

    #[test]
    fn jitter_stays_within_ceiling() {
        for attempt in 1..8 {
            for _ in 0..50 {
                let d = full_jitter(MS(10), MS(300), attempt);
                assert!(d <= backoff_ceiling(MS(10), MS(300), attempt));
            }
        }
        assert_eq!(full_jitter(MS(0), MS(0), 3), MS(0));
    }

    #[test]
    fn retry_after_parses_and_caps() {
        assert_eq!(retry_after(Some("2"), MS(5), MS(10_000)), MS(2000));
        assert_eq!(retry_after(Some(" 1.5 "), MS(5), MS(10_000)), MS(1500));
        assert_eq!(retry_after(Some("120"), MS(5), MS(10_000)), MS(10_000));
        assert_eq!(retry_after(Some("soon"), MS(5), MS(10_000)), MS(5));
        assert_eq!(retry_after(None, MS(5), MS(10_000)), MS(5));
        assert_eq!(retry_after(Some("-1"), MS(5), MS(10_000)), MS(5));
    }
}
