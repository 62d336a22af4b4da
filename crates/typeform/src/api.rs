//! The Typeform API client: create or update a form webhook
//! (`PUT /forms/{form_id}/webhooks/{tag}`) and delete one (`DELETE` on the same path), as
//! Typeform's Webhooks API documents them (developer.typeform.com, "Webhooks API").

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use url::Url;

/// Environment variable overriding the Typeform API base URL (tests, local runs).
pub const ENV_TYPEFORM_API_URL: &str = "TYPEFORM_API_URL";

/// The public Typeform API.
pub const DEFAULT_TYPEFORM_API_URL: &str = "https://api.typeform.com";

/// The tag of the webhook earlier versions (and the original) registered for every
/// installation: one tag per form, so two installations on one form took each other's webhook.
pub const LEGACY_WEBHOOK_TAG: &str = "4me-webhook";

/// The tag of the webhook registered for `customer`'s installation of `offering` of provider
/// account `provider`: a tag names one webhook of a form, so each installation has its own and
/// never replaces or deletes another's (another 4me account, another provider's app).
pub fn webhook_tag(provider: &str, offering: &str, customer: &str) -> String {
    format!("4me-{provider}-{offering}-{customer}")
}

/// Timeout of a Typeform API call (as the original).
pub const TYPEFORM_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of the Typeform API. Messages never contain the token or the webhook secret.
#[derive(Debug, thiserror::Error)]
pub enum TypeformError {
    /// The HTTP client could not be built.
    #[error("cannot build the Typeform HTTP client: {0}")]
    Client(String),
    /// The form id cannot be used in a URL path.
    #[error("invalid Typeform form id")]
    InvalidFormId,
    /// The request failed (connection, timeout).
    #[error("Error from Typeform webhook call: {0}")]
    Request(String),
    /// Typeform answered with an error status or an error body (`{code, description}`).
    #[error("Error from Typeform webhook call: HTTP {status} {code}: {description}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Typeform error code (e.g. `FORM_NOT_FOUND`), empty when absent.
        code: String,
        /// Typeform error description.
        description: String,
    },
}

impl TypeformError {
    /// Whether Typeform refused the request itself (a token or form it does not accept, 4xx
    /// other than 429): retrying the same request cannot succeed.
    pub fn is_refusal(&self) -> bool {
        match self {
            Self::Rejected { status, .. } => (400..500).contains(status) && *status != 429,
            Self::InvalidFormId => true,
            Self::Client(_) | Self::Request(_) => false,
        }
    }
}

/// The webhook registration sent to Typeform.
#[derive(Serialize)]
pub struct WebhookRegistration<'a> {
    /// Where Typeform delivers form responses.
    pub url: &'a str,
    /// Whether deliveries are enabled.
    pub enabled: bool,
    /// The signing secret.
    pub secret: &'a str,
    /// Whether Typeform verifies the receiver's TLS certificate.
    pub verify_ssl: bool,
}

impl std::fmt::Debug for WebhookRegistration<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRegistration")
            .field("url", &self.url)
            .field("enabled", &self.enabled)
            .field("secret", &"<redacted>")
            .field("verify_ssl", &self.verify_ssl)
            .finish()
    }
}

/// A Typeform API client (base URL configurable).
#[derive(Debug, Clone)]
pub struct TypeformApi {
    base: Url,
    http: reqwest::Client,
}

impl TypeformApi {
    /// A client for the API at `base` (e.g. [`DEFAULT_TYPEFORM_API_URL`]).
    pub fn new(base: Url) -> Result<Self, TypeformError> {
        let http = app_builder_core::tls::http_client_builder()
            .timeout(TYPEFORM_TIMEOUT)
            .build()
            .map_err(|e| TypeformError::Client(e.to_string()))?;
        Ok(Self { base, http })
    }

    /// The base URL in use.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    fn webhook_url(&self, form_id: &str, tag: &str) -> Result<Url, TypeformError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| TypeformError::Client("base URL cannot have a path".into()))?
            .pop_if_empty()
            .extend(["forms", form_id, "webhooks", tag]);
        Ok(url)
    }

    /// `DELETE /forms/{form_id}/webhooks/{tag}`; a webhook that does not exist (404) counts as
    /// deleted.
    pub async fn delete_webhook(
        &self,
        token: &str,
        form_id: &str,
        tag: &str,
    ) -> Result<(), TypeformError> {
        let response = self
            .http
            .delete(self.webhook_url(form_id, tag)?)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| TypeformError::Request(e.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        Err(TypeformError::Rejected {
            status: status.as_u16(),
            code: body["code"].as_str().unwrap_or_default().to_owned(),
            description: body["description"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// `PUT /forms/{form_id}/webhooks/{tag}` with `Authorization: Bearer <token>`.
    pub async fn put_webhook(
        &self,
        token: &str,
        form_id: &str,
        tag: &str,
        registration: &WebhookRegistration<'_>,
    ) -> Result<(), TypeformError> {
        let response = self
            .http
            .put(self.webhook_url(form_id, tag)?)
            .bearer_auth(token)
            .json(registration)
            .send()
            .await
            .map_err(|e| TypeformError::Request(e.without_url().to_string()))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        // As the original: a body with `description` is an error, whatever the status.
        if !status.is_success() || body.get("description").is_some() {
            return Err(TypeformError::Rejected {
                status: status.as_u16(),
                code: body["code"].as_str().unwrap_or_default().to_owned(),
                description: body["description"].as_str().unwrap_or_default().to_owned(),
            });
        }
        Ok(())
    }
}

/// The Typeform form id of a form URL: its last non-empty path segment
/// (`https://x.typeform.com/to/u6nXL7` → `u6nXL7`), ignoring query and fragment. `None` when
/// there is none or it is not alphanumeric (the original took the text after the last `/`
/// verbatim, query string included).
pub fn form_id_from_url(form_url: &str) -> Option<String> {
    let trimmed = form_url.trim();
    let path = match Url::parse(trimmed) {
        Ok(url) => url.path().to_owned(),
        Err(_) => trimmed
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .to_owned(),
    };
    let id = path.split('/').rev().find(|s| !s.is_empty())?;
    (id.chars().all(|c| c.is_ascii_alphanumeric())).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_ids() {
        assert_eq!(
            form_id_from_url("https://x.typeform.com/to/u6nXL7").as_deref(),
            Some("u6nXL7")
        );
        assert_eq!(
            form_id_from_url("https://x.typeform.com/to/u6nXL7/?utm=1#x").as_deref(),
            Some("u6nXL7")
        );
        assert_eq!(form_id_from_url("u6nXL7").as_deref(), Some("u6nXL7"));
        assert_eq!(form_id_from_url(""), None);
        assert_eq!(form_id_from_url("https://x.typeform.com/"), None);
        assert_eq!(form_id_from_url("https://x.typeform.com/to/a%2Fb"), None);
    }
}
