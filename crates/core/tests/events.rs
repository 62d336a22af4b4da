//! Event helpers against recorded-shape fixtures, parsed by the real lambda_http /
//! aws_lambda_events deserialisers.

use app_builder_core::bus::{InstallationChanged, InstallationEvent, LifecycleStep};
use app_builder_core::events::{
    DELIVERY_HEADERS, EngineEvent, EventError, account_param, batch_failures, body_bytes,
    delivery_id, header, http_response_payload, is_scheduled_event, path_param, query_param,
};
use app_builder_core::response::{ApiError, ApiResponse};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::SqsEvent;
use http::{Method, StatusCode};
use lambda_http::{Body, Request};
use serde_json::{Value, json};

const APIGW_V1_JWT: &str = include_str!("fixtures/events/apigw-v1-secrets-jwt.json");
const APIGW_V1_BASE64: &str = include_str!("fixtures/events/apigw-v1-base64.json");
const HTTP_API_V2: &str = include_str!("fixtures/events/http-api-v2.json");
const FUNCTION_URL: &str = include_str!("fixtures/events/function-url.json");
const INSTALLATION: &str = include_str!("fixtures/events/installation-changed.json");
const SCHEDULE: &str = include_str!("fixtures/events/schedule.json");
const SQS: &str = include_str!("fixtures/events/sqs.json");

fn request(fixture: &str) -> Request {
    lambda_http::request::from_str(fixture).expect("fixture is an HTTP event")
}

fn eventbridge(fixture: &str) -> EventBridgeEvent<Value> {
    serde_json::from_str(fixture).expect("fixture is an EventBridge event")
}

fn value(fixture: &str) -> Value {
    serde_json::from_str(fixture).expect("fixture is JSON")
}

#[test]
fn rest_v1_post_with_jwt() {
    let req = request(APIGW_V1_JWT);
    assert_eq!(req.method(), Method::POST);
    assert_eq!(req.uri().path(), "/Prod/secrets");
    // REST v1 keeps the sender's casing; lookups ignore it.
    for name in ["X-4me-Delivery", "x-4me-delivery", "X-4ME-DELIVERY"] {
        assert_eq!(
            header(&req, name),
            Some("0b8e7d39-1f5b-4c1e-9c59-5d0a4e3c2a11")
        );
    }
    assert_eq!(
        delivery_id(&req),
        Some("0b8e7d39-1f5b-4c1e-9c59-5d0a4e3c2a11")
    );
    assert_eq!(
        header(&req, "user-agent"),
        Some("4me/1.0 (https://developer.4me.com/v1/webhooks)")
    );
    assert_eq!(header(&req, "x-missing"), None);
    let body: Value = serde_json::from_slice(body_bytes(&req)).unwrap();
    assert_eq!(
        body["jwt"],
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    );
    assert_eq!(query_param(&req, "account"), None);
    assert_eq!(path_param(&req, "account"), None);
    assert_eq!(account_param(&req), None);
}

#[test]
fn rest_v1_base64_body_is_decoded() {
    let req = request(APIGW_V1_BASE64);
    assert_eq!(req.method(), Method::POST);
    assert_eq!(
        body_bytes(&req),
        br#"{"state":"wdc-7","code":"ls-auth-code"}"#
    );
    // Only the Xurrent-branded delivery header is present.
    assert_eq!(
        delivery_id(&req),
        Some("5d3c1b2a-9e8f-4a7b-b6c5-d4e3f2a1b0c9")
    );
    assert_eq!(query_param(&req, "account").as_deref(), Some("wdc"));
    assert_eq!(path_param(&req, "proxy"), Some("callback"));
    assert_eq!(account_param(&req).as_deref(), Some("wdc"));
}

#[test]
fn http_api_v2_request() {
    let req = request(HTTP_API_V2);
    assert_eq!(req.method(), Method::POST);
    assert_eq!(req.uri().path(), "/integration/refresh");
    assert_eq!(
        delivery_id(&req),
        Some("9a8b7c6d-5e4f-4321-8765-43210fedcba9")
    );
    assert_eq!(header(&req, "Content-Type"), Some("application/json"));
    assert_eq!(query_param(&req, "mode").as_deref(), Some("full"));
    assert_eq!(query_param(&req, "account").as_deref(), Some("wdc"));
    assert_eq!(path_param(&req, "proxy"), Some("refresh"));
    assert_eq!(body_bytes(&req), br#"{"refresh":true}"#);
}

#[test]
fn function_url_request() {
    let req = request(FUNCTION_URL);
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.uri().path(), "/integration/authorize");
    assert_eq!(query_param(&req, "state").as_deref(), Some("wdc-7"));
    // Percent-decoded from rawQueryString.
    assert_eq!(query_param(&req, "code").as_deref(), Some("ls code"));
    assert_eq!(account_param(&req).as_deref(), Some("wdc"));
    assert_eq!(path_param(&req, "proxy"), None);
    assert_eq!(delivery_id(&req), None);
    assert!(body_bytes(&req).is_empty());
}

