//! Form response → 4me note text (docs/original.md#typeform).
//!
//! The text starts with `Received answer for "<form title>":` and has one line
//! `\n - "<field title>": <value>` per answer, in answer order. Values by field type, as the
//! original:
//!
//! | field type | value |
//! |---|---|
//! | `opinion_scale`, `rating` | `answer.number` |
//! | `short_text`, `long_text` | `answer.text` |
//! | `multiple_choice`, `picture_choice` | `answer.choice.label` |
//! | `yes_no` | `Yes` / `No` from `answer.boolean` |
//! | `phone_number` | `answer.phone_number` |
//! | `email` | `answer.email` |
//! | `date` | `answer.date` |
//!
//! Deviations (the original threw or skipped, docs/original.md#fixed-bugs item 8):
//! - a multi-select answer (`choices.labels`) lists the labels separated by `, `; an "other"
//!   choice (`choice.other` / `choices.other`) is rendered as its text;
//! - any other field type is rendered from the answer's own `type` member (`text`, `number`,
//!   `boolean`, `email`, `url`, `file_url`, `date`, `phone_number`, `choice`, `choices`,
//!   `payment`); an answer with nothing renderable is skipped with a log line;
//! - an answer whose field is missing from the definition uses the answer's field `ref` as title.

use serde_json::Value;

/// Converts a Typeform `form_response` object into the note text.
pub fn form_response_to_note(form_response: &Value) -> String {
    let definition = &form_response["definition"];
    let title = text_of(&definition["title"]);
    let fields: Vec<&Value> = definition["fields"]
        .as_array()
        .map(|f| f.iter().collect())
        .unwrap_or_default();
    let mut note = format!("Received answer for \"{title}\":");
    let answers = form_response["answers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for answer in &answers {
        let field_ref = answer["field"]["ref"].as_str();
        let field_id = answer["field"]["id"].as_str();
        let field = fields.iter().find(|f| {
            (field_ref.is_some() && f["ref"].as_str() == field_ref)
                || (field_ref.is_none() && field_id.is_some() && f["id"].as_str() == field_id)
        });
        let field_title = field
            .map(|f| text_of(&f["title"]))
            .or_else(|| field_ref.map(str::to_owned))
            .or_else(|| field_id.map(str::to_owned))
            .unwrap_or_default();
        let field_type = field
            .and_then(|f| f["type"].as_str())
            .or_else(|| answer["field"]["type"].as_str())
            .unwrap_or_default();
        match answer_value(field_type, answer) {
            Some(value) => {
                note.push_str(&format!("\n - \"{field_title}\": {value}"));
            }
            None => {
                tracing::info!(
                    field_type,
                    "Unexpected answer type {field_type} for {field_title}"
                );
            }
        }
    }
    note
}

/// The rendered value of one answer, `None` when nothing can be rendered.
fn answer_value(field_type: &str, answer: &Value) -> Option<String> {
    let known = match field_type {
        "opinion_scale" | "rating" => scalar(&answer["number"]),
        "short_text" | "long_text" => scalar(&answer["text"]),
        "multiple_choice" | "picture_choice" => {
            choice(&answer["choice"]).or_else(|| choices(&answer["choices"]))
        }
        "yes_no" => answer["boolean"].as_bool().map(yes_no),
        "phone_number" => scalar(&answer["phone_number"]),
        "email" => scalar(&answer["email"]),
        "date" => scalar(&answer["date"]),
        _ => None,
    };
    known.or_else(|| by_answer_type(answer))
}

/// Renders an answer from its own `type` member (Typeform answer types).
fn by_answer_type(answer: &Value) -> Option<String> {
    let kind = answer["type"].as_str()?;
    let value = &answer[kind];
    match kind {
        "choice" => choice(value),
        "choices" => choices(value),
        "boolean" => value.as_bool().map(yes_no),
        "payment" => {
            let amount = scalar(&value["amount"])?;
            Some(match value["name"].as_str() {
                Some(name) if !name.is_empty() => format!("{amount} ({name})"),
                _ => amount,
            })
        }
        _ => scalar(value),
    }
}

fn yes_no(b: bool) -> String {
    if b { "Yes" } else { "No" }.to_owned()
}

/// `choice.label`, else `choice.other`.
fn choice(value: &Value) -> Option<String> {
    scalar(&value["label"]).or_else(|| scalar(&value["other"]))
}

/// `choices.labels` (and `choices.other`) joined with `, `.
fn choices(value: &Value) -> Option<String> {
    let mut items: Vec<String> = value["labels"]
        .as_array()
        .map(|labels| labels.iter().filter_map(scalar).collect())
        .unwrap_or_default();
    if let Some(other) = scalar(&value["other"]) {
        items.push(other);
    }
    (!items.is_empty()).then(|| items.join(", "))
}

/// A string as is, a number as JavaScript prints it, a boolean as `true`/`false`; `None` for
/// null, arrays and objects.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(js_number(n)),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// JavaScript's rendering of a number: integral floats without `.0`.
fn js_number(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
        _ => n.to_string(),
    }
}

/// A title as text (titles are strings; anything else is rendered as JSON, null as empty).
fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn js_numbers() {
        assert_eq!(scalar(&json!(5)).unwrap(), "5");
        assert_eq!(scalar(&json!(5.0)).unwrap(), "5");
        assert_eq!(scalar(&json!(4.5)).unwrap(), "4.5");
        assert_eq!(scalar(&json!(null)), None);
    }
}
