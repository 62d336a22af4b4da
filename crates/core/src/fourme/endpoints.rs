//! 4me service URLs derived from the 4me domain, overridable by environment.

use url::Url;

/// Environment variable overriding the OAuth token URL.
pub const ENV_OAUTH_URL: &str = "FOURME_OAUTH_URL";
/// Environment variable overriding the GraphQL URL.
pub const ENV_GRAPHQL_URL: &str = "FOURME_GRAPHQL_URL";
/// Environment variable overriding the REST base URL (the client appends `/<resource>/<id>`).
pub const ENV_REST_URL: &str = "FOURME_REST_URL";

/// Errors deriving the 4me endpoints.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    /// The 4me domain is empty or not a bare host name.
    #[error("invalid 4me domain {0:?}: expected a bare host name such as 4me.com")]
    InvalidDomain(String),
    /// An override variable does not hold an absolute http(s) URL.
    #[error("invalid URL in {variable}: {message}")]
    InvalidOverride {
        /// The environment variable.
        variable: &'static str,
        /// Why it was rejected.
        message: String,
    },
}

/// The three 4me endpoints used by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// OAuth token endpoint, e.g. `https://oauth.4me.com/token`.
    pub oauth: Url,
    /// GraphQL endpoint, e.g. `https://graphql.4me.com/`.
    pub graphql: Url,
    /// REST base, e.g. `https://api.4me.com/v1`.
    pub rest: Url,
}

impl Endpoints {
    /// Derives the endpoints from a 4me domain such as `4me.com` or `4me-demo.com`.
    pub fn for_domain(domain: &str) -> Result<Self, EndpointError> {
        let domain = domain.trim();
        let valid = !domain.is_empty()
            && domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == ':')
            && !domain.starts_with('.')
            && !domain.starts_with('-');
        if !valid {
            return Err(EndpointError::InvalidDomain(domain.to_string()));
        }
        let parse =
            |s: String| Url::parse(&s).map_err(|_| EndpointError::InvalidDomain(domain.into()));
        Ok(Self {
            oauth: parse(format!("https://oauth.{domain}/token"))?,
            graphql: parse(format!("https://graphql.{domain}/"))?,
            rest: parse(format!("https://api.{domain}/v1"))?,
        })
    }

    /// Like [`Endpoints::for_domain`], with each URL overridable by `FOURME_OAUTH_URL`,
    /// `FOURME_GRAPHQL_URL` and `FOURME_REST_URL` (empty values are ignored).
    pub fn from_env(domain: &str) -> Result<Self, EndpointError> {
        Self::from_lookup(domain, |name| std::env::var(name).ok())
    }

    /// Like [`Endpoints::from_env`], reading variables through `lookup`.
    pub fn from_lookup(
        domain: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, EndpointError> {
        let overridden = |variable: &'static str| -> Result<Option<Url>, EndpointError> {
            match lookup(variable) {
                Some(v) if !v.trim().is_empty() => parse_override(variable, v.trim()).map(Some),
                _ => Ok(None),
            }
        };
        let oauth = overridden(ENV_OAUTH_URL)?;
        let graphql = overridden(ENV_GRAPHQL_URL)?;
        let rest = overridden(ENV_REST_URL)?;
        // The domain is only needed for the URLs that are not overridden.
        let derived = if oauth.is_some() && graphql.is_some() && rest.is_some() {
            None
        } else {
            Some(Self::for_domain(domain)?)
        };
        let pick = |o: Option<Url>, f: fn(&Self) -> &Url| -> Result<Url, EndpointError> {
            match (o, &derived) {
                (Some(u), _) => Ok(u),
                (None, Some(d)) => Ok(f(d).clone()),
                (None, None) => Err(EndpointError::InvalidDomain(domain.to_string())),
            }
        };
        Ok(Self {
            oauth: pick(oauth, |d| &d.oauth)?,
            graphql: pick(graphql, |d| &d.graphql)?,
            rest: pick(rest, |d| &d.rest)?,
        })
    }

    /// The REST URL of `<rest>/<resource>/<id>` followed by `extra` path segments.
    pub fn rest_url(&self, resource: &str, id: &str, extra: &[&str]) -> Url {
        let mut url = self.rest.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .push(resource)
                .push(id)
                .extend(extra);
        }
        url
    }
}

fn parse_override(variable: &'static str, value: &str) -> Result<Url, EndpointError> {
    let url = Url::parse(value).map_err(|e| EndpointError::InvalidOverride {
        variable,
        message: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(EndpointError::InvalidOverride {
            variable,
            message: "expected an absolute http(s) URL".into(),
        });
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn derives_urls_from_domain() {
        let e = Endpoints::for_domain("4me-demo.com").unwrap();
        assert_eq!(e.oauth.as_str(), "https://oauth.4me-demo.com/token");
        assert_eq!(e.graphql.as_str(), "https://graphql.4me-demo.com/");
        assert_eq!(e.rest.as_str(), "https://api.4me-demo.com/v1");
    }

    #[test]
    fn rejects_bad_domains() {
        for bad in ["", "  ", "https://4me.com", "4me.com/x", ".4me.com", "a b"] {
            assert!(Endpoints::for_domain(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn env_overrides_each_url() {
        let env: HashMap<&str, &str> = HashMap::from([
            (ENV_GRAPHQL_URL, "http://127.0.0.1:4444/graphql"),
            (ENV_REST_URL, ""),
        ]);
        let e = Endpoints::from_lookup("4me.qa", |k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(e.graphql.as_str(), "http://127.0.0.1:4444/graphql");
        assert_eq!(e.oauth.as_str(), "https://oauth.4me.qa/token");
        assert_eq!(e.rest.as_str(), "https://api.4me.qa/v1");
    }

    #[test]
    fn all_overrides_need_no_domain() {
        let env: HashMap<&str, &str> = HashMap::from([
            (ENV_OAUTH_URL, "http://h/oauth/token"),
            (ENV_GRAPHQL_URL, "http://h/graphql"),
            (ENV_REST_URL, "http://h/v1/"),
        ]);
        let e = Endpoints::from_lookup("", |k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(e.oauth.as_str(), "http://h/oauth/token");
        assert_eq!(
            e.rest_url("app_offerings", "42", &["avatar"]).as_str(),
            "http://h/v1/app_offerings/42/avatar"
        );
    }

    #[test]
    fn invalid_override_is_reported() {
        let err = Endpoints::from_lookup("4me.com", |k| {
            (k == ENV_OAUTH_URL).then(|| "not a url".to_string())
        })
        .unwrap_err();
        assert!(matches!(
            err,
            EndpointError::InvalidOverride {
                variable: ENV_OAUTH_URL,
                ..
            }
        ));
    }

    #[test]
    fn rest_url_escapes_segments() {
        let e = Endpoints::for_domain("4me.com").unwrap();
        assert_eq!(
            e.rest_url("app_offering_automation_rules", "a/b", &[])
                .as_str(),
            "https://api.4me.com/v1/app_offering_automation_rules/a%2Fb"
        );
    }
}
