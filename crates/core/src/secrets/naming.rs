//! Secret names (docs/original.md#secret-names).
//!
//! - provider secret: `<app>/<domain>/<provider>`, e.g. `4me-app-builder/4me-demo.com/wdc`;
//! - customer (instance) secret: `<app>/<ref>/<domain>/instances/<account>`, e.g.
//!   `4me-app-builder/typeform/4me-demo.com/instances/acme`;
//! - offering settings secret: `<app>/<ref>/<domain>/settings`, the provider's own credentials
//!   for an integration's external service (e.g. a Fun Translations API secret), readable by
//!   that integration's function only.
//!
//! Note the asymmetric position of `<domain>`. AWS names a secret either by its name or by its
//! full ARN (`…:secret:<name>-XXXXXX`, a 6-character random suffix);
//! [`parse_customer_secret_id`] accepts both and matches segments exactly (the original used a
//! substring test, so `typeform` also matched `typeform2`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest secret name AWS Secrets Manager accepts.
const MAX_NAME_LEN: usize = 512;

/// Segment between `<domain>` and `<account>` in customer secret names.
const INSTANCES_SEGMENT: &str = "instances";

/// Why a secret name or one of its segments was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretNameError {
    /// The name (or a segment) is empty.
    #[error("secret name segment `{segment}` is empty")]
    EmptySegment {
        /// Which segment (`app`, `domain`, `provider`, `offering_reference`, `account`).
        segment: &'static str,
    },
    /// A segment contains `/`, which would shift the other segments.
    #[error("secret name segment `{segment}` must not contain `/`")]
    SlashInSegment {
        /// Which segment.
        segment: &'static str,
    },
    /// A character outside `A-Z a-z 0-9 / _ + = . @ -` (the Secrets Manager alphabet).
    #[error("secret name contains the invalid character {0:?}")]
    InvalidCharacter(char),
    /// Longer than the 512 characters Secrets Manager allows.
    #[error("secret name is {0} characters long, at most {MAX_NAME_LEN} are allowed")]
    TooLong(usize),
    /// Empty segments (`//`, leading or trailing `/`).
    #[error("secret name has an empty path segment")]
    EmptyPathSegment,
}

/// A validated AWS Secrets Manager secret name (not an ARN).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SecretName(String);

impl SecretName {
    /// Validates `name`: 1–512 characters of `A-Z a-z 0-9 / _ + = . @ -`, no empty path segments.
    pub fn new(name: impl Into<String>) -> Result<Self, SecretNameError> {
        let name = name.into();
        if name.is_empty() {
            return Err(SecretNameError::EmptySegment { segment: "name" });
        }
        let len = name.chars().count();
        if len > MAX_NAME_LEN {
            return Err(SecretNameError::TooLong(len));
        }
        if let Some(c) = name.chars().find(|c| !is_name_char(*c)) {
            return Err(SecretNameError::InvalidCharacter(c));
        }
        if name.split('/').any(str::is_empty) {
            return Err(SecretNameError::EmptyPathSegment);
        }
        Ok(Self(name))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Consumes the name, returning the string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl<'de> Deserialize<'de> for SecretName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::new(raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretName({:?})", self.0)
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SecretName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for SecretName {
    type Err = SecretNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '+' | '=' | '.' | '@' | '-')
}

/// Checks one segment that must not contain `/`.
fn check_segment(segment: &'static str, value: &str) -> Result<(), SecretNameError> {
    if value.is_empty() {
        return Err(SecretNameError::EmptySegment { segment });
    }
    if value.contains('/') {
        return Err(SecretNameError::SlashInSegment { segment });
    }
    Ok(())
}

/// Checks the application prefix, which may itself be a path (`a/b`) of non-empty segments.
fn check_app(app: &str) -> Result<(), SecretNameError> {
    if app.is_empty() {
        return Err(SecretNameError::EmptySegment { segment: "app" });
    }
    Ok(())
}

/// Name of a provider secret: `<app>/<domain>/<provider>`.
///
/// `app` is the bootstrap application name (`PARAM_BOOTSTRAP_APP`, normally `4me-app-builder`),
/// `provider` the provider account.
pub fn provider_secret_name(
    app: &str,
    domain: &str,
    provider: &str,
) -> Result<SecretName, SecretNameError> {
    check_app(app)?;
    check_segment("domain", domain)?;
    check_segment("provider", provider)?;
    SecretName::new(format!("{app}/{domain}/{provider}"))
}

/// Name of a customer (instance) secret: `<app>/<ref>/<domain>/instances/<account>`.
pub fn customer_secret_name(
    app: &str,
    offering_reference: &str,
    domain: &str,
    account: &str,
) -> Result<SecretName, SecretNameError> {
    check_app(app)?;
    check_segment("offering_reference", offering_reference)?;
    check_segment("domain", domain)?;
    check_segment("account", account)?;
    SecretName::new(format!(
        "{app}/{offering_reference}/{domain}/{INSTANCES_SEGMENT}/{account}"
    ))
}

/// Name of an offering's settings secret: `<app>/<ref>/<domain>/settings`.
pub fn offering_settings_secret_name(
    app: &str,
    offering_reference: &str,
    domain: &str,
) -> Result<SecretName, SecretNameError> {
    check_app(app)?;
    check_segment("offering_reference", offering_reference)?;
    check_segment("domain", domain)?;
    SecretName::new(format!("{app}/{offering_reference}/{domain}/settings"))
}

/// The variable parts of a customer secret name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerSecretId {
    /// The app offering reference (`typeform`, `lansweeper`, …).
    pub offering_reference: String,
    /// The customer account id.
    pub account: String,
}

/// Strips an ARN (`arn:<partition>:secretsmanager:<region>:<account>:secret:<name>-XXXXXX`) down
/// to the secret name; returns plain names unchanged. `None` for a malformed ARN.
pub fn secret_name_from_id(id: &str) -> Option<&str> {
    if !id.starts_with("arn:") {
        return Some(id);
    }
    let mut parts = id.splitn(7, ':');
    let (_arn, _partition, service, _region, _account, resource, name_with_suffix) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if service != "secretsmanager" || resource != "secret" {
        return None;
    }
    let (name, suffix) = name_with_suffix.rsplit_once('-')?;
    if suffix.len() != 6 || !suffix.chars().all(|c| c.is_ascii_alphanumeric()) || name.is_empty() {
        return None;
    }
    Some(name)
}

/// Parses a customer secret id (name or full ARN) of application `app` in `domain`.
///
/// Returns `None` unless the name is exactly `<app>/<ref>/<domain>/instances/<account>` with
/// non-empty `<ref>` and `<account>` (segment-exact: `my-app2/…` is not an id of `my-app`).
pub fn parse_customer_secret_id(id: &str, app: &str, domain: &str) -> Option<CustomerSecretId> {
    let name = secret_name_from_id(id)?;
    if app.is_empty() {
        return None;
    }
    let rest = name.strip_prefix(app)?.strip_prefix('/')?;
    let mut segments = rest.split('/');
    let offering_reference = segments.next()?;
    let found_domain = segments.next()?;
    let instances = segments.next()?;
    let account = segments.next()?;
    if segments.next().is_some()
        || offering_reference.is_empty()
        || account.is_empty()
        || found_domain != domain
        || instances != INSTANCES_SEGMENT
    {
        return None;
    }
    Some(CustomerSecretId {
        offering_reference: offering_reference.to_owned(),
        account: account.to_owned(),
    })
}
