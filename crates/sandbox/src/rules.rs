//! Automation rules of app offerings: parsed strictly when created or updated, evaluated when a
//! note is added to a request of an account that has the app installed.
//!
//! The sandbox supports the forms the repository's `config_4me` templates use and refuses every
//! other form when the rule is saved, so a rule can never be silently ignored:
//!
//! * generic `request`, trigger `on note added`;
//! * expressions `notes[last].text`, `rule_app_instance.custom_fields.<id>`,
//!   `status = <status>`, `status != <status>`, `status_was = <status>`, `status_was != <status>`;
//! * condition `true`, `false`, or names of comparison expressions combined with `and`, `or`
//!   and `not` (`and` binds tighter);
//! * actions `call webhook '{app_offering_webhook}' with payload '<expression names>'` and
//!   `add note '<text>'` (with `{{name}}` placeholders).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::state::{Record, State};

/// The only trigger the sandbox evaluates.
pub(crate) const NOTE_ADDED: &str = "on note added";
/// The only record type rules are evaluated on.
const GENERIC: &str = "request";
const CALL_WEBHOOK: &str = "call webhook '{app_offering_webhook}' with payload '";
const ADD_NOTE: &str = "add note '";

/// Why a rule is refused: the input attribute at fault and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleError {
    /// Input attribute (`trigger`, `expressions`, ...).
    pub attribute: &'static str,
    /// What is wrong.
    pub message: String,
}

impl RuleError {
    fn new(attribute: &'static str, message: impl Into<String>) -> RuleError {
        RuleError {
            attribute,
            message: message.into(),
        }
    }
}

/// A request attribute a comparison reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusOf {
    /// The status after the update.
    Now,
    /// The status before the update.
    Was,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expression {
    LastNoteText,
    CustomField(String),
    Compare {
        of: StatusOf,
        equal: bool,
        status: String,
    },
}

impl Expression {
    fn parse(value: &str) -> Result<Expression, String> {
        let value = value.trim();
        if value == "notes[last].text" {
            return Ok(Expression::LastNoteText);
        }
        if let Some(id) = value.strip_prefix("rule_app_instance.custom_fields.") {
            if is_name(id) {
                return Ok(Expression::CustomField(id.to_owned()));
            }
            return Err(format!(
                "'{value}': custom field id '{id}' is not a valid id"
            ));
        }
        for (operator, equal) in [(" != ", false), (" = ", true)] {
            if let Some((left, right)) = value.split_once(operator) {
                let of = match left.trim() {
                    "status" => StatusOf::Now,
                    "status_was" => StatusOf::Was,
                    other => {
                        return Err(format!(
                            "'{value}': the sandbox compares only status and status_was, not '{other}'"
                        ));
                    }
                };
                let status = right.trim();
                if !is_request_status(status) {
                    return Err(format!("'{value}': '{status}' is not a request status"));
                }
                return Ok(Expression::Compare {
                    of,
                    equal,
                    status: status.to_owned(),
                });
            }
        }
        Err(format!(
            "'{value}' is not supported by the sandbox (supported: notes[last].text, \
             rule_app_instance.custom_fields.<id>, status/status_was =/!= <status>)"
        ))
    }

    fn evaluate(&self, facts: &Facts<'_>) -> Value {
        match self {
            Expression::LastNoteText => facts.last_note.map_or(Value::Null, |text| json!(text)),
            Expression::CustomField(id) => facts
                .custom_fields
                .iter()
                .find(|field| field["id"] == id.as_str())
                .map_or(Value::Null, |field| field["value"].clone()),
            Expression::Compare { of, equal, status } => {
                let actual = match of {
                    StatusOf::Now => facts.status,
                    StatusOf::Was => facts.status_was,
                };
                json!((actual == status) == *equal)
            }
        }
    }
}

/// `true`, `false`, or an `or` of `and`s of (possibly negated) expression names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Condition(Vec<Vec<(bool, String)>>);

impl Condition {
    fn parse(text: &str, booleans: &[&str]) -> Result<Condition, String> {
        match text.trim() {
            "true" => return Ok(Condition(vec![vec![]])),
            "false" => return Ok(Condition(vec![])),
            _ => {}
        }
        let mut any = Vec::new();
        for part in text.split(" or ") {
            let mut all = Vec::new();
            for term in part.split(" and ") {
                let term = term.trim();
                let (negated, name) = match term.strip_prefix("not ") {
                    Some(name) => (true, name.trim()),
                    None => (false, term),
                };
                if !booleans.contains(&name) {
                    return Err(format!(
                        "'{term}' in '{text}' is not the name of a comparison expression \
                         (the sandbox supports true, false and comparison names with and/or/not)"
                    ));
                }
                all.push((negated, name.to_owned()));
            }
            any.push(all);
        }
        Ok(Condition(any))
    }

