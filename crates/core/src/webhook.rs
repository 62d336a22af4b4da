//! Receiving 4me webhooks: the steps every webhook function shares (docs/original.md#webhook-receiver).
//!
//! A 4me webhook delivery is a `POST` with the body `{"jwt": "<JWS>"}`, signed with the webhook
//! policy of the sending account, and the delivery id in `X-4me-Delivery` (or
//! `X-Xurrent-Delivery`). A function receives it in two steps, so that it can load the account's
//! context (and through it the [`Verifier`]) in between, in whichever order its responses need:
//!
//! 1. [`receive`]: anything but `POST` → 405 `Method not allowed. Use POST instead.`; a body that
//!    is not JSON or has no non-blank string `jwt` → 400 [`EXPECTED_JWT_MESSAGE`];
//! 2. [`Received::verify`]: a token failing any check → 400
//!    `Bad JWT - (<delivery>) Incorrect request: <check>\n<domain> - <account>` ([`bad_jwt`]);
//!    otherwise a [`Delivery`]: the verified token and the delivery id (header, else the `jti`).
//!
//! `webhook.verify` deliveries ([`WEBHOOK_VERIFY_EVENT`]) are answered by GETting the payload's
//! [`callback_url`] with [`confirm_callback`]: 200 [`WEBHOOK_VERIFIED_MESSAGE`] when the callback
//! answers exactly 200, else 500 [`VERIFY_FAILED_MESSAGE`]. The caller brings the HTTP client
//! (timeout, redirect policy, address pinning), so a function may check the URL first.

use http::Method;
use lambda_http::{Body, Request, Response};
use serde::Deserialize as _;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::events::{body_bytes, delivery_id};
use crate::policy::{JwtError, VerifiedToken, Verifier, WebhookEnvelope};
use crate::response::{ApiError, ApiResponse};

/// The event 4me sends to activate (verify) a new webhook.
pub const WEBHOOK_VERIFY_EVENT: &str = "webhook.verify";

/// 400: the body is not JSON or has no `jwt`.
pub const EXPECTED_JWT_MESSAGE: &str = "Expected jwt in body";
/// 400: the verified `data` claim is not a 4me webhook envelope (see [`envelope`]).
pub const EXPECTED_ENVELOPE_MESSAGE: &str = "Expected a 4me webhook envelope in the jwt data";
/// 200 after a successful `webhook.verify` callback.
pub const WEBHOOK_VERIFIED_MESSAGE: &str = "Webhook verified";
/// 500 after a failed `webhook.verify` callback.
pub const VERIFY_FAILED_MESSAGE: &str = "Unable to verify webhook";
/// Stands for the delivery id in [`bad_jwt`] messages when the request has no delivery header.
pub const UNKNOWN_DELIVERY: &str = "-";

/// A webhook request that passed the request checks of [`receive`]; not verified yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    jwt: String,
    header_delivery: Option<String>,
}

impl Received {
    /// The delivery id from the `X-4me-Delivery` / `X-Xurrent-Delivery` header, if any.
    pub fn header_delivery(&self) -> Option<&str> {
        self.header_delivery.as_deref()
    }

    /// Verifies the token with `verifier`; a failure is the 400 of [`bad_jwt`] naming `domain`
    /// and `account` (the account whose policy was used).
    pub fn verify<T: DeserializeOwned>(
        self,
        verifier: &Verifier,
        domain: &str,
        account: &str,
    ) -> Result<Delivery<T>, ApiError> {
        let checked = self.check(verifier);
        self.answer(checked, domain, account)
    }

    /// Verifies the token with `verifier`, counting and answering nothing: for a caller that
    /// may try a second verifier ([`answer`](Self::answer) then gives the outcome).
    pub fn check<T: DeserializeOwned>(&self, verifier: &Verifier) -> Result<Delivery<T>, JwtError> {
        let token = verifier.verify::<T>(&self.jwt)?;
        let id = self
            .header_delivery
            .clone()
            .or_else(|| token.claims.jti.clone());
        Ok(Delivery { id, token })
    }

    /// The outcome of a [`check`](Self::check): a failure is counted as a rejection and
    /// becomes the 400 of [`bad_jwt`] naming `domain` and `account`.
    pub fn answer<T>(
        &self,
        checked: Result<Delivery<T>, JwtError>,
        domain: &str,
        account: &str,
    ) -> Result<Delivery<T>, ApiError> {
        checked.map_err(|error| {
            crate::metrics::rejected(error.check());
            bad_jwt(self.header_delivery.as_deref(), &error, domain, account)
        })
    }
}

