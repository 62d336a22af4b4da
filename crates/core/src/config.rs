//! Function configuration from the environment (the original's `PARAM_*` names, set by SAM).
//!
//! Functions read their configuration once, at start-up: a missing or malformed setting is a
//! [`ConfigError`] naming the variable, so a misconfigured stack fails on its first cold start
//! instead of answering every request with a 500.

use std::time::Duration;

use crate::context::ContextConfig;

/// The 4me domain, e.g. `4me-demo.com`.
pub const ENV_DOMAIN: &str = "PARAM_4ME_DOMAIN";
/// The bootstrap application name, the first segment of every secret name.
pub const ENV_BOOTSTRAP_APP: &str = "PARAM_BOOTSTRAP_APP";
/// The provider account.
pub const ENV_PROVIDER_ACCOUNT: &str = "PARAM_BOOTSTRAP_ACCOUNT";
/// The app offering reference of an integration function.
pub const ENV_OFFERING_REFERENCE: &str = "PARAM_OFFERING_REFERENCE";
/// The offerings whose secrets the secrets function stores (comma list, `*` for all).
pub const ENV_ENABLED_OFFERINGS: &str = "PARAM_ENABLED_OFFERINGS";

/// A setting that is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The variable is not set, or set to an empty value.
    #[error("missing setting {0}")]
    Missing(&'static str),
    /// The variable is set to a value that cannot be used.
    #[error("invalid setting {name}: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What is wrong with its value (never the value itself: it may be a secret).
        reason: String,
    },
}

/// Reads settings through a lookup function: `std::env::var` in functions, a map in tests.
pub struct Settings<L> {
    lookup: L,
}

impl Settings<fn(&str) -> Option<String>> {
    /// Settings from the process environment.
    pub fn from_env() -> Self {
        Settings {
            lookup: |name| std::env::var(name).ok(),
        }
    }
}

impl<L: Fn(&str) -> Option<String>> Settings<L> {
    /// Settings read through `lookup`.
    pub fn from_lookup(lookup: L) -> Self {
        Settings { lookup }
    }

    /// The trimmed value of `name`, `None` when unset or blank.
    pub fn optional(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    }

