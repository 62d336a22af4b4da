//! The 4me side of bootstrap and deploy: finding records by `source`/`sourceID`, deciding with
//! [`crate::sync`] and creating or updating them (docs/original.md#provisioning).
//!
//! Whether a record is unchanged is decided on two things: the fields 4me lets us read back
//! (compared with the template's values) and a fingerprint (SHA-256 of the whole input last
//! written) kept in the provider secret under [`FINGERPRINTS_KEY`]. The fingerprint catches
//! template changes of fields that cannot be read back (a product's `remarks`, a CI's `productId`);
//! the read-back catches edits made in 4me since.

use std::collections::BTreeMap;

use app_builder_core::fourme::FourMeClient;
use serde_json::{Map, Value, json};

use crate::config4me::Template;
use crate::provision::ProvisionError;
use crate::sync::{self, Action};

/// Key of the provider secret holding the fingerprints (record id → SHA-256 of its input).
pub const FINGERPRINTS_KEY: &str = "deployedRecords";

/// Placeholder for the id of a record a dry run would create.
pub const NEW_ID: &str = "(new)";

/// A kind of record synced by `source`/`sourceID`.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// Human name (`product`).
    pub label: &'static str,
    /// Root query field (`products`).
    pub query: &'static str,
    /// Filter type of the query.
    pub filter: &'static str,
    /// The 4me type (`Product`): its mutations are named after it ([`Records::write`]).
    pub type_name: &'static str,
    /// Fields read back to compare (GraphQL selection).
    pub selection: &'static str,
    /// Input fields the update mutation does not take.
    pub update_drops: &'static [&'static str],
}

/// Products.
pub const PRODUCT: Kind = Kind {
    label: "product",
    query: "products",
    filter: "ProductFilter",
    type_name: "Product",
    selection: "id name brand model source sourceID",
    update_drops: &[],
};

/// Configuration items.
pub const CONFIGURATION_ITEM: Kind = Kind {
    label: "configuration item",
    query: "configurationItems",
    filter: "ConfigurationItemFilter",
    type_name: "ConfigurationItem",
    selection: "id name label status remarks systemID source sourceID customFields { id value }",
    update_drops: &[],
};

/// UI extensions (the code is read back from the active version).
pub const UI_EXTENSION: Kind = Kind {
    label: "UI extension",
    query: "uiExtensions",
    filter: "UiExtensionFilter",
    type_name: "UiExtension",
    selection: "id name title category source sourceID activeVersion { id html css javascript }",
    update_drops: &["category"],
};

/// The outcome of one sync.
#[derive(Debug, Clone)]
pub struct Synced {
    /// What was (or would be) done.
    pub action: Action,
    /// The record id ([`NEW_ID`] for a create in a dry run).
    pub id: String,
    /// The record as 4me returned it (the mutation payload, or the record found).
    pub record: Map<String, Value>,
}

/// What [`Records::write`] did.
#[derive(Debug, Clone)]
pub struct Written {
    /// The record's id: the one 4me returned, the action's, or [`NEW_ID`] for a create in a dry
    /// run.
    pub id: String,
    /// The record as the mutation returned it; `None` when nothing was written.
    pub record: Option<Map<String, Value>>,
}

impl Written {
    fn nothing(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            record: None,
        }
    }
}

/// The GraphQL field of a 4me type: its name in lower camel case (`AppOffering` → `appOffering`).
fn field_of(type_name: &str) -> String {
    let mut field = type_name.to_owned();
    if let Some(first) = field.get_mut(..1) {
        first.make_ascii_lowercase();
    }
    field
}

/// Hex SHA-256 of a JSON value with object keys sorted (stable whatever the map order).
pub fn fingerprint(value: &Value) -> String {
    fn canonical(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let sorted: BTreeMap<&String, Value> =
                    map.iter().map(|(k, v)| (k, canonical(v))).collect();
                Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
            other => other.clone(),
        }
    }
    let text = canonical(value).to_string();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The `nodes` of the root field `field` of a query answer.
