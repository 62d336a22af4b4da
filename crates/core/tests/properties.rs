//! Properties of the parsers that take outside input, over generated input (proptest): the JWT
//! parser and verifier, and the event classifier. Neither may panic on anything; the verifier
//! accepts exactly the tokens signed with the policy's key for the bound account.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use app_builder_core::events::{EngineEvent, EventError, MAX_BODY_BYTES, ScreenedPayload};
use app_builder_core::policy::{Algorithm, Audience, PolicyKey, Verifier, WebhookPolicy};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use proptest::prelude::*;
use serde_json::{Value, json};

const SECRET: &[u8] = b"a shared secret for the property tests of the verifier";
const ACCOUNT: &str = "wdc";
const DOMAIN: &str = "4me-staging.com";
const AUDIENCE: &str = "integrations provided by wdc@4me-staging.com";

/// 512 cases a property; a failure is reported with its minimal input, not saved to the tree.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn verifier() -> Verifier {
    Verifier::for_account(
        WebhookPolicy {
            algorithm: Algorithm::HS256,
            key: PolicyKey::shared_secret(SECRET).unwrap(),
            audience: Audience::Exact(AUDIENCE.to_owned()),
        },
        ACCOUNT,
        DOMAIN,
    )
    .unwrap()
}

fn now() -> i64 {
    app_builder_core::state::now()
}

/// An HS256 compact JWS of `header` and `claims` signed with `secret`.
fn sign(header: &Value, claims: &[u8], secret: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

fn valid_claims(data: Value) -> Value {
    json!({"iss": format!("https://{ACCOUNT}.{DOMAIN}"), "aud": AUDIENCE, "sub": "1",
           "jti": "j", "iat": now(), "nbf": now(), "data": data})
}

use app_builder_test_support::any_json;

/// Names the classifier and the event library look at, so generated objects reach them.
fn event_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("source".to_owned()),
        Just("Records".to_owned()),
        Just("body".to_owned()),
        Just("isBase64Encoded".to_owned()),
        Just("httpMethod".to_owned()),
        Just("headers".to_owned()),
        Just("requestContext".to_owned()),
        Just("detail".to_owned()),
        Just("detail-type".to_owned()),
        Just("version".to_owned()),
        Just("rawPath".to_owned()),
        ".{0,8}",
    ]
}

fn event_like() -> impl Strategy<Value = Value> {
    let value = prop_oneof![
        any_json(),
        Just(json!("4me-app-builder")),
        Just(json!("aws.events")),
        Just(json!(true)),
        Just(json!("2.0")),
        "[A-Za-z0-9+/=%]{0,64}".prop_map(Value::String),
    ];
    prop::collection::btree_map(event_key(), value, 0..10)
        .prop_map(|map| Value::Object(map.into_iter().collect()))
}

