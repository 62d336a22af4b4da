//! `discoveredConfigurationItems`: upserts products and CIs by source/sourceID and publishes the
//! result as an async query result.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use app_builder_schema::limits::MAX_DISCOVERED_ITEMS;
use async_graphql::{ID, InputObject, SimpleObject};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{
    CiStatus, ConfigurationItem, Iso8601Date, Iso8601Timestamp, ValidationError, blank,
    merge_fields, to_fields,
};
use crate::Shared;

/// The strategies 4me documents for `meta.strategy` (its `DiscoveredItemStrategy` enum; the
/// input field itself is a string).
const ITEM_STRATEGIES: [&str; 3] = ["CREATE", "DEFAULT", "UPDATE"];

/// The strategies 4me documents for reference lists (`DiscoveredReferenceArrayStrategy`).
const REFERENCE_STRATEGIES: [&str; 2] = ["APPEND", "REPLACE"];

/// Meta information of a discovered record.
#[derive(InputObject, Clone, Debug, Serialize)]
#[graphql(name = "DiscoveredItemMetaData")]
pub struct DiscoveredItemMetaData {
    /// Strategy (`CREATE`, `DEFAULT`, `UPDATE`).
    pub strategy: Option<String>,
}

/// Strategy for one reference list.
#[derive(InputObject, Clone, Debug, Serialize)]
pub struct DiscoveredReferenceArrayStrategyInput {
    /// Strategy (`APPEND`, `REPLACE`).
    pub strategy: Option<String>,
}

/// Strategies for reference lists.
#[derive(InputObject, Clone, Debug, Serialize)]
#[graphql(rename_fields = "camelCase")]
pub struct DiscoveredReferenceStrategiesInput {
    /// Users of CIs.
    pub ci_user_ids: Option<DiscoveredReferenceArrayStrategyInput>,
}

/// CI relations of a discovered CI.
#[derive(InputObject, Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredCiRelationInput {
    /// Child CIs.
    pub child_ids: Option<Vec<String>>,
}

/// A discovered configuration item.
#[derive(InputObject, Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredCiInput {
    /// Meta.
    pub meta: Option<DiscoveredItemMetaData>,
    /// Id in the source.
    #[graphql(name = "sourceID")]
    #[serde(rename = "sourceID")]
    pub source_id: String,
    /// Serial number.
    pub serial_nr: Option<String>,
    /// System id.
    #[graphql(name = "systemID")]
    #[serde(rename = "systemID")]
    pub system_id: Option<String>,
    /// Status.
    pub status: Option<CiStatus>,
    /// Name.
    pub name: String,
    /// Label.
    pub label: Option<String>,
    /// Remarks.
    pub remarks: Option<String>,
    /// Last seen.
    pub last_seen_at: Option<Iso8601Timestamp>,
    /// In use since.
    pub in_use_since: Option<Iso8601Date>,
    /// Warranty expiry date.
    pub warranty_expiry_date: Option<Iso8601Date>,
    /// Users.
    pub user_ids: Option<Vec<String>>,
    /// Relations.
    pub ci_relations: Option<DiscoveredCiRelationInput>,
    /// Operating system CI.
    pub operating_system_id: Option<String>,
    /// RAM in GB.
    pub ram_amount: Option<super::Decimal>,
    /// Number of processors.
    pub nr_of_processors: Option<i32>,
    /// Number of cores.
    pub nr_of_cores: Option<i32>,
}

/// A discovered product.
#[derive(InputObject, Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredProductInput {
    /// Meta.
    pub meta: Option<DiscoveredItemMetaData>,
    /// Id in the source.
    #[graphql(name = "sourceID")]
    #[serde(rename = "sourceID")]
    pub source_id: String,
    /// Name.
    pub name: String,
    /// Brand.
    pub brand: String,
    /// Model.
    pub model: String,
    /// Product id (SKU).
    #[graphql(name = "productID")]
    #[serde(rename = "productID")]
    pub product_id: Option<String>,
    /// CIs of this product.
    pub configuration_items: Option<Vec<DiscoveredCiInput>>,
}

/// A discovered product category with its products.
#[derive(InputObject, Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredProductCategoryInput {
    /// Meta.
    pub meta: Option<DiscoveredItemMetaData>,
    /// Category reference.
    pub reference: String,
    /// Category name.
    pub name: String,
    /// Products.
    pub products: Option<Vec<DiscoveredProductInput>>,
}

/// Input of `discoveredConfigurationItems`.
#[derive(InputObject, Clone, Debug)]
pub struct DiscoveredConfigurationItemsInput {
    /// Client mutation id.
    pub client_mutation_id: Option<String>,
    /// Source of the discovery (max 30 characters).
    pub source: String,
    /// Other sources the records may have been created with.
    pub alternative_sources: Option<Vec<String>>,
    /// Reference strategies.
    pub reference_strategies: Option<DiscoveredReferenceStrategiesInput>,
    /// Physical assets by category.
    pub physical_assets: Option<Vec<DiscoveredProductCategoryInput>>,
}

