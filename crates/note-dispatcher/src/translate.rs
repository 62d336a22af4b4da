//! Client of the Fun Translations API (<https://funtranslations.com/api>).
//!
//! `POST <base>/translate/<style>.json` with the form field `text` (the API's documented
//! encoding; the Node.js original sent JSON, which the API also reads). A 200 answer yields its
//! `contents` (`{translated, text, translation}`). A 429 (the public tier allows 5 calls per
//! hour) is a *soft* result, as in the original: `{translation, text, error: <message>}` is
//! passed on to the customer instead of failing the event.
//!
//! Paid plans authenticate with the `X-Funtranslations-Api-Secret` header (the API's
//! "Authentication" section); it is sent when the provider configured a secret.

use std::time::Duration;

use rand::seq::IndexedRandom;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::Value;
use url::Url;

/// The header carrying the API secret of a paid plan.
pub const API_SECRET_HEADER: &str = "X-Funtranslations-Api-Secret";

/// The translation styles picked from uniformly at random (the original's list).
pub const TRANSLATIONS: [&str; 5] = ["yoda", "pirate", "gungan", "minion", "morse"];

/// The production base URL.
pub const DEFAULT_API_URL: &str = "https://api.funtranslations.com";

/// A random style from [`TRANSLATIONS`].
pub fn random_translation() -> &'static str {
    TRANSLATIONS
        .choose(&mut rand::rng())
        .copied()
        .unwrap_or("yoda")
}

/// Why a translation failed (a 429 is not a failure, see [`Translation::RateLimited`]).
#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    /// The base URL cannot take the `translate/<style>.json` path.
    #[error("invalid Fun Translations URL for style {0}")]
    Url(String),
    /// Transport failure or timeout.
    #[error("Fun Translations request failed: {0}")]
    Request(String),
    /// A status other than 200 and 429.
    #[error("Fun Translations answered HTTP {0}")]
    Status(u16),
    /// A 200 answer without `contents`.
    #[error("Fun Translations answered without contents")]
    NoContents,
}

/// The result handed to the customer as `translationResponse`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Translation {
    /// The `contents` of a successful answer, as received.
    Translated(Value),
    /// The soft result of a 429.
    RateLimited {
        /// The style asked for.
        translation: String,
        /// The text to translate.
        text: String,
        /// The API's error message.
        error: String,
    },
}

/// The Fun Translations client.
#[derive(Debug, Clone)]
pub struct FunTranslationsClient {
    http: reqwest::Client,
    base: Url,
}

impl FunTranslationsClient {
    /// A client for the API at `base` (e.g. [`DEFAULT_API_URL`] or a fake) with a per-request
    /// `timeout`.
    pub fn new(base: Url, timeout: Duration) -> reqwest::Result<Self> {
        let http = app_builder_core::tls::http_client_builder()
            .timeout(timeout)
            .build()?;
        Ok(Self { http, base })
    }

    /// The base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// Translates `text` into `style`, on the paid plan of `api_secret` when given.
    pub async fn translate(
        &self,
        style: &str,
        text: &str,
        api_secret: Option<&SecretString>,
    ) -> Result<Translation, TranslateError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| TranslateError::Url(style.to_owned()))?
            .pop_if_empty()
            .push("translate")
            .push(&format!("{style}.json"));
        let mut request = self.http.post(url).form(&[("text", text)]);
        if let Some(secret) = api_secret {
            request = request.header(API_SECRET_HEADER, secret.expose_secret());
        }
        let response = request
            .send()
            .await
            .map_err(|e| TranslateError::Request(e.without_url().to_string()))?;
        let status = response.status();
        let body: Option<Value> = response.json().await.ok();
        match status.as_u16() {
            200 => body
                .and_then(|mut body| body.get_mut("contents").map(Value::take))
                .filter(|contents| contents.is_object())
                .map(Translation::Translated)
                .ok_or(TranslateError::NoContents),
            429 => {
                let error = body
                    .as_ref()
                    .and_then(|body| body.pointer("/error/message"))
                    .and_then(Value::as_str)
                    .unwrap_or("Too Many Requests")
                    .to_owned();
                Ok(Translation::RateLimited {
                    translation: style.to_owned(),
                    text: text.to_owned(),
                    error,
                })
            }
            other => Err(TranslateError::Status(other)),
        }
    }
}
