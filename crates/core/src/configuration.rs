//! 4me's configuration URI: the page an integration shows the customer at installation.
//!
//! When an app offering has a `configurationUriTemplate`, 4me creates the app instance disabled
//! and sends the installing user's browser to that URI with five query parameters: `nodeID`,
//! `account_id`, `confirmation_url` and `created_at` of the app instance, and `X-4me-Signature`,
//! a JWT signed with the policy of the provider's secrets webhook whose `data` claim is the
//! `nodeID`. Before showing anything the integration must check the link (4me's app-builder
//! documentation): verify the signature, read the app instance by `nodeID` with the provider
//! token, and compare `account_id` and `created_at` with the instance's. When its configuration
//! is done it sends the user to `confirmation_url`, where the customer enables the instance.
//!
//! [`ConfigurationLink::from_query`] reads the parameters, [`verify_link`] checks them and
//! answers the installation being configured; [`page`] renders the server-side HTML pages (no
//! JavaScript needed) of an integration's configuration flow, including its error pages.
//!
//! Two checks go beyond 4me's description, because the signature covers only the `nodeID`:
//! the link must have been issued within [`LINK_LIFETIME`] (`iat`, besides an `exp` the policy
//! may set), and `confirmation_url` must lead back to 4me (the account's 4me domain, or the 4me
//! endpoint the engine is configured with), so that a doctored link cannot make the page
//! redirect elsewhere.

use serde_json::Value;
use url::Url;

use crate::context::ContextLoader;
use crate::fourme::instances::app_instance_state;
use crate::policy::JwtError;
use crate::secrets::SecretStore;

/// How long after 4me signed it a configuration link is honoured (seconds).
pub const LINK_LIFETIME: i64 = 3600;

/// The query parameters 4me adds to the configuration URI.
pub mod params {
    /// The app instance's node id.
    pub const NODE_ID: &str = "nodeID";
    /// The customer account id.
    pub const ACCOUNT_ID: &str = "account_id";
    /// Where the user confirms the configuration in 4me.
    pub const CONFIRMATION_URL: &str = "confirmation_url";
    /// When the app instance was created.
    pub const CREATED_AT: &str = "created_at";
    /// The JWT over the node id.
    pub const SIGNATURE: &str = "X-4me-Signature";
}

/// A configuration link as 4me sends the user's browser to it.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigurationLink {
    /// The app instance's node id.
    pub node_id: String,
    /// The customer account id.
    pub account: String,
    /// Where the user confirms the configuration in 4me.
    pub confirmation_url: String,
    /// When the app instance was created (as 4me wrote it).
    pub created_at: String,
    signature: String,
}

impl std::fmt::Debug for ConfigurationLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigurationLink")
            .field("node_id", &self.node_id)
            .field("account", &self.account)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// Why a configuration link is refused (each message says what happened, for the user's page).
#[derive(Debug, thiserror::Error)]
pub enum ConfigurationError {
    /// A parameter is missing or empty.
    #[error(
        "The link from 4me is incomplete: it has no {0}. Please start the installation again from the 4me App Store."
    )]
    Missing(&'static str),
    /// The signature does not verify (forged, altered, or signed with another policy).
    #[error(
        "The link is not signed by 4me (its signature is invalid). Please start the installation again from the 4me App Store."
    )]
    BadSignature,
    /// The link is too old.
    #[error(
        "The link from 4me has expired. Please start the installation again from the 4me App Store."
    )]
    Expired,
    /// 4me knows no such app instance of this offering.
    #[error(
        "This installation is not known in 4me (it may have been removed). Please start the installation again from the 4me App Store."
    )]
    UnknownInstance,
    /// `account_id` is not the instance's customer account.
    #[error("The link does not belong to this installation: its account does not match.")]
    AccountMismatch,
    /// `created_at` is not the instance's creation time.
    #[error("The link does not belong to this installation: its creation time does not match.")]
    CreatedAtMismatch,
    /// `confirmation_url` does not lead back to 4me.
    #[error("The link's return address is not a 4me address.")]
    ForeignConfirmation,
    /// The provider's context (credentials, policy) is missing or 4me could not be asked.
    #[error(
        "The installation could not be checked with 4me right now. Please try again in a few minutes."
    )]
    Unavailable(String),
}

impl ConfigurationError {
    /// The HTTP status of the page: 400 for a malformed link, 403 for one that fails a check,
    /// 503 when the check could not be made.
    pub fn status(&self) -> u16 {
        match self {
            ConfigurationError::Missing(_) | ConfigurationError::ForeignConfirmation => 400,
            ConfigurationError::Unavailable(_) => 503,
            _ => 403,
        }
    }
}

impl ConfigurationLink {
    /// The link's parameters from the request's query string; a missing or empty one is an
    /// error naming it.
    pub fn from_request(req: &lambda_http::Request) -> Result<Self, ConfigurationError> {
        Self::from_params(|name| crate::events::query_param(req, name).map(|v| v.into_owned()))
    }

