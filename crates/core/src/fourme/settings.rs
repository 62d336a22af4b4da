//! Client tuning (timeouts, polling, retries, spacing) and OAuth credentials.

use std::time::Duration;

use secrecy::SecretString;

/// Environment variable: HTTP timeout per request in ms (default 60000).
pub const ENV_TIMEOUT: &str = "SYNC_4ME_TIMEOUT";
/// Environment variable: async-query result deadline in ms (default 120000).
pub const ENV_ASYNC_TIMEOUT: &str = "SYNC_4ME_ASYNC_TIMEOUT";
/// Environment variable: async-query result poll interval in ms (default 501).
pub const ENV_ASYNC_POLL_INTERVAL: &str = "SYNC_4ME_ASYNC_POLL_INTERVAL";

/// Tuning of the 4me client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    /// Timeout of one HTTP request.
    pub timeout: Duration,
    /// Interval between polls of an async-query result URL.
    pub async_poll_interval: Duration,
    /// Deadline for an async-query result to appear.
    pub async_timeout: Duration,
    /// Maximum attempts of one request (429, 5xx, timeouts, connection errors); at least 1.
    pub max_attempts: u32,
    /// Base of the exponential backoff for 5xx/timeouts.
    pub base_backoff: Duration,
    /// Upper bound of one backoff sleep.
    pub max_backoff: Duration,
    /// Upper bound of a `Retry-After` sleep.
    pub max_retry_after: Duration,
    /// Minimum spacing between two 4me API requests of one client (20 requests per 2 s).
    pub min_request_spacing: Duration,
    /// Requests allowed per [`ClientSettings::rate_limit_window`] (4me: 20 per 2 s per token);
    /// 0 disables the client-side window.
    pub rate_limit_requests: u32,
    /// The rate-limit window. A request occupies it from sending until this long after its
    /// response arrived, so the server never sees more than the limit in one window.
    pub rate_limit_window: Duration,
    /// A cached token is refreshed when it expires within this margin.
    pub token_refresh_margin: Duration,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(60_000),
            async_poll_interval: Duration::from_millis(501),
            async_timeout: Duration::from_millis(120_000),
            max_attempts: 5,
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
            min_request_spacing: Duration::from_millis(100),
            rate_limit_requests: 20,
            rate_limit_window: Duration::from_secs(2),
            token_refresh_margin: Duration::from_secs(60),
        }
    }
}

impl ClientSettings {
    /// Defaults overridden by `SYNC_4ME_TIMEOUT`, `SYNC_4ME_ASYNC_TIMEOUT` and
    /// `SYNC_4ME_ASYNC_POLL_INTERVAL` (milliseconds; invalid or 0 → default, like the original
    /// `parseInt(...) || default`).
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`ClientSettings::from_env`], reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut s = Self::default();
        let ms = |name: &str, default: Duration| {
            lookup(name)
                .as_deref()
                .and_then(parse_millis)
                .map_or(default, Duration::from_millis)
        };
        s.timeout = ms(ENV_TIMEOUT, s.timeout);
        s.async_timeout = ms(ENV_ASYNC_TIMEOUT, s.async_timeout);
        s.async_poll_interval = ms(ENV_ASYNC_POLL_INTERVAL, s.async_poll_interval);
        s
    }
}

/// Parses a millisecond value like JavaScript's `parseInt(v) || default`: leading decimal digits
/// after optional whitespace and `+`; `None` for no digits, 0 or a negative number.
pub fn parse_millis(value: &str) -> Option<u64> {
    let v = value.trim_start();
    let v = v.strip_prefix('+').unwrap_or(v);
    let digits: &str = &v[..v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len())];
    match digits.parse::<u64>() {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

/// OAuth client credentials of a 4me account (the secret is redacted in `Debug`).
#[derive(Clone)]
pub struct Credentials {
    /// OAuth application client id.
    pub client_id: String,
    /// OAuth application client secret.
    pub client_secret: SecretString,
}

impl Credentials {
    /// Builds credentials from an id and a secret.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: SecretString::from(client_secret.into()),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn parse_millis_mimics_parse_int() {
        assert_eq!(parse_millis("1500"), Some(1500));
        assert_eq!(parse_millis(" 250ms"), Some(250));
        assert_eq!(parse_millis("+7"), Some(7));
        assert_eq!(parse_millis("0"), None);
        assert_eq!(parse_millis("-5"), None);
        assert_eq!(parse_millis("abc"), None);
        assert_eq!(parse_millis(""), None);
    }

    #[test]
    fn env_overrides_and_defaults() {
        let env: HashMap<&str, &str> = HashMap::from([
            (ENV_TIMEOUT, "5000"),
            (ENV_ASYNC_TIMEOUT, "0"),
            (ENV_ASYNC_POLL_INTERVAL, "x"),
        ]);
        let s = ClientSettings::from_lookup(|k| env.get(k).map(|v| v.to_string()));
        assert_eq!(s.timeout, Duration::from_millis(5000));
        assert_eq!(s.async_timeout, Duration::from_millis(120_000));
        assert_eq!(s.async_poll_interval, Duration::from_millis(501));
        assert_eq!(s.min_request_spacing, Duration::from_millis(100));
    }

    #[test]
    fn credentials_debug_is_redacted() {
        let c = Credentials::new("my-client", "super-secret-value");
        let dbg = format!("{c:?}");
        assert!(dbg.contains("my-client"));
        assert!(!dbg.contains("super-secret-value"));
    }
}