    /// The trimmed value of `name`; unset or blank is [`ConfigError::Missing`].
    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing(name))
    }

    /// The value of `name` parsed with [`std::str::FromStr`], `None` when unset or blank.
    pub fn parsed<T>(&self, name: &'static str) -> Result<Option<T>, ConfigError>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        self.optional(name)
            .map(|value| {
                value.parse().map_err(|e: T::Err| ConfigError::Invalid {
                    name,
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    /// A duration given in milliseconds (e.g. a timeout), `None` when unset or blank; `0` or a
    /// value that is not a whole number is [`ConfigError::Invalid`].
    pub fn millis(&self, name: &'static str) -> Result<Option<Duration>, ConfigError> {
        match self.parsed::<u64>(name)? {
            Some(0) => Err(ConfigError::Invalid {
                name,
                reason: "must be at least 1 ms".into(),
            }),
            millis => Ok(millis.map(Duration::from_millis)),
        }
    }

    /// The context configuration of a function: domain, bootstrap application and provider
    /// account are required; the offering reference only when `needs_offering` (integration
    /// functions) — the secrets function serves every offering.
    pub fn context_config(&self, needs_offering: bool) -> Result<ContextConfig, ConfigError> {
        let domain = self.required(ENV_DOMAIN)?;
        if domain.contains('/') || domain.contains(char::is_whitespace) {
            return Err(ConfigError::Invalid {
                name: ENV_DOMAIN,
                reason: "a 4me domain is a host name such as 4me-demo.com".into(),
            });
        }
        let offering_reference = if needs_offering {
            Some(self.required(ENV_OFFERING_REFERENCE)?)
        } else {
            self.optional(ENV_OFFERING_REFERENCE)
        };
        Ok(ContextConfig {
            domain,
            app: self.required(ENV_BOOTSTRAP_APP)?,
            provider_account: self.required(ENV_PROVIDER_ACCOUNT)?,
            offering_reference,
        })
    }

    /// The enabled offerings ([`ENV_ENABLED_OFFERINGS`]); unset means all, like the original's
    /// SAM default `*`.
    pub fn enabled_offerings(&self) -> EnabledOfferings {
        self.optional(ENV_ENABLED_OFFERINGS)
            .map_or(EnabledOfferings::All, |list| EnabledOfferings::parse(&list))
    }
}

/// Which app offerings the secrets function accepts secrets for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnabledOfferings {
    /// Every offering (`*` anywhere in the list).
    All,
    /// Only these references.
    Only(Vec<String>),
}

impl EnabledOfferings {
    /// Parses a comma list: entries are trimmed, empty entries ignored, `*` anywhere means all.
    /// (The original neither trimmed nor honoured `*` after the first entry, docs/original.md#fixed-bugs item 9.)
    pub fn parse(list: &str) -> Self {
        let entries: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(str::to_owned)
            .collect();
        if entries.iter().any(|entry| entry == "*") {
            EnabledOfferings::All
        } else {
            EnabledOfferings::Only(entries)
        }
    }

    /// Whether secrets of offering `reference` are accepted.
    pub fn contains(&self, reference: &str) -> bool {
        match self {
            EnabledOfferings::All => true,
            EnabledOfferings::Only(references) => references.iter().any(|r| r == reference),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Settings<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(move |name| map.get(name).cloned())
    }

    #[test]
    fn millis_are_positive_whole_numbers() {
        let name = "SOME_TIMEOUT_MS";
        assert_eq!(settings(&[]).millis(name), Ok(None));
        assert_eq!(settings(&[(name, " ")]).millis(name), Ok(None));
        assert_eq!(
            settings(&[(name, " 1500 ")]).millis(name),
            Ok(Some(Duration::from_millis(1500)))
        );
        for bad in ["0", "-1", "1.5", "5s"] {
            assert!(
                matches!(
                    settings(&[(name, bad)]).millis(name),
                    Err(ConfigError::Invalid { name: n, .. }) if n == name
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn context_config_requires_domain_app_and_provider() {
        let full = [
            (ENV_DOMAIN, " 4me-demo.com "),
            (ENV_BOOTSTRAP_APP, "4me-app-builder"),
            (ENV_PROVIDER_ACCOUNT, "wdc"),
        ];
        let config = settings(&full).context_config(false).unwrap();
        assert_eq!(config.domain, "4me-demo.com");
        assert_eq!(config.offering_reference, None);
        assert_eq!(
            settings(&full).context_config(true),
            Err(ConfigError::Missing(ENV_OFFERING_REFERENCE))
        );
        assert_eq!(
            settings(&full[1..]).context_config(false),
            Err(ConfigError::Missing(ENV_DOMAIN))
        );
        let blank = [(ENV_DOMAIN, "4me-demo.com"), (ENV_BOOTSTRAP_APP, "  ")];
        assert_eq!(
            settings(&blank).context_config(false),
            Err(ConfigError::Missing(ENV_BOOTSTRAP_APP))
        );
        let bad = [(ENV_DOMAIN, "https://4me-demo.com/")];
        assert!(matches!(
            settings(&bad).context_config(false),
            Err(ConfigError::Invalid {
                name: ENV_DOMAIN,
                ..
            })
        ));
    }

    #[test]
    fn parsed_names_the_variable_not_the_value() {
        let s = settings(&[("TIMEOUT", "ten")]);
        let error = s.parsed::<u64>("TIMEOUT").unwrap_err();
        assert!(error.to_string().contains("TIMEOUT"), "{error}");
        assert!(!error.to_string().contains("ten"), "{error}");
        assert_eq!(s.parsed::<u64>("UNSET"), Ok(None));
    }

    #[test]
    fn enabled_offerings_are_trimmed_and_star_anywhere_means_all() {
        let some = EnabledOfferings::parse(" typeform , note-dispatcher,,");
        assert!(some.contains("typeform") && some.contains("note-dispatcher"));
        assert!(!some.contains("lansweeper") && !some.contains(""));
        assert_eq!(
            EnabledOfferings::parse("typeform, *"),
            EnabledOfferings::All
        );
        assert_eq!(settings(&[]).enabled_offerings(), EnabledOfferings::All);
        assert_eq!(
            EnabledOfferings::parse(""),
            EnabledOfferings::Only(Vec::new())
        );
    }
}