    fn holds(&self, values: &BTreeMap<String, Value>) -> bool {
        self.0.iter().any(|all| {
            all.iter()
                .all(|(negated, name)| (values.get(name) == Some(&json!(true))) != *negated)
        })
    }
}

/// What a rule does when its condition holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Calls the offering's webhook with these expressions as payload.
    CallWebhook(Vec<String>),
    /// Adds a note; `{{name}}` is replaced by the expression's value.
    AddNote(String),
}

impl Action {
    fn parse(value: &str, names: &[&str]) -> Result<Action, String> {
        let value = value.trim();
        let unknown = |name: &str| {
            format!("'{value}' uses '{name}', which is not the name of an expression of the rule")
        };
        if let Some(list) = value
            .strip_prefix(CALL_WEBHOOK)
            .and_then(|rest| rest.strip_suffix('\''))
        {
            let payload: Vec<String> = list.split_whitespace().map(str::to_owned).collect();
            if payload.is_empty() {
                return Err(format!("'{value}' has an empty payload"));
            }
            if let Some(name) = payload.iter().find(|name| !names.contains(&name.as_str())) {
                return Err(unknown(name));
            }
            return Ok(Action::CallWebhook(payload));
        }
        if let Some(text) = value
            .strip_prefix(ADD_NOTE)
            .and_then(|rest| rest.strip_suffix('\''))
        {
            for placeholder in text.split("{{").skip(1) {
                let name = placeholder.split("}}").next().unwrap_or_default();
                if !names.contains(&name) {
                    return Err(unknown(name));
                }
            }
            return Ok(Action::AddNote(text.to_owned()));
        }
        Err(format!(
            "'{value}' is not supported by the sandbox (supported: call webhook \
             '{{app_offering_webhook}}' with payload '<names>', add note '<text>')"
        ))
    }
}

/// A rule the sandbox can evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    expressions: Vec<(String, Expression)>,
    condition: Condition,
    actions: Vec<Action>,
}

impl Rule {
    /// Parses the stored (camelCase) fields of a rule; the first unsupported part is the error.
    pub(crate) fn parse(fields: &Map<String, Value>) -> Result<Rule, RuleError> {
        let text = |key: &str| fields.get(key).and_then(Value::as_str).unwrap_or_default();
        if text("generic") != GENERIC {
            return Err(RuleError::new(
                "generic",
                format!(
                    "Generic '{}' is not supported by the sandbox (supported: {GENERIC})",
                    text("generic")
                ),
            ));
        }
        if text("trigger").trim() != NOTE_ADDED {
            return Err(RuleError::new(
                "trigger",
                format!(
                    "Trigger '{}' is not supported by the sandbox (supported: {NOTE_ADDED})",
                    text("trigger")
                ),
            ));
        }
        let list = |key: &str| {
            fields
                .get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let mut expressions: Vec<(String, Expression)> = Vec::new();
        for expression in list("expressions") {
            let name = expression["name"].as_str().unwrap_or_default();
            if !is_name(name) || expressions.iter().any(|(known, _)| known == name) {
                return Err(RuleError::new(
                    "expressions",
                    format!("Expression name '{name}' is invalid or used twice"),
                ));
            }
            let parsed = Expression::parse(expression["value"].as_str().unwrap_or_default())
                .map_err(|message| {
                    RuleError::new("expressions", format!("Expression {name}: {message}"))
                })?;
            expressions.push((name.to_owned(), parsed));
        }
        let names: Vec<&str> = expressions.iter().map(|(name, _)| name.as_str()).collect();
        let booleans: Vec<&str> = expressions
            .iter()
            .filter(|(_, e)| matches!(e, Expression::Compare { .. }))
            .map(|(name, _)| name.as_str())
            .collect();
        let condition = Condition::parse(text("condition"), &booleans)
            .map_err(|message| RuleError::new("condition", format!("Condition {message}")))?;
        let actions = list("actions")
            .iter()
            .map(|action| Action::parse(action["value"].as_str().unwrap_or_default(), &names))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|message| RuleError::new("actions", format!("Action {message}")))?;
        if actions.is_empty() {
            return Err(RuleError::new("actions", "Actions can't be blank"));
        }
        Ok(Rule {
            expressions,
            condition,
            actions,
        })
    }