proptest! {
    #![proptest_config(config())]

    /// No string is a token the verifier accepts, and none makes it panic.
    #[test]
    fn the_verifier_refuses_arbitrary_strings(token in ".{0,300}") {
        prop_assert!(verifier().verify::<Value>(&token).is_err());
    }

    /// Three base64url segments of anything: refused, never a panic.
    #[test]
    fn the_verifier_refuses_arbitrary_segments(
        header in any_json(), claims in prop::collection::vec(any::<u8>(), 0..200),
        signature in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        let token = format!("{}.{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(&claims), URL_SAFE_NO_PAD.encode(&signature));
        prop_assert!(verifier().verify::<Value>(&token).is_err());
    }

    /// A token signed with the policy's key over valid claims verifies with any `data`; the
    /// same token with any one character changed does not.
    #[test]
    fn a_signed_token_verifies_and_any_change_breaks_it(
        data in any_json().prop_filter("a data claim", |data| !data.is_null()),
        at in any::<prop::sample::Index>(), to in "[A-Za-z0-9_.=-]",
    ) {
        let claims = valid_claims(data.clone());
        let token = sign(&json!({"alg": "HS256", "typ": "JWT"}), claims.to_string().as_bytes(), SECRET);
        let verified = verifier().verify::<Value>(&token).unwrap();
        // As serde_json reads the same JSON text (its float parsing may differ in the last digit).
        let expected: Value = serde_json::from_str(&data.to_string()).unwrap();
        prop_assert_eq!(&verified.data, &expected);

        let index = at.index(token.len());
        let mut changed = token.clone();
        changed.replace_range(index..=index, &to);
        prop_assume!(changed != token);
        // base64url's last character may carry unused bits: a change there can decode to the
        // same bytes, and then it is the same token.
        let same_bytes = changed.split('.').map(|part| URL_SAFE_NO_PAD.decode(part).ok())
            .eq(token.split('.').map(|part| URL_SAFE_NO_PAD.decode(part).ok()));
        prop_assume!(!same_bytes);
        prop_assert!(verifier().verify::<Value>(&changed).is_err(), "{changed}");
    }

    /// Signed with the right key but claiming another account, audience or algorithm: refused.
    #[test]
    fn signed_claims_for_another_account_are_refused(
        account in "[a-z]{1,12}", audience in ".{0,30}",
    ) {
        prop_assume!(account != ACCOUNT);
        let mut claims = valid_claims(json!({}));
        claims["iss"] = json!(format!("https://{account}.{DOMAIN}"));
        let token = sign(&json!({"alg": "HS256"}), claims.to_string().as_bytes(), SECRET);
        prop_assert!(verifier().verify::<Value>(&token).is_err());

        prop_assume!(audience != AUDIENCE);
        let mut claims = valid_claims(json!({}));
        claims["aud"] = json!(audience);
        let token = sign(&json!({"alg": "HS256"}), claims.to_string().as_bytes(), SECRET);
        prop_assert!(verifier().verify::<Value>(&token).is_err());

        let claims = valid_claims(json!({}));
        let token = sign(&json!({"alg": "none"}), claims.to_string().as_bytes(), SECRET);
        prop_assert!(verifier().verify::<Value>(&token).is_err());
    }

    /// Any JSON is classified or refused with an error, never a panic.
    #[test]
    fn the_classifier_takes_any_json(payload in any_json()) {
        let _ = EngineEvent::classify(payload);
    }

    /// Any JSON (none of it near the body limit) reads as a screened payload exactly as it
    /// reads as a value: the screening changes nothing but an over-long body.
    #[test]
    fn a_screened_payload_reads_any_json_as_a_value_does(payload in any_json(), event in event_like()) {
        for value in [payload, event] {
            let text = value.to_string();
            let screened = serde_json::from_str::<ScreenedPayload>(&text).unwrap().0;
            prop_assert_eq!(screened, serde_json::from_str::<Value>(&text).unwrap());
        }
    }

    /// Objects with the members the classifier and the event library read, with values of
    /// every kind: classified or refused, never a panic.
    #[test]
    fn the_classifier_takes_any_event_shaped_object(payload in event_like()) {
        let _ = EngineEvent::classify(payload);
    }

    /// An API Gateway request with any body, said to be base64 or not: a body that is not
    /// valid base64 while said to be is refused as such; anything else is a request whose
    /// body is the (decoded) body sent.
    #[test]
    fn any_request_body_is_refused_or_delivered_intact(
        body in prop_oneof![".{0,200}", prop::collection::vec(any::<u8>(), 0..200).prop_map(|b| STANDARD.encode(b))],
        base64 in any::<bool>(),
    ) {
        let mut event: Value = serde_json::from_str(include_str!("fixtures/events/apigw-v1-secrets-jwt.json")).unwrap();
        event["body"] = json!(body);
        event["isBase64Encoded"] = json!(base64);
        let decoded = if base64 { STANDARD.decode(&body).ok() } else { Some(body.clone().into_bytes()) };
        match (EngineEvent::classify(event), decoded) {
            (Ok(EngineEvent::Http(request)), Some(bytes)) => {
                prop_assert_eq!(app_builder_core::events::body_bytes(&request), &bytes[..]);
            }
            (Err(EventError::NotBase64), None) => {}
            (other, decoded) => prop_assert!(false, "{other:?} for {decoded:?}"),
        }
        prop_assert!(body.len() <= MAX_BODY_BYTES);
    }
}