    /// The link's parameters as `lookup` gives them; a missing or empty one is an error naming
    /// it.
    pub fn from_params(
        lookup: impl Fn(&'static str) -> Option<String>,
    ) -> Result<Self, ConfigurationError> {
        let get = |name: &'static str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .ok_or(ConfigurationError::Missing(name))
        };
        Ok(ConfigurationLink {
            node_id: get(params::NODE_ID)?,
            account: get(params::ACCOUNT_ID)?,
            confirmation_url: get(params::CONFIRMATION_URL)?,
            created_at: get(params::CREATED_AT)?,
            signature: get(params::SIGNATURE)?,
        })
    }

    /// The query string 4me would send for these parameters (URL-encoded), e.g. to link back to
    /// the configuration page.
    pub fn query_string(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair(params::NODE_ID, &self.node_id)
            .append_pair(params::ACCOUNT_ID, &self.account)
            .append_pair(params::CONFIRMATION_URL, &self.confirmation_url)
            .append_pair(params::CREATED_AT, &self.created_at)
            .append_pair(params::SIGNATURE, &self.signature)
            .finish()
    }
}

/// An installation whose configuration link 4me signed and whose instance matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configuring {
    /// The app instance's node id.
    pub instance_id: String,
    /// The customer account id.
    pub account: String,
    /// Where the user confirms the configuration in 4me (checked to be a 4me address).
    pub confirmation_url: Url,
}

/// Checks `link` for this loader's offering: the signature with the provider's secrets-webhook
/// policy (its `data` the node id, issued within [`LINK_LIFETIME`]), then the app instance read
/// by node id with the provider token (this offering's, `account_id` and `created_at` equal),
/// and that `confirmation_url` leads back to 4me.
pub async fn verify_link<S: SecretStore>(
    loader: &ContextLoader<S>,
    link: &ConfigurationLink,
) -> Result<Configuring, ConfigurationError> {
    let provider = loader
        .provider()
        .await
        .map_err(|e| ConfigurationError::Unavailable(e.to_string()))?;
    let verifier = provider
        .verifier()
        .map_err(|e| ConfigurationError::Unavailable(e.to_string()))?;
    let token = verifier
        .verify::<Value>(&link.signature)
        .map_err(|e| match e {
            JwtError::Expired => ConfigurationError::Expired,
            _ => ConfigurationError::BadSignature,
        })?;
    if token.data.as_str() != Some(link.node_id.as_str()) {
        return Err(ConfigurationError::BadSignature);
    }
    let now = crate::state::now();
    if token
        .claims
        .iat
        .is_some_and(|iat| now.saturating_sub(iat) > LINK_LIFETIME)
    {
        return Err(ConfigurationError::Expired);
    }
    let client = provider
        .client()
        .map_err(|e| ConfigurationError::Unavailable(e.to_string()))?;
    let confirmation_url = confirmation_target(
        &link.confirmation_url,
        &loader.config().domain,
        client.endpoints().graphql.as_str(),
    )?;
    let instance = app_instance_state(client, &link.node_id)
        .await
        .map_err(|e| ConfigurationError::Unavailable(e.to_string()))?
        .ok_or(ConfigurationError::UnknownInstance)?;
    if loader.config().offering_reference.as_deref() != Some(instance.offering.as_str()) {
        return Err(ConfigurationError::UnknownInstance);
    }
    if instance.account != link.account {
        return Err(ConfigurationError::AccountMismatch);
    }
    if !same_instant(instance.created_at.as_deref(), &link.created_at) {
        return Err(ConfigurationError::CreatedAtMismatch);
    }
    Ok(Configuring {
        instance_id: link.node_id.clone(),
        account: instance.account,
        confirmation_url,
    })
}

/// Whether two timestamps name the same instant (4me may write one with an offset and the other
/// in UTC); text that is no timestamp must be equal as text.
fn same_instant(instance: Option<&str>, link: &str) -> bool {
    let Some(instance) = instance else {
        return false;
    };
    match (
        chrono::DateTime::parse_from_rfc3339(instance),
        chrono::DateTime::parse_from_rfc3339(link),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => instance == link,
    }
}

/// `confirmation_url` when it leads back to 4me: https on the 4me domain (or its Xurrent
/// name) or one of its subdomains, or the origin of the 4me endpoint the engine uses (a local
/// 4me).
fn confirmation_target(
    url: &str,
    domain: &str,
    fourme_endpoint: &str,
) -> Result<Url, ConfigurationError> {
    let target = Url::parse(url).map_err(|_| ConfigurationError::ForeignConfirmation)?;
    let host = target.host_str().unwrap_or_default().to_ascii_lowercase();
    let domains = [domain.to_owned(), domain.replace("4me", "xurrent")];
    let on_domain = target.scheme() == "https"
        && domains
            .iter()
            .any(|d| host == *d || host.ends_with(&format!(".{d}")));
    let same_origin =
        Url::parse(fourme_endpoint).is_ok_and(|endpoint| endpoint.origin() == target.origin());
    if on_domain || same_origin {
        Ok(target)
    } else {
        Err(ConfigurationError::ForeignConfirmation)
    }
}