/// An asynchronous query whose result is published at `resultUrl`.
#[derive(SimpleObject, Clone, Debug)]
pub struct AsyncQuery {
    /// Node id.
    pub id: ID,
    /// Number of errors in the result.
    pub error_count: i32,
    /// Number of records in the result.
    pub result_count: i32,
    /// URL of the JSON result (404 until ready).
    pub result_url: String,
}

/// Payload of `discoveredConfigurationItems`.
#[derive(SimpleObject)]
pub struct DiscoveredConfigurationItemsPayload {
    /// Client mutation id.
    pub client_mutation_id: Option<String>,
    /// Validation errors that prevented processing.
    pub errors: Vec<ValidationError>,
    /// Always null: the result is asynchronous.
    pub configuration_items: Option<Vec<ConfigurationItem>>,
    /// The async query.
    pub async_query: Option<AsyncQuery>,
}

/// Strategies outside the values 4me documents, as validation errors.
fn strategy_errors(input: &DiscoveredConfigurationItemsInput) -> Option<Vec<ValidationError>> {
    let mut errors = Vec::new();
    let mut check = |meta: &Option<DiscoveredItemMetaData>, path: &[&str]| {
        if let Some(strategy) = meta.as_ref().and_then(|m| m.strategy.as_deref())
            && !ITEM_STRATEGIES.contains(&strategy)
        {
            errors.push(ValidationError::new(
                path,
                format!("Strategy '{strategy}' is not valid"),
            ));
        }
    };
    for category in input.physical_assets.iter().flatten() {
        check(&category.meta, &["physicalAssets", "meta", "strategy"]);
        for product in category.products.iter().flatten() {
            check(
                &product.meta,
                &["physicalAssets", "products", "meta", "strategy"],
            );
            for ci in product.configuration_items.iter().flatten() {
                check(
                    &ci.meta,
                    &[
                        "physicalAssets",
                        "products",
                        "configurationItems",
                        "meta",
                        "strategy",
                    ],
                );
            }
        }
    }
    if let Some(strategy) = input
        .reference_strategies
        .as_ref()
        .and_then(|r| r.ci_user_ids.as_ref())
        .and_then(|s| s.strategy.as_deref())
        && !REFERENCE_STRATEGIES.contains(&strategy)
    {
        errors.push(ValidationError::new(
            &["referenceStrategies", "ciUserIds", "strategy"],
            format!("Strategy '{strategy}' is not valid"),
        ));
    }
    (!errors.is_empty()).then_some(errors)
}

fn path_error(path: Vec<String>, message: &str) -> Value {
    json!({"path": path, "message": message})
}