#[test]
fn hand_built_request_falls_back_to_uri_query() {
    let req: Request = http::Request::builder()
        .uri("https://example.com/integration?account=&x=a%2Bb")
        .header("X-Xurrent-Delivery", "")
        .header("X-4me-Delivery", "d-1")
        .body(Body::Empty)
        .unwrap();
    assert_eq!(query_param(&req, "x").as_deref(), Some("a+b"));
    // An empty account query parameter counts as absent, as in the original.
    assert_eq!(query_param(&req, "account").as_deref(), Some(""));
    assert_eq!(account_param(&req), None);
    assert_eq!(delivery_id(&req), Some("d-1"));
    assert_eq!(DELIVERY_HEADERS[0], "x-4me-delivery");
}

#[test]
fn delivery_id_falls_back_when_4me_header_is_empty() {
    let req: Request = http::Request::builder()
        .header("X-4me-Delivery", "")
        .header("x-xurrent-delivery", "x-2")
        .body(Body::Empty)
        .unwrap();
    assert_eq!(delivery_id(&req), Some("x-2"));
}

#[test]
fn installation_event_reads_the_detail_and_the_event_id() {
    let event = InstallationEvent::from_event(eventbridge(INSTALLATION)).unwrap();
    assert_eq!(event.id, "f2e5d4c3-7b8a-4c1d-9e0f-1a2b3c4d5e6f");
    assert_eq!(
        event.detail,
        InstallationChanged {
            domain: "4me-demo.com".into(),
            offering: "lansweeper".into(),
            account: "wdc".into(),
            step: LifecycleStep::SecretsUpdated,
            keys: vec!["application".into(), "secrets".into()],
            change: "secrets/token/https://wdc.4me-demo.com/9f86d081884c7d65".into(),
        }
    );
    // What the publisher writes is what the consumer reads.
    let round_trip: InstallationChanged =
        serde_json::from_value(serde_json::to_value(&event.detail).unwrap()).unwrap();
    assert_eq!(round_trip, event.detail);
}

#[test]
fn installation_event_without_its_detail_is_a_400() {
    for detail in [
        json!({}),
        json!({"domain": "d", "offering": "o", "account": "a", "change": "c", "step": "exploded"}),
        json!({"domain": "d", "offering": "o", "account": "a", "step": "deleted"}),
    ] {
        let mut raw = value(INSTALLATION);
        raw["detail"] = detail;
        let err = EngineEvent::classify(raw).unwrap_err();
        assert!(
            matches!(
                err,
                EventError::Malformed {
                    kind: "installation",
                    ..
                }
            ),
            "{err}"
        );
        let api: ApiError = err.into();
        assert_eq!(api.status(), StatusCode::BAD_REQUEST);
    }
}

#[test]
fn schedule_detection() {
    let schedule = eventbridge(SCHEDULE);
    assert!(is_scheduled_event(&schedule));
    assert_eq!(schedule.detail_type, "Scheduled Event");
    assert_eq!(
        schedule.resources.as_deref(),
        Some(
            &["arn:aws:events:eu-west-1:123456789012:rule/LansweeperResyncSchedule".to_owned()][..]
        )
    );
    assert!(!is_scheduled_event(&eventbridge(INSTALLATION)));
}

#[test]
fn sqs_batch_and_failures() {
    let event: SqsEvent = serde_json::from_str(SQS).unwrap();
    let ids: Vec<_> = event
        .records
        .iter()
        .map(|record| record.message_id.clone().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "2b7e1516-28ae-4d2a-a6f7-15883c4f3c01",
            "9c2f4d1e-7a3b-4e5c-8d6f-0a1b2c3d4e02"
        ]
    );
    assert_eq!(event.records[1].body.as_deref(), Some("widget-data-center"));

    let response = batch_failures([ids[1].as_str()]);
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "9c2f4d1e-7a3b-4e5c-8d6f-0a1b2c3d4e02"}]})
    );
    let none = batch_failures(Vec::<String>::new());
    assert_eq!(
        serde_json::to_value(&none).unwrap(),
        json!({"batchItemFailures": []})
    );
}

