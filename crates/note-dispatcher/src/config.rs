//! Settings of the note-dispatcher beyond the shared context configuration.

use std::time::Duration;

use app_builder_core::config::{ConfigError, Settings};
use url::Url;

use crate::guard::UrlGuard;
use crate::translate::DEFAULT_API_URL;

/// Base URL of the Fun Translations API (default `https://api.funtranslations.com`).
pub const ENV_FUNTRANSLATIONS_API_URL: &str = "FUNTRANSLATIONS_API_URL";
/// `true` lets the target URL point to loopback, link-local and private addresses (tests, the
/// local engine). Default `false`.
pub const ENV_ALLOW_PRIVATE_URLS: &str = "NOTE_DISPATCHER_ALLOW_PRIVATE_URLS";
/// Timeout in milliseconds of each outbound call (translation, target URL, webhook
/// verification). Default 10000.
pub const ENV_TIMEOUT_MS: &str = "NOTE_DISPATCHER_TIMEOUT_MS";

/// Default timeout of each outbound call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The note-dispatcher settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatcherConfig {
    /// Base URL of the Fun Translations API.
    pub funtranslations_url: Url,
    /// The guard applied to the customer's target URL.
    pub guard: UrlGuard,
    /// Timeout of each outbound call.
    pub timeout: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            funtranslations_url: Url::parse(DEFAULT_API_URL)
                .unwrap_or_else(|_| unreachable!("the default URL is valid")),
            guard: UrlGuard::strict(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl DispatcherConfig {
    /// Reads [`ENV_FUNTRANSLATIONS_API_URL`], [`ENV_ALLOW_PRIVATE_URLS`] and [`ENV_TIMEOUT_MS`];
    /// a malformed value is an error naming the variable.
    pub fn from_settings<L: Fn(&str) -> Option<String>>(
        settings: &Settings<L>,
    ) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        if let Some(raw) = settings.optional(ENV_FUNTRANSLATIONS_API_URL) {
            let url = Url::parse(&raw).map_err(|e| ConfigError::Invalid {
                name: ENV_FUNTRANSLATIONS_API_URL,
                reason: e.to_string(),
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
                return Err(ConfigError::Invalid {
                    name: ENV_FUNTRANSLATIONS_API_URL,
                    reason: "expected an http(s) base URL".into(),
                });
            }
            config.funtranslations_url = url;
        }
        if let Some(allow) = settings.parsed::<bool>(ENV_ALLOW_PRIVATE_URLS)? {
            config.guard = if allow {
                UrlGuard::allowing_private()
            } else {
                UrlGuard::strict()
            };
        }
        if let Some(timeout) = settings.millis(ENV_TIMEOUT_MS)? {
            config.timeout = timeout;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<DispatcherConfig, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        DispatcherConfig::from_settings(&Settings::from_lookup(move |name| map.get(name).cloned()))
    }

    #[test]
    fn defaults_are_strict_and_production() {
        let c = config(&[]).unwrap();
        assert_eq!(
            c.funtranslations_url.as_str(),
            "https://api.funtranslations.com/"
        );
        assert!(!c.guard.allows_private());
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn settings_are_read_and_errors_name_the_variable() {
        let c = config(&[
            (ENV_FUNTRANSLATIONS_API_URL, "http://127.0.0.1:9/"),
            (ENV_ALLOW_PRIVATE_URLS, "true"),
            (ENV_TIMEOUT_MS, "2500"),
        ])
        .unwrap();
        assert!(c.guard.allows_private());
        assert_eq!(c.timeout, Duration::from_millis(2500));
        for (name, value) in [
            (ENV_ALLOW_PRIVATE_URLS, "yes"),
            (ENV_TIMEOUT_MS, "soon"),
            (ENV_TIMEOUT_MS, "0"),
            (ENV_FUNTRANSLATIONS_API_URL, "not a url"),
            (ENV_FUNTRANSLATIONS_API_URL, "mailto:x@example.com"),
        ] {
            let error = config(&[(name, value)]).unwrap_err();
            assert!(error.to_string().contains(name), "{error}");
        }
    }
}
