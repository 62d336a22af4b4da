//! A fake of the Fun Translations API (<https://funtranslations.com/api>).
//!
//! `POST /translate/<style>.json` with the form field `text` (a JSON body `{"text": ...}`, as the
//! Node.js original sends, is accepted too) answers 200
//! `{"success":{"total":1},"contents":{"translated":…,"text":…,"translation":<style>}}`.
//! The translation is deterministic (see [`FunTranslations::translate`]) so tests can assert it.
//!
//! Errors use the real error shape `{"error":{"code":<status>,"message":…}}`: 404 for an unknown
//! style, 400 without `text`, and — after [`FunTranslations::rate_limit_next`] — 429 with
//! `Too Many Requests: Rate limit of 5 requests per hour exceeded. …`.
//!
//! Paid plans authenticate with the `X-Funtranslations-Api-Secret` header
//! (<https://funtranslations.com/api>, "Authentication"): after [`FunTranslations::set_api_secret`]
//! a request carrying that secret is on the paid plan (never rate limited), one carrying another
//! secret gets 401 `Unauthorized`; a request without the header is on the public plan.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// The translation styles the fake knows (those the note-dispatcher picks from, docs/original.md#note-dispatcher).
pub const TRANSLATIONS: [&str; 5] = ["yoda", "pirate", "gungan", "minion", "morse"];

/// The message of the fake's 429 answer (the real API's wording).
pub const RATE_LIMIT_MESSAGE: &str = "Too Many Requests: Rate limit of 5 requests per hour exceeded. Please wait for 59 minutes and 59 seconds.";

/// One call received by the fake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranslationCall {
    /// The style from the path (`yoda` for `/translate/yoda.json`).
    pub style: String,
    /// The `text` field, if any.
    pub text: Option<String>,
    /// The request's `content-type`.
    pub content_type: Option<String>,
    /// The `X-Funtranslations-Api-Secret` header, if any.
    pub api_secret: Option<String>,
    /// The HTTP status the fake answered.
    pub status: u16,
}

/// The header paid plans authenticate with.
pub const API_SECRET_HEADER: &str = "X-Funtranslations-Api-Secret";

#[derive(Default)]
struct FakeState {
    calls: Vec<TranslationCall>,
    api_secret: Option<String>,
    rate_limited: u32,
    failures: Vec<u16>,
}

struct Inner {
    state: Arc<Mutex<FakeState>>,
    url: String,
    _shutdown: oneshot::Sender<()>,
}

/// Handle of a running Fun Translations fake (cheap to clone).
#[derive(Clone)]
pub struct FunTranslations {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FunTranslations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunTranslations")
            .field("url", &self.inner.url)
            .finish()
    }
}

impl FunTranslations {
    /// Starts the fake on `127.0.0.1` with an ephemeral port.
    pub async fn start() -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let router = Router::new()
            .route("/translate/{file}", post(translate))
            .with_state(state.clone());
        let (url, shutdown) = super::serve(router).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                state,
                url,
                _shutdown: shutdown,
            }),
        })
    }

    /// Base URL, `http://127.0.0.1:<port>` (the value of `FUNTRANSLATIONS_API_URL`).
    pub fn url(&self) -> String {
        self.inner.url.clone()
    }

    /// The calls received so far, in order.
    pub fn calls(&self) -> Vec<TranslationCall> {
        self.lock().calls.clone()
    }

    /// Accepts `secret` as a paid-plan API secret.
    pub fn set_api_secret(&self, secret: &str) {
        self.lock().api_secret = Some(secret.to_owned());
    }

    /// The next `times` public-plan translation requests are answered with the real 429 error.
    pub fn rate_limit_next(&self, times: u32) {
        self.lock().rate_limited += times;
    }

    /// The next request is answered with `status` and the error shape (e.g. 500, 503).
    pub fn fail_next(&self, status: u16) {
        self.lock().failures.push(status);
    }

    /// The fake's deterministic translation of `text` into `style`: `morse` is real Morse code
    /// (letters and digits, words separated by `/`); the other styles append a signature phrase
    /// (`yoda` → `"<text>, hmm."`, `pirate` → `"<text>, arr!"`, `gungan` → `"<text>, meesa
    /// thinks."`, `minion` → `"<text>, banana!"`).
    pub fn translate(style: &str, text: &str) -> String {
        match style {
            "morse" => morse(text),
            "yoda" => format!("{text}, hmm."),
            "pirate" => format!("{text}, arr!"),
            "gungan" => format!("{text}, meesa thinks."),
            _ => format!("{text}, banana!"),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        lock(&self.inner.state)
    }
}

