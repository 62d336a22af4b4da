//! Properties of the form response → note conversion over generated responses (proptest):
//! it never panics, whatever Typeform or a forger sends; a text answer to a field of the
//! definition is always rendered as its line, in answer order.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use proptest::prelude::*;
use serde_json::{Value, json};
use typeform::note::form_response_to_note;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

use app_builder_test_support::any_json;

/// Field types Typeform documents, and some it does not.
fn field_type() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("short_text"),
        Just("long_text"),
        Just("opinion_scale"),
        Just("rating"),
        Just("multiple_choice"),
        Just("picture_choice"),
        Just("yes_no"),
        Just("phone_number"),
        Just("email"),
        Just("date"),
        Just("number"),
        Just("dropdown"),
        Just("file_upload"),
        Just("payment"),
        Just("ranking"),
        Just("matrix"),
        Just(""),
    ]
    .prop_map(str::to_owned)
}

/// An answer of a generated type to field `r<index>`, with members of any shape.
fn answer(fields: usize) -> impl Strategy<Value = Value> {
    (
        0..fields.max(1) + 2,
        field_type(),
        any_json(),
        any_json(),
        ".{0,20}",
    )
        .prop_map(|(index, kind, choice, extra, text)| {
            json!({
                "field": {"id": format!("id{index}"), "ref": format!("r{index}"), "type": kind},
                "type": kind, "text": text, "number": extra, "choice": choice,
                "choices": extra, "boolean": choice, "email": text, "date": extra,
            })
        })
}

fn form_response() -> impl Strategy<Value = Value> {
    prop::collection::vec((field_type(), ".{0,20}"), 0..6)
        .prop_flat_map(|fields| {
            let count = fields.len();
            (
                Just(fields),
                prop::collection::vec(answer(count), 0..8),
                ".{0,30}",
            )
        })
        .prop_map(|(fields, answers, title)| {
            let fields: Vec<Value> = fields.iter().enumerate().map(|(i, (kind, title))| {
            json!({"id": format!("id{i}"), "ref": format!("r{i}"), "type": kind, "title": title})
        }).collect();
            json!({"definition": {"title": title, "fields": fields}, "answers": answers})
        })
}

proptest! {
    #![proptest_config(config())]

    /// Any JSON at all: a note, never a panic.
    #[test]
    fn any_json_becomes_a_note(response in any_json()) {
        prop_assert!(form_response_to_note(&response).starts_with("Received answer for \""));
    }

    /// Form-shaped responses with answers of every shape: each text answer to a `short_text`
    /// field of the definition is on its line, in answer order.
    #[test]
    fn text_answers_are_rendered_in_order(response in form_response()) {
        let note = form_response_to_note(&response);
        let title = response["definition"]["title"].as_str().unwrap();
        let heading = format!("Received answer for \"{title}\":");
        prop_assert!(note.starts_with(&heading));
        let answers = response["answers"].as_array().unwrap();
        let mut rest = note.as_str();
        for answer in answers {
            let field_ref = answer["field"]["ref"].as_str().unwrap();
            let field = response["definition"]["fields"].as_array().unwrap().iter()
                .find(|field| field["ref"] == field_ref);
            let Some(field) = field else { continue };
            if field["type"] != "short_text" {
                continue;
            }
            let line = format!("\n - \"{}\": {}", field["title"].as_str().unwrap(),
                answer["text"].as_str().unwrap());
            let Some(at) = rest.find(&line) else {
                return Err(TestCaseError::fail(format!("{line:?} missing or out of order in {note:?}")));
            };
            rest = &rest[at + line.len()..];
        }
    }
}