fn nodes(data: &Value, field: &str) -> Vec<Map<String, Value>> {
    data.get(field)
        .and_then(|connection| connection.get("nodes"))
        .and_then(Value::as_array)
        .map(|items| items.iter().cloned().map(object).collect())
        .unwrap_or_default()
}

/// The `id` of a record.
pub fn id_of(record: &Map<String, Value>) -> Option<String> {
    record.get("id").and_then(Value::as_str).map(str::to_owned)
}

/// Moves the active version's code to the top level (where the input has it).
fn flatten(mut record: Map<String, Value>) -> Map<String, Value> {
    if let Some(Value::Object(version)) = record.get("activeVersion").cloned() {
        for key in ["html", "css", "javascript"] {
            if let Some(value) = version.get(key) {
                record.insert(key.into(), value.clone());
            }
        }
    }
    record
}

/// The decision for `existing` (if any) against the whole `input`: unchanged only when every
/// field that was read back equals the input's and the fingerprint stored for the record matches
/// the input's.
pub fn decide(
    fingerprints: &BTreeMap<String, String>,
    existing: Option<&Map<String, Value>>,
    input: &Map<String, Value>,
) -> Action {
    let Some(existing) = existing else {
        return sync::record_action(None, input);
    };
    let mut compared: Map<String, Value> = input
        .iter()
        .filter(|(key, _)| existing.contains_key(*key))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    compared.insert(
        "_fingerprint".into(),
        Value::String(fingerprint(&Value::Object(input.clone()))),
    );
    let mut found = existing.clone();
    if let Some(id) = id_of(existing)
        && let Some(stored) = fingerprints.get(&id)
    {
        found.insert("_fingerprint".into(), Value::String(stored.clone()));
    }
    sync::record_action(Some(&found), &compared)
}

/// The 4me operations of one bootstrap or deploy run, and every step the run took (records,
/// stacks, the provider secret), in order: each step of bootstrap and deploy takes the run's
/// `Records` and nothing else of the run.
pub struct Records {
    /// The provider's 4me client.
    pub client: FourMeClient,
    /// Decide and report, but change nothing.
    pub dry_run: bool,
    /// Fingerprints by record id (loaded from and saved to the provider secret).
    pub fingerprints: BTreeMap<String, String>,
    /// The steps taken so far (the report's, once the run ends).
    pub steps: Vec<crate::provision::Step>,
}

impl Records {
    /// [`decide`] with this run's fingerprints.
    pub fn decide(
        &self,
        existing: Option<&Map<String, Value>>,
        input: &Map<String, Value>,
    ) -> Action {
        decide(&self.fingerprints, existing, input)
    }

    /// Remembers the input written to record `id`.
    pub fn remember(&mut self, id: &str, input: &Map<String, Value>) {
        if id != NEW_ID {
            self.fingerprints
                .insert(id.to_owned(), fingerprint(&Value::Object(input.clone())));
        }
    }

    /// Runs a mutation and returns its payload field `field` (an error when absent).
    async fn mutate(
        &self,
        mutation: &str,
        variables: &Value,
        field: &str,
    ) -> Result<Map<String, Value>, ProvisionError> {
        let payload: Value = self.client.mutation(mutation, variables).await?;
        match payload.get(field) {
            Some(Value::Object(record)) if record.contains_key("id") => Ok(record.clone()),
            _ => Err(ProvisionError::Unexpected(format!(
                "4me answered no {field} with an id to {}",
                app_builder_core::fourme::operation_name(mutation)
            ))),
        }
    }