fn lock(state: &Mutex<FakeState>) -> MutexGuard<'_, FakeState> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": status.as_u16(), "message": message}})),
    )
        .into_response()
}

/// Reads `text` from a form or JSON body.
fn text_of(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.starts_with("application/json") {
        serde_json::from_slice::<Value>(body)
            .ok()?
            .get("text")?
            .as_str()
            .map(str::to_owned)
    } else {
        url::form_urlencoded::parse(body)
            .find(|(key, _)| key == "text")
            .map(|(_, value)| value.into_owned())
    }
}

async fn translate(
    State(state): State<Arc<Mutex<FakeState>>>,
    Path(file): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let style = file.strip_suffix(".json").unwrap_or(&file).to_owned();
    let text = text_of(&headers, &body);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let api_secret = headers
        .get(API_SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut state = lock(&state);
    let paid = api_secret.is_some() && api_secret == state.api_secret;
    let response =
        if let Some(status) = (!state.failures.is_empty()).then(|| state.failures.remove(0)) {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error(status, status.canonical_reason().unwrap_or("Error"))
        } else if api_secret.is_some() && !paid {
            error(StatusCode::UNAUTHORIZED, "Unauthorized")
        } else if !paid && state.rate_limited > 0 {
            state.rate_limited -= 1;
            error(StatusCode::TOO_MANY_REQUESTS, RATE_LIMIT_MESSAGE)
        } else if !file.ends_with(".json") || !TRANSLATIONS.contains(&style.as_str()) {
            error(StatusCode::NOT_FOUND, "Not Found")
        } else {
            match &text {
                None => error(StatusCode::BAD_REQUEST, "Bad Request: text is missing."),
                Some(text) => axum::Json(json!({
                    "success": {"total": 1},
                    "contents": {
                        "translated": FunTranslations::translate(&style, text),
                        "text": text,
                        "translation": style,
                    }
                }))
                .into_response(),
            }
        };
    state.calls.push(TranslationCall {
        style,
        text,
        content_type,
        api_secret,
        status: response.status().as_u16(),
    });
    response
}

fn morse(text: &str) -> String {
    const CODES: [(char, &str); 36] = [
        ('a', ".-"),
        ('b', "-..."),
        ('c', "-.-."),
        ('d', "-.."),
        ('e', "."),
        ('f', "..-."),
        ('g', "--."),
        ('h', "...."),
        ('i', ".."),
        ('j', ".---"),
        ('k', "-.-"),
        ('l', ".-.."),
        ('m', "--"),
        ('n', "-."),
        ('o', "---"),
        ('p', ".--."),
        ('q', "--.-"),
        ('r', ".-."),
        ('s', "..."),
        ('t', "-"),
        ('u', "..-"),
        ('v', "...-"),
        ('w', ".--"),
        ('x', "-..-"),
        ('y', "-.--"),
        ('z', "--.."),
        ('0', "-----"),
        ('1', ".----"),
        ('2', "..---"),
        ('3', "...--"),
        ('4', "....-"),
        ('5', "....."),
        ('6', "-...."),
        ('7', "--..."),
        ('8', "---.."),
        ('9', "----."),
    ];
    text.split_whitespace()
        .map(|word| {
            word.chars()
                .filter_map(|c| {
                    let c = c.to_ascii_lowercase();
                    CODES.iter().find(|(k, _)| *k == c).map(|(_, code)| *code)
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn morse_encodes_letters_and_separates_words() {
        assert_eq!(
            FunTranslations::translate("morse", "SOS 1"),
            "... --- ... / .----"
        );
        assert_eq!(FunTranslations::translate("yoda", "a note"), "a note, hmm.");
    }
}