/// A verified webhook delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery<T = WebhookEnvelope> {
    /// The delivery id: the delivery header, else the token's `jti`.
    pub id: Option<String>,
    /// The verified token; `data` is the (typed) `data` claim.
    pub token: VerifiedToken<T>,
}

/// The request checks of a webhook delivery: `POST` only (405) and a `{"jwt": ...}` body (400
/// [`EXPECTED_JWT_MESSAGE`]). The delivery header is kept for [`Received::verify`].
pub fn receive(req: &Request) -> Result<Received, ApiError> {
    require_post(req)?;
    let jwt = jwt_from_body(body_bytes(req)).ok_or_else(|| {
        crate::metrics::rejected("body");
        ApiError::BadRequest(EXPECTED_JWT_MESSAGE.into())
    })?;
    Ok(Received {
        jwt,
        header_delivery: delivery_id(req).map(str::to_owned),
    })
}

/// `Ok` for a `POST`, else [`ApiError::MethodNotAllowed`] (405).
pub fn require_post(req: &Request) -> Result<(), ApiError> {
    if req.method() == Method::POST {
        Ok(())
    } else {
        crate::metrics::rejected("method");
        Err(ApiError::MethodNotAllowed)
    }
}

/// The `jwt` of a `{"jwt": "..."}` body: `None` for invalid JSON, a non-object, or a missing,
/// non-string or blank `jwt`.
pub fn jwt_from_body(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value
        .get("jwt")
        .and_then(Value::as_str)
        .filter(|jwt| !jwt.trim().is_empty())
        .map(str::to_owned)
}

/// The 400 of a token that failed verification:
/// `Bad JWT - (<delivery>) Incorrect request: <error>\n<domain> - <account>`, with
/// [`UNKNOWN_DELIVERY`] when there is no delivery id. `error` names the failed check only; nothing
/// of the token is included.
pub fn bad_jwt(delivery: Option<&str>, error: &JwtError, domain: &str, account: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "Bad JWT - ({}) Incorrect request: {error}\n{domain} - {account}",
        delivery.unwrap_or(UNKNOWN_DELIVERY)
    ))
}

/// The webhook envelope of a verified `data` claim kept as JSON; anything else is 400
/// [`EXPECTED_ENVELOPE_MESSAGE`].
pub fn envelope(data: &Value) -> Result<WebhookEnvelope, ApiError> {
    WebhookEnvelope::deserialize(data)
        .map_err(|_| ApiError::BadRequest(EXPECTED_ENVELOPE_MESSAGE.into()))
}

/// The `callback` of a `webhook.verify` payload as an `http(s)` URL; a missing or other callback
/// is the 500 [`VERIFY_FAILED_MESSAGE`] (the detail is only logged).
pub fn callback_url(payload: &Value) -> Result<reqwest::Url, ApiError> {
    let callback = payload
        .get("callback")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::upstream(VERIFY_FAILED_MESSAGE, "payload has no callback"))?;
    reqwest::Url::parse(callback)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https"))
        .ok_or_else(|| ApiError::upstream(VERIFY_FAILED_MESSAGE, "callback is not an http(s) URL"))
}

