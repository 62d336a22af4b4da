//! Record-sync decisions of bootstrap and deploy (docs/original.md#provisioning), as pure functions: given
//! what 4me has and what the templates want, what to create, update, delete or leave alone.
//! [`crate::records`] and [`crate::provision`] carry them out (or, with `--dry-run`, print them).

use serde_json::{Map, Value};

/// What to do with one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// No record found: create it.
    Create,
    /// The record differs from the template: update the record with this id.
    Update(String),
    /// The record already has every template value: nothing to do.
    Unchanged(String),
    /// The record is no longer wanted: delete the record with this id.
    Delete(String),
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Create => f.write_str("create"),
            Self::Update(id) => write!(f, "update {id}"),
            Self::Unchanged(id) => write!(f, "unchanged {id}"),
            Self::Delete(id) => write!(f, "delete {id}"),
        }
    }
}

/// Whether `existing` already holds every field of `input` with the same value.
///
/// Only the template's fields are compared (4me returns many more); a nested object or array must
/// be equal as a whole.
pub fn has_all_fields(existing: &Map<String, Value>, input: &Map<String, Value>) -> bool {
    input
        .iter()
        .all(|(key, value)| existing.get(key) == Some(value))
}

/// The id of a 4me record (`id` string field).
fn id_of(record: &Map<String, Value>) -> Option<String> {
    record.get("id").and_then(Value::as_str).map(str::to_owned)
}

/// The action for one record found (or not) by `source`/`sourceID`.
pub fn record_action(existing: Option<&Map<String, Value>>, input: &Map<String, Value>) -> Action {
    match existing.and_then(|record| id_of(record).map(|id| (record, id))) {
        None => Action::Create,
        Some((record, id)) if has_all_fields(record, input) => Action::Unchanged(id),
        Some((_, id)) => Action::Update(id),
    }
}

/// One automation-rule decision: the action and the template rule it applies (none for deletes).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleStep {
    /// What to do.
    pub action: Action,
    /// The rule name.
    pub name: String,
    /// The template rule to create or update with (`None` for a delete).
    pub input: Option<Map<String, Value>>,
}

/// The `generic` group of a rule (`"undefined"` when absent, as the original).
fn group_of(rule: &Map<String, Value>) -> String {
    rule.get("generic")
        .and_then(Value::as_str)
        .unwrap_or("undefined")
        .to_owned()
}