    /// Does what `action` says to a record of 4me type `type_name` (`Product`, `Webhook`,
    /// `AppOffering`...) with its `<type>Create` or `<type>Update` mutation (4me names every
    /// record's mutations, inputs and payload fields after its type), reading `selection` back.
    /// An update sends `input` without `update_drops`, with the id. Nothing is written for
    /// another action (a delete is [`Records::delete`]) or in a dry run.
    pub async fn write(
        &self,
        type_name: &str,
        action: &Action,
        input: &Map<String, Value>,
        selection: &str,
        update_drops: &[&str],
    ) -> Result<Written, ProvisionError> {
        let field = field_of(type_name);
        let (verb, input) = match (action, self.dry_run) {
            (Action::Create, false) => ("Create", input.clone()),
            (Action::Update(id), false) => {
                let mut update = input.clone();
                for drop in update_drops {
                    update.remove(*drop);
                }
                update.insert("id".into(), id.clone().into());
                ("Update", update)
            }
            (Action::Create, true) => return Ok(Written::nothing(NEW_ID)),
            (Action::Update(id) | Action::Unchanged(id) | Action::Delete(id), _) => {
                return Ok(Written::nothing(id));
            }
        };
        let mutation = format!(
            "mutation {type_name}{verb}($input: {type_name}{verb}Input!) {{ {field}{verb}(input: $input) {{ errors {{ path message }} {field} {{ {selection} }} }} }}"
        );
        let record = self
            .mutate(&mutation, &json!({"input": input}), &field)
            .await?;
        Ok(Written {
            id: id_of(&record).unwrap_or_default(),
            record: Some(record),
        })
    }

    /// Deletes record `id` of 4me type `type_name` (`Webhook`, `WebhookPolicy`,
    /// `AppOfferingAutomationRule`) with its GraphQL delete mutation.
    pub async fn delete(&self, type_name: &str, id: &str) -> Result<(), ProvisionError> {
        let field = field_of(type_name);
        let mutation = format!(
            "mutation Delete($input: {type_name}DeleteMutationInput!) {{ {field}Delete(input: $input) {{ errors {{ path message }} success }} }}"
        );
        let payload: Value = self
            .client
            .mutation(&mutation, &json!({"input": {"id": id}}))
            .await?;
        if payload.get("success") == Some(&Value::Bool(true)) {
            Ok(())
        } else {
            Err(ProvisionError::Unexpected(format!(
                "4me did not confirm deleting {type_name} {id}"
            )))
        }
    }

    /// Finds a record by `source`/`sourceID`.
    pub async fn find(
        &self,
        kind: &Kind,
        source: &str,
        source_id: &str,
    ) -> Result<Option<Map<String, Value>>, ProvisionError> {
        let query = format!(
            "query Find($filter: {}) {{ {}(first: 1, filter: $filter) {{ nodes {{ {} }} }} }}",
            kind.filter, kind.query, kind.selection
        );
        let filter = json!({"filter": {"source": {"values": [source]}, "sourceID": {"values": [source_id]}}});
        let data: Value = self.client.query(&query, &filter).await?;
        Ok(nodes(&data, kind.query).into_iter().next().map(flatten))
    }

    /// Creates or updates the record of `template` (plus `extras`), found by `source` and the
    /// template's `sourceID`. In a dry run only decides.
    pub async fn sync(
        &mut self,
        kind: &Kind,
        source: &str,
        template: &Template,
        extras: Map<String, Value>,
    ) -> Result<Synced, ProvisionError> {
        let existing = self.find(kind, source, &template.source_id).await?;
        let mut input = template.input.clone();
        input.extend(extras);
        input.insert("source".into(), source.into());
        input.insert("sourceID".into(), template.source_id.clone().into());
        let action = self.decide(existing.as_ref(), &input);
        let written = self
            .write(
                kind.type_name,
                &action,
                &input,
                kind.selection,
                kind.update_drops,
            )
            .await?;
        let id = written.id;
        let record = match (written.record, action == Action::Create) {
            (Some(record), _) => flatten(record),
            (None, true) => Map::new(),
            (None, false) => existing.unwrap_or_default(),
        };
        if !self.dry_run {
            self.remember(&id, &input);
        }
        Ok(Synced { action, id, record })
    }