    /// The actions to take for `facts`, with `{{name}}` filled in and payloads computed; empty
    /// when the condition does not hold.
    fn fire(&self, facts: &Facts<'_>) -> Vec<Fired> {
        let values: BTreeMap<String, Value> = self
            .expressions
            .iter()
            .map(|(name, expression)| (name.clone(), expression.evaluate(facts)))
            .collect();
        if !self.condition.holds(&values) {
            return Vec::new();
        }
        self.actions
            .iter()
            .map(|action| match action {
                Action::CallWebhook(names) => Fired::CallWebhook(
                    names
                        .iter()
                        .map(|name| (name.clone(), values[name].clone()))
                        .collect(),
                ),
                Action::AddNote(template) => {
                    Fired::AddNote(values.iter().fold(template.clone(), |text, (name, value)| {
                        let shown = match value {
                            Value::String(s) => s.clone(),
                            Value::Null => String::new(),
                            other => other.to_string(),
                        };
                        text.replace(&format!("{{{{{name}}}}}"), &shown)
                    }))
                }
            })
            .collect()
    }
}

/// What a rule reads of the request and the app instance.
struct Facts<'a> {
    last_note: Option<&'a str>,
    status: &'a str,
    status_was: &'a str,
    custom_fields: &'a [Value],
}

/// An action whose rule fired.
#[derive(Debug, Clone, PartialEq)]
enum Fired {
    CallWebhook(Map<String, Value>),
    AddNote(String),
}

/// A webhook call to make after the state is unlocked.
#[derive(Debug, Clone)]
pub(crate) struct WebhookCall {
    /// Node id of the app instance whose rule fired.
    pub app_instance_id: String,
    /// The payload the rule computed.
    pub payload: Value,
    /// `(number, node id)` of the request.
    pub object: (u64, String),
}

/// Runs the `on note added` rules of every enabled app instance installed in the request's
/// account after a note was added to request `request_id` (whose status was `status_was` before
/// the update). Notes the rules add are added to the request at once; the webhook calls are
/// returned to be delivered without holding the state.
pub(crate) fn note_added(
    state: &mut State,
    domain: &str,
    request_id: &str,
    status_was: &str,
) -> Vec<WebhookCall> {
    let Some(request) = state.records.get(request_id).cloned() else {
        return Vec::new();
    };
    let notes = request
        .fields
        .get("notes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let status = request.str("status").unwrap_or_default();
    let mut instances: Vec<&Record> = state
        .records
        .values()
        .filter(|r| {
            r.kind == "AppInstance"
                && r.str("customerAccount").as_deref() == Some(request.account.as_str())
                && r.bool("suspended") != Some(true)
                && r.bool("disabled") != Some(true)
                && r.bool("enabledByCustomer") != Some(false)
        })
        .collect();
    instances.sort_by_key(|r| r.num);
    let mut calls = Vec::new();
    let mut added = Vec::new();
    for instance in instances {
        let Some(offering) = instance.str("appOfferingId") else {
            continue;
        };
        let mut rules: Vec<&Record> = state
            .records
            .values()
            .filter(|r| {
                r.kind == "AppOfferingAutomationRule"
                    && r.str("appOfferingId").as_deref() == Some(offering.as_str())
            })
            .collect();
        rules.sort_by_key(|r| (r.get::<i64>("position").unwrap_or(0), r.num));
        let custom_fields = instance
            .fields
            .get("customFields")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let facts = Facts {
            last_note: notes.last().and_then(|n| n["text"].as_str()),
            status: &status,
            status_was,
            custom_fields,
        };
        for rule in rules {
            // Rules are validated when saved; one saved before validation existed is skipped
            // loudly rather than half-run.
            let parsed = match Rule::parse(&rule.fields) {
                Ok(parsed) => parsed,
                Err(err) => {
                    tracing::error!(rule = %rule.id, "automation rule not evaluated: {}", err.message);
                    continue;
                }
            };
            for fired in parsed.fire(&facts) {
                match fired {
                    Fired::CallWebhook(payload) => calls.push(WebhookCall {
                        app_instance_id: instance.id.clone(),
                        payload: Value::Object(payload),
                        object: (request.num, request.id.clone()),
                    }),
                    Fired::AddNote(text) => added.push(text),
                }
            }
        }
    }
    // Notes added by rules do not trigger rules again (4me stops such chains; here it would
    // loop).
    for text in added {
        state.add_note(domain, request_id, &text, false);
    }
    calls
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_request_status(status: &str) -> bool {
    serde_json::from_value::<crate::schema::RequestStatus>(json!(status)).is_ok()
}