#[test]
fn classify_routes_every_fixture() {
    for fixture in [APIGW_V1_JWT, APIGW_V1_BASE64, HTTP_API_V2, FUNCTION_URL] {
        match EngineEvent::classify(value(fixture)).unwrap() {
            EngineEvent::Http(req) => assert!(header(&req, "host").is_some()),
            other => panic!("expected HTTP, got {other:?}"),
        }
    }
    match EngineEvent::classify(value(APIGW_V1_BASE64)).unwrap() {
        EngineEvent::Http(req) => assert_eq!(
            body_bytes(&req),
            br#"{"state":"wdc-7","code":"ls-auth-code"}"#
        ),
        other => panic!("expected HTTP, got {other:?}"),
    }
    match EngineEvent::classify(value(INSTALLATION)).unwrap() {
        EngineEvent::Installation(event) => {
            assert_eq!(event.detail.offering, "lansweeper");
            assert_eq!(event.detail.step, LifecycleStep::SecretsUpdated);
        }
        other => panic!("expected an installation event, got {other:?}"),
    }
    // A CloudTrail record of a secret write is no installation event any more.
    let cloudtrail = json!({
        "source": "aws.secretsmanager", "detail-type": "AWS API Call via CloudTrail",
        "detail": {"eventName": "PutSecretValue", "requestParameters": {"secretId": "x"}}
    });
    assert!(!matches!(
        EngineEvent::classify(cloudtrail),
        Ok(EngineEvent::Installation(_))
    ));
    match EngineEvent::classify(value(SCHEDULE)).unwrap() {
        EngineEvent::Schedule(event) => assert_eq!(event.source, "aws.events"),
        other => panic!("expected schedule, got {other:?}"),
    }
    match EngineEvent::classify(value(SQS)).unwrap() {
        EngineEvent::Sqs(event) => assert_eq!(event.records.len(), 2),
        other => panic!("expected SQS, got {other:?}"),
    }
}

#[test]
fn classify_rejects_unknown_and_malformed_payloads() {
    assert!(matches!(
        EngineEvent::classify(json!({"hello": "world"})),
        Err(EventError::Unrecognised(_))
    ));
    assert!(matches!(
        EngineEvent::classify(json!({"Records": "not-a-list"})),
        Err(EventError::Malformed { kind: "SQS", .. })
    ));
    assert!(matches!(
        EngineEvent::classify(json!({"source": "aws.events"})),
        Err(EventError::Malformed { .. })
    ));
}