    /// The service instance named `name` with its service (and support team).
    pub async fn service_instance(&self, name: &str) -> Result<ServiceInstance, ProvisionError> {
        let data: Value = self
            .client
            .query(
                "query ServiceInstance($filter: ServiceInstanceFilter) { serviceInstances(first: 1, \
                 filter: $filter) { nodes { id service { id } supportTeam { id } } } }",
                &json!({"filter": {"name": {"values": [name]}}}),
            )
            .await?;
        let node = nodes(&data, "serviceInstances")
            .into_iter()
            .next()
            .ok_or_else(|| {
                ProvisionError::Unexpected(format!(
                    "service instance `{name}` not found in 4me (--service-instance)"
                ))
            })?;
        let nested_id = |field: &str| {
            node.get(field)
                .and_then(|v| v.get("id"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Ok(ServiceInstance {
            id: id_of(&node).unwrap_or_default(),
            service_id: nested_id("service").ok_or_else(|| {
                ProvisionError::Unexpected(format!("service instance `{name}` has no service"))
            })?,
            support_team_id: nested_id("supportTeam"),
        })
    }

    /// A node by id with the given inline-fragment selection, if it exists.
    pub async fn node(
        &self,
        id: &str,
        fragment: &str,
    ) -> Result<Option<Map<String, Value>>, ProvisionError> {
        let query = format!("query Node($id: ID!) {{ node(id: $id) {{ {fragment} }} }}");
        let data: Value = self.client.query(&query, &json!({"id": id})).await?;
        Ok(match data.get("node") {
            Some(Value::Object(node)) if node.contains_key("id") => Some(node.clone()),
            _ => None,
        })
    }
}

/// A service instance and the ids records refer to.
#[derive(Debug, Clone)]
pub struct ServiceInstance {
    /// Its id.
    pub id: String,
    /// Its service's id.
    pub service_id: String,
    /// Its support team's id, if it has one.
    pub support_team_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_ignore_key_order() {
        let a = json!({"b": 1, "a": {"y": [1, {"q": 1, "p": 2}], "x": 2}});
        let b = json!({"a": {"x": 2, "y": [1, {"p": 2, "q": 1}]}, "b": 1});
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&json!({"b": 2})));
        assert_eq!(fingerprint(&a).len(), 64);
    }

    #[test]
    fn unchanged_needs_equal_read_back_fields_and_fingerprint() {
        let input = object(json!({"name": "AWS Lambda", "remarks": "not readable"}));
        assert_eq!(decide(&BTreeMap::new(), None, &input), Action::Create);
        let found = object(json!({"id": "P1", "name": "AWS Lambda", "model": "x"}));
        // Never written by us (no fingerprint): update once.
        assert_eq!(
            decide(&BTreeMap::new(), Some(&found), &input),
            Action::Update("P1".into())
        );
        let prints =
            BTreeMap::from([("P1".to_owned(), fingerprint(&Value::Object(input.clone())))]);
        assert_eq!(
            decide(&prints, Some(&found), &input),
            Action::Unchanged("P1".into())
        );
        // A template change of a field 4me does not return.
        let changed = object(json!({"name": "AWS Lambda", "remarks": "new"}));
        assert_eq!(
            decide(&prints, Some(&found), &changed),
            Action::Update("P1".into())
        );
        // An edit made in 4me.
        let edited = object(json!({"id": "P1", "name": "Renamed"}));
        assert_eq!(
            decide(&prints, Some(&edited), &input),
            Action::Update("P1".into())
        );
    }

    #[test]
    fn flattens_the_active_version_code() {
        let record =
            object(json!({"id": "U1", "activeVersion": {"id": "V1", "html": "<p>", "css": null}}));
        let flat = flatten(record);
        assert_eq!(flat["html"], "<p>");
        assert_eq!(flat["css"], Value::Null);
    }
}