/// GETs the `webhook.verify` callback `url` with `client`: status 200 → 200
/// [`WEBHOOK_VERIFIED_MESSAGE`]; another status or a failed request → 500
/// [`VERIFY_FAILED_MESSAGE`]. The URL (it carries a one-time code) is kept out of the error.
pub async fn confirm_callback(
    client: &reqwest::Client,
    url: reqwest::Url,
) -> Result<Response<Body>, ApiError> {
    match client.get(url).send().await {
        Ok(response) if response.status() == reqwest::StatusCode::OK => {
            Ok(ApiResponse::ok(WEBHOOK_VERIFIED_MESSAGE))
        }
        Ok(response) => Err(ApiError::upstream(
            VERIFY_FAILED_MESSAGE,
            format!("callback answered HTTP {}", response.status().as_u16()),
        )),
        Err(error) => Err(ApiError::upstream(
            VERIFY_FAILED_MESSAGE,
            error.without_url(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use app_builder_sandbox::fakes::CaptureServer;
    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    use super::*;
    use crate::policy::{Algorithm, Audience, PolicyKey, WebhookPolicy};

    const DOMAIN: &str = "4me-demo.com";
    const ACCOUNT: &str = "wdc";

    /// A compact ES256 signer with a freshly generated key.
    struct TestKey(EcdsaKeyPair);

    impl TestKey {
        fn generate() -> TestKey {
            TestKey(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
        }

        fn verifier(&self) -> Verifier {
            let der = self.0.public_key().as_der().unwrap();
            let pem = pem::encode(&pem::Pem::new("PUBLIC KEY", der.as_ref().to_vec()));
            let policy = WebhookPolicy {
                algorithm: Algorithm::ES256,
                key: PolicyKey::from_pem(&pem).unwrap(),
                audience: Audience::Unchecked,
            };
            Verifier::for_account(policy, ACCOUNT, DOMAIN).unwrap()
        }

        fn sign(&self, claims: &Value) -> String {
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
            let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
            let input = format!("{header}.{payload}");
            let signature = self.0.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
        }
    }

    fn claims(jti: Option<&str>, data: Value) -> Value {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut claims = json!({
            "iss": format!("https://{ACCOUNT}.{DOMAIN}"),
            "iat": now,
            "exp": now + 300,
            "data": data,
        });
        if let Some(jti) = jti {
            claims["jti"] = json!(jti);
        }
        claims
    }

    fn secrets_update() -> Value {
        json!({"event": "app_instance.secrets-update", "account_id": 1, "payload": {"a": 1}})
    }

    fn request(method: &str, delivery: Option<&str>, body: &str) -> Request {
        let mut builder = http::Request::builder().method(method).uri("/secrets");
        if let Some(delivery) = delivery {
            builder = builder.header("X-4me-Delivery", delivery);
        }
        builder.body(Body::from(body.to_owned())).unwrap()
    }

    fn jwt_body(jwt: &str) -> String {
        json!({ "jwt": jwt }).to_string()
    }

    fn message(error: &ApiError) -> (u16, String) {
        (error.status().as_u16(), error.public_message().to_owned())
    }

    #[test]
    fn only_post_is_received() {
        for method in ["GET", "PUT", "DELETE"] {
            let error = receive(&request(method, None, &jwt_body("a.b.c"))).unwrap_err();
            assert!(matches!(error, ApiError::MethodNotAllowed), "{method}");
            assert_eq!(error.status(), 405);
        }
        assert!(receive(&request("POST", None, &jwt_body("a.b.c"))).is_ok());
    }

    #[test]
    fn a_body_without_a_jwt_is_400_expected_jwt() {
        for body in [
            "",
            "not json",
            "{}",
            "[]",
            r#"{"jwt": null}"#,
            r#"{"jwt": ""}"#,
            r#"{"jwt": "  "}"#,
            r#"{"jwt": 42}"#,
        ] {
            let error = receive(&request("POST", Some("d-1"), body)).unwrap_err();
            assert_eq!(
                message(&error),
                (400, EXPECTED_JWT_MESSAGE.to_owned()),
                "{body}"
            );
        }
        assert_eq!(
            jwt_from_body(br#"{"jwt": "x.y.z", "other": 1}"#).as_deref(),
            Some("x.y.z")
        );
    }

    #[test]
    fn a_verified_delivery_carries_the_header_id_over_the_jti() {
        let key = TestKey::generate();
        let token = key.sign(&claims(Some("jti-1"), secrets_update()));
        let received = receive(&request("POST", Some("header-1"), &jwt_body(&token))).unwrap();
        assert_eq!(received.header_delivery(), Some("header-1"));
        let delivery: Delivery = received.verify(&key.verifier(), DOMAIN, ACCOUNT).unwrap();
        assert_eq!(delivery.id.as_deref(), Some("header-1"));
        assert_eq!(delivery.token.claims.jti.as_deref(), Some("jti-1"));
        assert_eq!(delivery.token.data.event, "app_instance.secrets-update");
        assert_eq!(delivery.token.data.payload, json!({"a": 1}));
    }

    #[test]
    fn without_a_delivery_header_the_jti_is_the_delivery_id() {
        let key = TestKey::generate();
        let token = key.sign(&claims(Some("jti-2"), secrets_update()));
        let received = receive(&request("POST", None, &jwt_body(&token))).unwrap();
        let delivery: Delivery = received.verify(&key.verifier(), DOMAIN, ACCOUNT).unwrap();
        assert_eq!(delivery.id.as_deref(), Some("jti-2"));

        let token = key.sign(&claims(None, secrets_update()));
        let received = receive(&request("POST", None, &jwt_body(&token))).unwrap();
        let delivery: Delivery<Value> = received.verify(&key.verifier(), DOMAIN, ACCOUNT).unwrap();
        assert_eq!(delivery.id, None);
        assert_eq!(delivery.token.data, secrets_update());
    }

    #[test]
    fn a_token_of_another_key_is_400_bad_jwt_naming_delivery_domain_and_account() {
        let key = TestKey::generate();
        let forger = TestKey::generate();
        let token = forger.sign(&claims(Some("jti-3"), secrets_update()));
        let received = receive(&request("POST", Some("bad-1"), &jwt_body(&token))).unwrap();
        let error = received
            .verify::<WebhookEnvelope>(&key.verifier(), DOMAIN, ACCOUNT)
            .unwrap_err();
        let expected = format!(
            "Bad JWT - (bad-1) Incorrect request: {}\n{DOMAIN} - {ACCOUNT}",
            JwtError::BadSignature
        );
        assert_eq!(message(&error), (400, expected));

        // No header: the unverified jti is not trusted, the placeholder stands in.
        let received = receive(&request("POST", None, &jwt_body(&token))).unwrap();
        let error = received
            .verify::<WebhookEnvelope>(&key.verifier(), DOMAIN, ACCOUNT)
            .unwrap_err();
        assert!(
            error.public_message().starts_with(&format!(
                "Bad JWT - ({UNKNOWN_DELIVERY}) Incorrect request: "
            )),
            "{error}"
        );
    }

    #[test]
    fn the_data_claim_as_json_is_checked_as_an_envelope() {
        assert_eq!(
            envelope(&secrets_update()).unwrap().event,
            "app_instance.secrets-update"
        );
        for data in [json!({"payload": {}}), json!("text"), json!([1])] {
            assert_eq!(
                message(&envelope(&data).unwrap_err()),
                (400, EXPECTED_ENVELOPE_MESSAGE.to_owned()),
                "{data}"
            );
        }
    }

    #[test]
    fn the_callback_must_be_an_http_url() {
        let url =
            callback_url(&json!({"callback": "https://wdc.4me-demo.com/verify?code=1"})).unwrap();
        assert_eq!(url.as_str(), "https://wdc.4me-demo.com/verify?code=1");
        for payload in [
            json!({}),
            json!(null),
            json!({"callback": 1}),
            json!({"callback": "not a url"}),
            json!({"callback": "file:///etc/passwd"}),
        ] {
            assert_eq!(
                message(&callback_url(&payload).unwrap_err()),
                (500, VERIFY_FAILED_MESSAGE.to_owned()),
                "{payload}"
            );
        }
    }

    #[tokio::test]
    async fn the_callback_confirms_only_with_status_200() {
        let server = CaptureServer::start().await.unwrap();
        let client = reqwest::Client::new();
        let url =
            reqwest::Url::parse(&format!("{}/verify?code=secret-code", server.url())).unwrap();

        let response = confirm_callback(&client, url.clone()).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.body().as_ref(),
            format!(r#"{{"message":"{WEBHOOK_VERIFIED_MESSAGE}"}}"#).as_bytes()
        );
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].method, "GET");
        assert_eq!(requests[0].path, "/verify?code=secret-code");

        for status in [204, 302, 404, 500] {
            server.set_status(status);
            let error = confirm_callback(&client, url.clone()).await.unwrap_err();
            assert_eq!(
                message(&error),
                (500, VERIFY_FAILED_MESSAGE.to_owned()),
                "{status}"
            );
        }
    }

    #[tokio::test]
    async fn an_unreachable_callback_fails_without_naming_the_url() {
        // Bind then drop a listener: nothing listens on that port any more.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = reqwest::Url::parse(&format!("http://127.0.0.1:{port}/verify?code=secret-code"))
            .unwrap();
        let error = confirm_callback(&reqwest::Client::new(), url)
            .await
            .unwrap_err();
        assert_eq!(message(&error), (500, VERIFY_FAILED_MESSAGE.to_owned()));
        assert!(!error.to_string().contains("secret-code"), "{error}");
    }
}