fn name_of(rule: &Map<String, Value>) -> String {
    rule.get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The automation-rule sync of an offering (docs/original.md#provisioning `syncOfferingAutomationRules`): rules are
/// grouped by `generic` (groups in order of first appearance, existing rules first); within a
/// group a template rule updates the existing rule of the same name, existing rules without a
/// template are deleted, and the remaining template rules are created. An existing rule already
/// equal to its template is left unchanged.
pub fn plan_automation_rules(
    existing: &[Map<String, Value>],
    desired: &[Map<String, Value>],
) -> Vec<RuleStep> {
    let mut groups: Vec<String> = Vec::new();
    for rule in existing.iter().chain(desired) {
        let group = group_of(rule);
        if !groups.contains(&group) {
            groups.push(group);
        }
    }
    let mut steps = Vec::new();
    for group in groups {
        let current: Vec<&Map<String, Value>> =
            existing.iter().filter(|r| group_of(r) == group).collect();
        let mut matched: Vec<Option<&Map<String, Value>>> = vec![None; current.len()];
        let mut created = Vec::new();
        for rule in desired.iter().filter(|r| group_of(r) == group) {
            match current.iter().position(|c| name_of(c) == name_of(rule)) {
                Some(index) => matched[index] = Some(rule),
                None => created.push(rule),
            }
        }
        for (rule, input) in current.iter().zip(matched) {
            let id = id_of(rule).unwrap_or_default();
            let step = match input {
                Some(input) => RuleStep {
                    action: if has_all_fields(rule, input) {
                        Action::Unchanged(id)
                    } else {
                        Action::Update(id)
                    },
                    name: name_of(input),
                    input: Some(input.clone()),
                },
                None => RuleStep {
                    action: Action::Delete(id),
                    name: name_of(rule),
                    input: None,
                },
            };
            steps.push(step);
        }
        steps.extend(created.into_iter().map(|input| RuleStep {
            action: Action::Create,
            name: name_of(input),
            input: Some(input.clone()),
        }));
    }
    steps
}

/// The offering's `newScopes` with the ids of the existing scopes (matched by position, as the
/// original) and the ids of the existing scopes to delete. Unlike the original, an input without
/// `newScopes` deletes every existing scope instead of crashing (docs/original.md#fixed-bugs item 11).
pub fn match_scopes(existing_ids: &[String], new_scopes: &[Value]) -> (Vec<Value>, Vec<String>) {
    let mut scopes = new_scopes.to_vec();
    let mut to_delete = Vec::new();
    for (index, id) in existing_ids.iter().enumerate() {
        match scopes.get_mut(index) {
            Some(Value::Object(scope)) => {
                scope.insert("id".into(), Value::String(id.clone()));
            }
            _ => to_delete.push(id.clone()),
        }
    }
    (scopes, to_delete)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn record_actions() {
        let input = obj(json!({"name": "AWS Lambda", "model": "Lambda"}));
        assert_eq!(record_action(None, &input), Action::Create);
        let same = obj(json!({"id": "P1", "name": "AWS Lambda", "model": "Lambda", "x": 1}));
        assert_eq!(
            record_action(Some(&same), &input),
            Action::Unchanged("P1".into())
        );
        let other = obj(json!({"id": "P1", "name": "AWS Lambda", "model": "S3"}));
        assert_eq!(
            record_action(Some(&other), &input),
            Action::Update("P1".into())
        );
        let without_id = obj(json!({"name": "AWS Lambda"}));
        assert_eq!(record_action(Some(&without_id), &input), Action::Create);
        assert_eq!(Action::Update("P1".into()).to_string(), "update P1");
    }

    #[test]
    fn rules_are_matched_by_name_within_their_generic_group() {
        let existing = vec![
            obj(json!({"id": "R1", "name": "keep", "generic": "request", "trigger": "old"})),
            obj(json!({"id": "R2", "name": "gone", "generic": "request"})),
            obj(json!({"id": "R3", "name": "same", "generic": "request", "trigger": "t"})),
            obj(json!({"id": "R4", "name": "keep", "trigger": "old"})),
        ];
        let desired = vec![
            obj(json!({"name": "same", "generic": "request", "trigger": "t"})),
            obj(json!({"name": "keep", "generic": "request", "trigger": "new"})),
            obj(json!({"name": "new", "generic": "request", "trigger": "t"})),
            obj(json!({"name": "other", "generic": "problem", "trigger": "t"})),
        ];
        let steps = plan_automation_rules(&existing, &desired);
        let summary: Vec<(String, String)> = steps
            .iter()
            .map(|s| (s.action.to_string(), s.name.clone()))
            .collect();
        let expected = [
            ("update R1", "keep"),
            ("delete R2", "gone"),
            ("unchanged R3", "same"),
            ("create", "new"),
            // The rule without `generic` is in group "undefined", which no template rule has.
            ("delete R4", "keep"),
            ("create", "other"),
        ];
        assert_eq!(
            summary,
            expected
                .iter()
                .map(|(a, n)| (a.to_string(), n.to_string()))
                .collect::<Vec<_>>()
        );
        assert_eq!(steps[0].input.as_ref().unwrap()["trigger"], "new");
        assert!(steps[1].input.is_none());
    }

    #[test]
    fn second_run_plans_nothing_but_unchanged() {
        let desired = vec![obj(
            json!({"name": "a", "generic": "request", "trigger": "t"}),
        )];
        let existing = vec![obj(
            json!({"id": "R9", "name": "a", "generic": "request", "trigger": "t"}),
        )];
        let steps = plan_automation_rules(&existing, &desired);
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].action, Action::Unchanged("R9".into()));
    }

    #[test]
    fn scopes_by_position_and_missing_new_scopes_delete_all() {
        let new = vec![json!({"actions": ["request:Read"]})];
        let (scopes, delete) = match_scopes(&["S1".into(), "S2".into()], &new);
        assert_eq!(
            scopes,
            vec![json!({"actions": ["request:Read"], "id": "S1"})]
        );
        assert_eq!(delete, vec!["S2".to_owned()]);
        let (scopes, delete) = match_scopes(&["S1".into()], &[]);
        assert!(scopes.is_empty());
        assert_eq!(delete, vec!["S1".to_owned()]);
        let (scopes, delete) = match_scopes(&[], &new);
        assert_eq!(scopes, new);
        assert!(delete.is_empty());
    }
}