/// Server-rendered HTML pages of a configuration flow: plain, accessible markup that works
/// without JavaScript.
pub mod page {
    use lambda_http::{Body, Response};

    /// `text` with `& < > " '` escaped for HTML text and attribute values.
    pub fn escape(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&#39;"),
                c => out.push(c),
            }
        }
        out
    }

    const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#1d1d1f}\
h1{font-size:1.5rem}.error{border-left:4px solid #b00020;padding-left:1rem}\
.button{display:inline-block;padding:.6rem 1.2rem;background:#0a5cd5;color:#fff;border-radius:4px;text-decoration:none}\
code{background:#f2f2f2;padding:.1rem .3rem;word-break:break-all}";

    /// A complete page: `title` as its title and heading, `body` as (already escaped) HTML.
    /// Pages are never cached and never framed.
    pub fn html(status: u16, title: &str, body: &str) -> Response<Body> {
        let title = escape(title);
        let document = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title}</title><style>{STYLE}</style></head>\
<body><main><h1>{title}</h1>{body}</main></body></html>\n"
        );
        Response::builder()
            .status(status)
            .header("content-type", "text/html; charset=utf-8")
            .header("cache-control", "no-store")
            .header("x-frame-options", "DENY")
            .header("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
            .header("referrer-policy", "no-referrer")
            .body(Body::Text(document))
            .unwrap_or_default()
    }

    /// An error page: what went wrong (`message`, plain text) and that nothing was changed.
    pub fn error(status: u16, title: &str, message: &str) -> Response<Body> {
        error_then(status, title, message, "")
    }

    /// [`error`] followed by `actions` (HTML, already escaped: e.g. a link to try again).
    pub fn error_then(status: u16, title: &str, message: &str, actions: &str) -> Response<Body> {
        html(
            status,
            title,
            &format!(
                "<div class=\"error\" role=\"alert\"><p>{}</p></div><p>Nothing was changed.</p>{actions}",
                escape(message)
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn the_link_needs_every_parameter() {
        let mut query: HashMap<String, String> = [
            ("nodeID", "NG1"),
            ("account_id", "wdc"),
            ("confirmation_url", "https://wdc.4me.com/x"),
            ("created_at", "2026-12-02T10:00:00Z"),
            ("X-4me-Signature", "a.b.c"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let lookup = |query: &HashMap<String, String>| {
            let query = query.clone();
            move |name: &str| query.get(name).cloned()
        };
        let link = ConfigurationLink::from_params(lookup(&query)).unwrap();
        assert_eq!(link.account, "wdc");
        assert!(link.query_string().contains("X-4me-Signature=a.b.c"));
        assert!(
            !format!("{link:?}").contains("a.b.c"),
            "no signature in logs"
        );
        query.insert("created_at".into(), " ".into());
        assert!(matches!(
            ConfigurationLink::from_params(lookup(&query)),
            Err(ConfigurationError::Missing("created_at"))
        ));
    }

    #[test]
    fn the_confirmation_must_lead_back_to_4me() {
        let local = "http://127.0.0.1:4444/graphql";
        for ok in [
            "https://wdc.4me.com/app_instances/1/confirm",
            "https://4me.com/x",
            "https://wdc.xurrent.com/x",
            "http://127.0.0.1:4444/app_instances/1/confirm",
        ] {
            assert!(confirmation_target(ok, "4me.com", local).is_ok(), "{ok}");
        }
        for bad in [
            "http://wdc.4me.com/x",
            "https://wdc.4me.com.evil.example/x",
            "https://evil4me.com/x",
            "http://127.0.0.1:4445/x",
            "javascript:alert(1)",
            "not a url",
        ] {
            assert!(
                matches!(
                    confirmation_target(bad, "4me.com", local),
                    Err(ConfigurationError::ForeignConfirmation)
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn creation_times_compare_as_instants() {
        assert!(same_instant(
            Some("2026-12-02T11:00:00+01:00"),
            "2026-12-02T10:00:00Z"
        ));
        assert!(!same_instant(
            Some("2026-12-02T10:00:01Z"),
            "2026-12-02T10:00:00Z"
        ));
        assert!(same_instant(Some("yesterday"), "yesterday"));
        assert!(!same_instant(None, "2026-12-02T10:00:00Z"));
    }

    #[test]
    fn pages_escape_what_they_show() {
        assert_eq!(
            page::escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
