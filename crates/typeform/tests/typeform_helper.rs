//! Signature validation and form response → note conversion (docs/original.md#tests-of-the-original
//! `typeform_helper.test.js`, plus the field types the original could not render).

use serde_json::{Value, json};
use typeform::note::form_response_to_note;
use typeform::signature::{SignatureError, verify};

/// Body and signature computed independently:
/// `printf '%s' "$BODY" | openssl dgst -sha256 -hmac 12345 -binary | base64`.
const BODY: &str = r#"{"event_id":"01F0KGZX8T5N8THAFESVJRHBH2","event_type":"form_response","form_response":{"form_id":"u6nXL7"}}"#;
const GOOD_SIGNATURE: &str = "sha256=htqSJaaY70+T+ONta6ilqGxaCUO8j0qHoja4/Gx1rYw=";

#[test]
fn validates_correct_sig() {
    assert_eq!(
        verify("12345", BODY.as_bytes(), Some(GOOD_SIGNATURE)),
        Ok(())
    );
    assert_eq!(
        typeform::signature::sign("12345", BODY.as_bytes()),
        GOOD_SIGNATURE
    );
}

#[test]
fn detects_message_with_incorrect_hash() {
    let wrong = "sha256=htqSJaaY70+T+ONta6ilqGxaCUO8j0qHoja4/Gx1rYx=";
    assert!(verify("12345", BODY.as_bytes(), Some(wrong)).is_err());
    assert_eq!(
        verify("123456", BODY.as_bytes(), Some(GOOD_SIGNATURE)),
        Err(SignatureError::Mismatch)
    );
    // The key is the secret's text, not its hex-decoded bytes.
    assert_eq!(
        verify("3132333435", BODY.as_bytes(), Some(GOOD_SIGNATURE)),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn detects_message_without_hash() {
    assert_eq!(
        verify("12345", BODY.as_bytes(), None),
        Err(SignatureError::MissingHeader)
    );
    assert_eq!(
        verify("12345", BODY.as_bytes(), Some("")),
        Err(SignatureError::Malformed)
    );
}

#[test]
fn rejects_message_without_body() {
    assert_eq!(
        verify("12345", b"", Some(GOOD_SIGNATURE)),
        Err(SignatureError::EmptyBody)
    );
}

fn field(id: &str, title: &str, kind: &str) -> Value {
    json!({"id": format!("id_{id}"), "title": title, "type": kind, "ref": id, "properties": {}})
}

fn answer(reference: &str, kind: &str, answer_type: &str, value: Value) -> Value {
    let mut answer = json!({"type": answer_type, "field": {"id": format!("id_{reference}"), "type": kind, "ref": reference}});
    answer[answer_type] = value;
    answer
}

#[test]
fn creates_note() {
    let response = json!({
        "form_id": "u6nXL7",
        "definition": {
            "id": "u6nXL7",
            "title": "4me survey",
            "fields": [
                field("rate", "How would you rate our service?", "opinion_scale"),
                field("why", "Why?", "long_text"),
            ]
        },
        "answers": [
            answer("rate", "opinion_scale", "number", json!(9)),
            answer("why", "long_text", "text", json!("Quick and friendly")),
        ]
    });
    assert_eq!(
        form_response_to_note(&response),
        "Received answer for \"4me survey\":\n - \"How would you rate our service?\": 9\n - \"Why?\": Quick and friendly"
    );
}

#[test]
fn creates_note_for_more_complex_form_response() {
    let response = json!({
        "definition": {
            "title": "Complex survey",
            "fields": [
                field("mc", "Pick one", "multiple_choice"),
                field("yn", "Happy?", "yes_no"),
                field("yn2", "Sad?", "yes_no"),
                field("rt", "Stars", "rating"),
                field("ph", "Phone", "phone_number"),
                field("st", "Name", "short_text"),
                field("lt", "Story", "long_text"),
                field("pc", "Picture", "picture_choice"),
                field("em", "Email", "email"),
                field("dt", "When", "date"),
            ]
        },
        "answers": [
            answer("mc", "multiple_choice", "choice", json!({"label": "Option B"})),
            answer("yn", "yes_no", "boolean", json!(true)),
            answer("yn2", "yes_no", "boolean", json!(false)),
            answer("rt", "rating", "number", json!(4)),
            answer("ph", "phone_number", "phone_number", json!("+31201234567")),
            answer("st", "short_text", "text", json!("Ada")),
            answer("lt", "long_text", "text", json!("Once upon a time\nthe end")),
            answer("pc", "picture_choice", "choice", json!({"label": "Cat"})),
            answer("em", "email", "email", json!("ada@example.com")),
            answer("dt", "date", "date", json!("2021-03-31")),
        ]
    });
    assert_eq!(
        form_response_to_note(&response),
        [
            "Received answer for \"Complex survey\":",
            "\n - \"Pick one\": Option B",
            "\n - \"Happy?\": Yes",
            "\n - \"Sad?\": No",
            "\n - \"Stars\": 4",
            "\n - \"Phone\": +31201234567",
            "\n - \"Name\": Ada",
            "\n - \"Story\": Once upon a time\nthe end",
            "\n - \"Picture\": Cat",
            "\n - \"Email\": ada@example.com",
            "\n - \"When\": 2021-03-31",
        ]
        .concat()
    );
}

#[test]
fn renders_multi_select_other_and_unknown_types_without_crashing() {
    let response = json!({
        "definition": {
            "title": "Edge cases",
            "fields": [
                field("ms", "Pick many", "multiple_choice"),
                field("oth", "Other", "multiple_choice"),
                field("dd", "Dropdown", "dropdown"),
                field("web", "Website", "website"),
                field("num", "Amount", "number"),
                field("stmt", "Statement", "statement"),
                field("pay", "Payment", "payment"),
            ]
        },
        "answers": [
            answer("ms", "multiple_choice", "choices", json!({"labels": ["Red", "Blue"], "other": "Teal"})),
            answer("oth", "multiple_choice", "choice", json!({"other": "Something else"})),
            answer("dd", "dropdown", "choice", json!({"label": "Amsterdam"})),
            answer("web", "website", "url", json!("https://example.com")),
            answer("num", "number", "number", json!(12.5)),
            answer("stmt", "statement", "nothing", json!(null)),
            answer("pay", "payment", "payment", json!({"amount": "10.00", "last4": "4242", "name": "Ada", "success": true})),
            // An answer to a field missing from the definition.
            answer("ghost", "short_text", "text", json!("boo")),
        ]
    });
    assert_eq!(
        form_response_to_note(&response),
        [
            "Received answer for \"Edge cases\":",
            "\n - \"Pick many\": Red, Blue, Teal",
            "\n - \"Other\": Something else",
            "\n - \"Dropdown\": Amsterdam",
            "\n - \"Website\": https://example.com",
            "\n - \"Amount\": 12.5",
            "\n - \"Payment\": 10.00 (Ada)",
            "\n - \"ghost\": boo",
        ]
        .concat()
    );
}

#[test]
fn tolerates_missing_definition_and_answers() {
    assert_eq!(
        form_response_to_note(&json!({})),
        "Received answer for \"\":"
    );
    assert_eq!(
        form_response_to_note(
            &json!({"definition": {"title": "T"}, "answers": [{"type": "text"}]})
        ),
        "Received answer for \"T\":"
    );
}