/// Existing records by (type, `sourceID`): the lowest-numbered match and its node id.
type Known = HashMap<(&'static str, String), (u64, String)>;

/// The `Product` and `ConfigurationItem` records of `account` created from one of `sources`
/// whose `sourceID` occurs in `input`, looked up in the sandbox's `sourceID` index, so that an
/// upload costs the same however many records the account holds.
fn existing_by_source_id(
    state: &crate::state::State,
    account: &str,
    sources: &[String],
    input: &DiscoveredConfigurationItemsInput,
) -> Known {
    let mut wanted: HashSet<&str> = HashSet::new();
    for product in input
        .physical_assets
        .iter()
        .flatten()
        .flat_map(|c| c.products.iter().flatten())
    {
        wanted.insert(product.source_id.as_str());
        wanted.extend(
            product
                .configuration_items
                .iter()
                .flatten()
                .map(|ci| ci.source_id.as_str()),
        );
    }
    let mut known = Known::new();
    for source_id in wanted {
        for kind in ["Product", "ConfigurationItem"] {
            let first = state
                .by_source_id(account, kind, source_id)
                .filter(|r| r.str("source").is_some_and(|s| sources.contains(&s)))
                .min_by_key(|r| r.num);
            if let Some(r) = first {
                known.insert((kind, source_id.to_owned()), (r.num, r.id.clone()));
            }
        }
    }
    known
}

/// Runs the upload and stores the async result.
pub(crate) fn process(
    shared: &Arc<Shared>,
    account: &str,
    input: DiscoveredConfigurationItemsInput,
) -> DiscoveredConfigurationItemsPayload {
    let failed = |errors| DiscoveredConfigurationItemsPayload {
        client_mutation_id: input.client_mutation_id.clone(),
        errors,
        configuration_items: None,
        async_query: None,
    };
    if input.source.trim().is_empty() {
        return failed(vec![ValidationError::new(
            &["source"],
            "Source can't be blank",
        )]);
    }
    if input.source.chars().count() > 30 {
        return failed(vec![ValidationError::new(
            &["source"],
            "Source is too long (maximum is 30 characters)",
        )]);
    }
    let items: usize = input
        .physical_assets
        .iter()
        .flatten()
        .flat_map(|c| c.products.iter().flatten())
        .map(|p| p.configuration_items.as_ref().map_or(0, Vec::len))
        .sum();
    if items > MAX_DISCOVERED_ITEMS {
        return failed(vec![ValidationError::new(
            &["physicalAssets"],
            format!(
                "At most {MAX_DISCOVERED_ITEMS} configuration items can be discovered per request ({items} sent)"
            ),
        )]);
    }
    if let Some(wrong) = strategy_errors(&input) {
        return failed(wrong);
    }
    let mut sources = vec![input.source.clone()];
    sources.extend(input.alternative_sources.clone().unwrap_or_default());
    let mut state = shared.lock();
    let mut results: Vec<Value> = Vec::new();
    let mut errors: Vec<Value> = Vec::new();
    let mut known = existing_by_source_id(&state, account, &sources, &input);
    let find = |known: &Known, kind: &'static str, source_id: &str| {
        known
            .get(&(kind, source_id.to_owned()))
            .map(|(_, id)| id.clone())
    };
    for (i, category) in input.physical_assets.iter().flatten().enumerate() {
        for (j, product) in category.products.iter().flatten().enumerate() {
            let base = vec![
                "physicalAssets".to_owned(),
                i.to_string(),
                "products".to_owned(),
                j.to_string(),
            ];
            let Some(product_source_id) = Some(product.source_id.clone()).filter(|s| !s.is_empty())
            else {
                let mut path = base.clone();
                path.push("sourceID".into());
                errors.push(path_error(path, "SourceID can't be blank"));
                continue;
            };
            let mut fields = to_fields(product);
            fields.remove("configurationItems");
            fields.remove("meta");
            fields.insert("source".into(), Value::String(input.source.clone()));
            fields.insert("ruleSet".into(), Value::String("physical_asset".into()));
            fields.insert("category".into(), Value::String(category.name.clone()));
            let product_id = match find(&known, "Product", &product_source_id) {
                Some(id) => {
                    if let Some(r) = state.records.get_mut(&id) {
                        merge_fields(&mut r.fields, fields);
                    }
                    id
                }
                None => {
                    let id = state.insert(&shared.domain, "Product", account, fields);
                    known.insert(("Product", product_source_id), (u64::MAX, id.clone()));
                    id
                }
            };
            for (k, ci) in product.configuration_items.iter().flatten().enumerate() {
                let mut path = base.clone();
                path.extend(["configurationItems".to_owned(), k.to_string()]);
                let Some(source_id) = Some(ci.source_id.clone()).filter(|s| !s.is_empty()) else {
                    path.push("sourceID".into());
                    errors.push(path_error(path, "SourceID can't be blank"));
                    continue;
                };
                if blank(Some(&ci.name)) {
                    path.push("name".into());
                    errors.push(path_error(path, "Name can't be blank"));
                    continue;
                }
                let mut fields: Map<String, Value> = to_fields(ci);
                fields.remove("meta");
                fields.insert("source".into(), Value::String(input.source.clone()));
                fields.insert("productId".into(), Value::String(product_id.clone()));
                fields.insert("ruleSet".into(), Value::String("physical_asset".into()));
                let id = match find(&known, "ConfigurationItem", &source_id) {
                    Some(id) => {
                        if let Some(r) = state.records.get_mut(&id) {
                            merge_fields(&mut r.fields, fields);
                        }
                        id
                    }
                    None => {
                        fields
                            .entry("status")
                            .or_insert(Value::String("in_production".into()));
                        let id = state.insert(&shared.domain, "ConfigurationItem", account, fields);
                        known.insert(
                            ("ConfigurationItem", source_id.clone()),
                            (u64::MAX, id.clone()),
                        );
                        id
                    }
                };
                results.push(json!({"id": id, "sourceID": source_id}));
            }
        }
    }
    let error_count = i32::try_from(errors.len()).unwrap_or(i32::MAX);
    let result_count = i32::try_from(results.len()).unwrap_or(i32::MAX);
    let body = json!({"data": {"discoveredConfigurationItems": {
        "configurationItems": results,
        "errors": errors,
    }}});
    let id = state.add_async_result(body);
    let num = state.next_num();
    drop(state);
    DiscoveredConfigurationItemsPayload {
        client_mutation_id: input.client_mutation_id,
        errors: Vec::new(),
        configuration_items: None,
        async_query: Some(AsyncQuery {
            id: ID(crate::state::node_id(&shared.domain, "AsyncQuery", num)),
            error_count,
            result_count,
            result_url: format!("{}/async/{id}.json", shared.base_url),
        }),
    }
}