#[test]
fn response_payload_matches_request_format() {
    let rest = request(APIGW_V1_JWT);
    let payload = http_response_payload(&rest, ApiResponse::ok("Secrets stored")).unwrap();
    assert_eq!(payload["statusCode"], 200);
    assert_eq!(payload["body"], r#"{"message":"Secrets stored"}"#);
    assert_eq!(payload["isBase64Encoded"], false);
    assert_eq!(
        payload["multiValueHeaders"]["content-type"],
        json!(["application/json"])
    );

    let v2 = request(HTTP_API_V2);
    let response = ApiError::MethodNotAllowed.into_response();
    let payload = http_response_payload(&v2, response).unwrap();
    assert_eq!(payload["statusCode"], 405);
    assert_eq!(
        payload["body"],
        r#"{"message":"Method not allowed. Use POST instead."}"#
    );
    assert_eq!(payload["headers"]["content-type"], "application/json");

    let url = request(FUNCTION_URL);
    let payload = http_response_payload(
        &url,
        ApiResponse::redirect("https://wdc.4me-demo.com/app_instances/7"),
    )
    .unwrap();
    assert_eq!(payload["statusCode"], 302);
    assert_eq!(
        payload["headers"]["location"],
        "https://wdc.4me-demo.com/app_instances/7"
    );
}

#[test]
fn function_arn_qualifiers_are_dropped() {
    use app_builder_core::events::unqualified_function_arn;
    let arn = "arn:aws:lambda:eu-west-1:123456789012:function:typeform-Fn";
    assert_eq!(unqualified_function_arn(arn), arn);
    assert_eq!(unqualified_function_arn(&format!("{arn}:live")), arn);
    assert_eq!(unqualified_function_arn(&format!("{arn}:7")), arn);
    assert_eq!(unqualified_function_arn("local"), "local");
}

/// A body said to be base64 that is not, and a body over the limit, are refused by the
/// classifier: the event library would panic on the first while building the request.
#[test]
fn bodies_that_are_not_base64_or_too_large_are_refused_before_the_request_is_built() {
    let mut event = value(APIGW_V1_BASE64);
    event["body"] = json!("%%% not base64 %%%");
    let error = EngineEvent::classify(event).expect_err("refused");
    assert!(matches!(error, EventError::NotBase64), "{error}");
    assert_eq!(ApiError::from(error).status(), StatusCode::BAD_REQUEST);

    let mut event = value(APIGW_V1_JWT);
    event["body"] = json!("x".repeat(app_builder_core::events::MAX_BODY_BYTES + 1));
    let error = EngineEvent::classify(event).expect_err("refused");
    assert!(matches!(error, EventError::TooLarge), "{error}");
    assert_eq!(
        ApiError::from(error).status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );

    // At the limit, and valid base64: an ordinary request.
    let mut event = value(APIGW_V1_JWT);
    event["body"] = json!("x".repeat(app_builder_core::events::MAX_BODY_BYTES));
    assert!(matches!(
        EngineEvent::classify(event),
        Ok(EngineEvent::Http(_))
    ));
    assert!(matches!(
        EngineEvent::classify(value(APIGW_V1_BASE64)),
        Ok(EngineEvent::Http(_))
    ));
}

/// The runtime's JSON read as a `ScreenedPayload`: every event as `Value` reads it, except that a
/// request body longer than any accepted one is left unread, and the classifier refuses it.
#[test]
fn a_body_too_long_to_accept_is_not_read_into_the_payload() {
    use app_builder_core::events::{MAX_BODY_BYTES, ScreenedPayload, UNREAD_BODY_MEMBER};
    let screened = |text: &str| serde_json::from_str::<ScreenedPayload>(text).unwrap().0;
    for fixture in [
        APIGW_V1_JWT,
        APIGW_V1_BASE64,
        HTTP_API_V2,
        FUNCTION_URL,
        INSTALLATION,
        SCHEDULE,
        SQS,
        "[1, \"two\", {\"body\": 3}]",
        "\"text\"",
        "null",
        "-1.5",
    ] {
        assert_eq!(screened(fixture), value(fixture), "{fixture}");
    }

    // Base64 of twice the limit (raw, it would be refused too): left unread, refused with 413.
    let mut event = value(APIGW_V1_BASE64);
    let long = "QUJD".repeat(MAX_BODY_BYTES / 2);
    event["body"] = json!(long);
    let payload = screened(&event.to_string());
    assert!(payload.get("body").is_none());
    assert_eq!(payload[UNREAD_BODY_MEMBER], json!(long.len()));
    let error = EngineEvent::classify(payload).expect_err("refused");
    assert!(matches!(error, EventError::TooLarge), "{error}");

    // The longest body that can be accepted (base64 of the limit) is read as it is.
    let mut event = value(APIGW_V1_BASE64);
    event["body"] = json!("A".repeat(MAX_BODY_BYTES.div_ceil(3) * 4));
    assert_eq!(screened(&event.to_string()), event);
}

/// A request built from a raw payload has no Lambda context; `classify_for` carries the
/// invocation's deadline so that `attempt_deadline` gives it rather than a default from now.
#[test]
fn a_classified_request_carries_the_invocations_deadline() {
    use app_builder_core::events::{Invocation, attempt_deadline};
    use std::time::Duration;
    let mut invocation = Invocation::new("arn", Duration::from_secs(1));
    invocation.deadline = 1_900_000_000;
    let Ok(EngineEvent::Http(request)) =
        EngineEvent::classify_for(value(APIGW_V1_JWT), &invocation)
    else {
        panic!("not an HTTP request");
    };
    assert_eq!(
        attempt_deadline(&request, Duration::from_secs(5)),
        1_900_000_000
    );
    let Ok(EngineEvent::Http(request)) = EngineEvent::classify(value(APIGW_V1_JWT)) else {
        panic!("not an HTTP request");
    };
    let default = attempt_deadline(&request, Duration::from_secs(5));
    assert!(
        (default - app_builder_core::state::now() - 5).abs() <= 1,
        "{default}"
    );
}

/// Found by fuzzing (the `classify` target): a function URL event whose `host` is no host (here
/// a port that is not a number) made the event library panic while building the request's URI.
/// It is refused with 400 instead.
#[test]
fn an_event_no_request_can_be_built_from_is_refused_not_a_panic() {
    let payload = value(include_str!("fixtures/events/function-url-bad-host.json"));
    let error = EngineEvent::classify(payload).expect_err("refused");
    assert!(matches!(error, EventError::Unbuildable), "{error}");
    assert_eq!(ApiError::from(error).status(), StatusCode::BAD_REQUEST);
}
