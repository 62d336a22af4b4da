//! A [`StateStore`] on one DynamoDB table.
//!
//! Item: `pk` (S, the key; the table's partition key), `data` (S, the JSON value), `version` (N),
//! `expires_at` (N, seconds since the epoch; the table's TTL attribute, absent when the record
//! never expires). DynamoDB deletes expired items lazily, so every read and every condition
//! treats an item with `expires_at` ≤ now as absent.
//!
//! - `get`: `GetItem` with `ConsistentRead` (a write just made is seen).
//! - `put`: one `UpdateItem` whose `ConditionExpression` is the [`Expect`]:
//!   `attribute_not_exists(pk) OR expires_at <= :now` (absent) or
//!   `version = :v AND (attribute_not_exists(expires_at) OR expires_at > :now)` (compare-and-swap);
//!   the version is incremented by the same expression (`if_not_exists(version, 0) + 1`) and
//!   returned. A failed condition (`ConditionalCheckFailedException`) is a [`Written::Conflict`]
//!   carrying the live record, read after the failure.
//! - `delete`: `DeleteItem` conditioned on the live version.
//!
//! IAM: `dynamodb:GetItem`, `UpdateItem` and `DeleteItem` on the table.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ScalarAttributeType, TimeToLiveSpecification,
};
use serde_json::Value;

use super::{Expect, StateRecord, StateStore, StateStoreError, Written, check_key, is_live, now};

/// Partition key attribute.
const PK: &str = "pk";
/// The TTL attribute.
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// The condition "the live record is at version `:expected`" (compare-and-swap, versioned delete).
const LIVE_AT_VERSION: &str =
    "#version = :expected AND (attribute_not_exists(#expires) OR #expires > :now)";

/// State store on the DynamoDB table `table`.
#[derive(Debug, Clone)]
pub struct DynamoStateStore {
    client: Client,
    table: String,
}

impl DynamoStateStore {
    /// A store on `table` through `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// A store on `table` with the default AWS configuration (honours `AWS_ENDPOINT_URL`).
    pub async fn from_env(table: impl Into<String>) -> Self {
        Self::new(Client::new(crate::aws::sdk_config().await), table)
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table as the engine's SAM template declares it (on-demand, partition key
    /// `pk`, TTL on `expires_at`), for tests and local tools; an existing table is left as is.
    pub async fn create_table(&self) -> Result<(), StateStoreError> {
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(PK)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|e| self.permanent("CreateTable", e.to_string()))?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(PK)
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(|e| self.permanent("CreateTable", e.to_string()))?,
            )
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.code() == Some("ResourceInUseException") => return Ok(()),
            Err(e) => return Err(classify(&self.table, "CreateTable", &e)),
        }
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(TTL_ATTRIBUTE)
                    .enabled(true)
                    .build()
                    .map_err(|e| self.permanent("UpdateTimeToLive", e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| classify(&self.table, "UpdateTimeToLive", &e))?;
        Ok(())
    }

    fn permanent(&self, operation: &'static str, message: String) -> StateStoreError {
        StateStoreError::Permanent {
            key: self.table.clone(),
            operation,
            message,
        }
    }
}

fn classify<E>(
    key: &str,
    operation: &'static str,
    err: &SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> StateStoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (transient, message) = crate::aws_error::describe(err);
    let key = key.to_owned();
    if transient {
        StateStoreError::Transient {
            key,
            operation,
            message,
        }
    } else {
        StateStoreError::Permanent {
            key,
            operation,
            message,
        }
    }
}

fn is_condition_failure<E: ProvideErrorMetadata>(
    err: &SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> bool {
    err.code() == Some("ConditionalCheckFailedException")
}

fn number(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The record of an item (live or not).
fn record(
    key: &str,
    item: &HashMap<String, AttributeValue>,
) -> Result<StateRecord, StateStoreError> {
    let corrupt = |message: &str| StateStoreError::Corrupt {
        key: key.to_owned(),
        message: message.to_owned(),
    };
    let data = match item.get("data") {
        Some(AttributeValue::S(text)) => {
            serde_json::from_str(text).map_err(|_| corrupt("data is not JSON"))?
        }
        _ => return Err(corrupt("no data attribute")),
    };
    let version = match item.get("version") {
        Some(AttributeValue::N(n)) => n.parse().map_err(|_| corrupt("version is not a number"))?,
        _ => return Err(corrupt("no version attribute")),
    };
    let expires_at = match item.get(TTL_ATTRIBUTE) {
        Some(AttributeValue::N(n)) => Some(
            n.parse()
                .map_err(|_| corrupt("expires_at is not a number"))?,
        ),
        _ => None,
    };
    Ok(StateRecord {
        data,
        version,
        expires_at,
    })
}

impl StateStore for DynamoStateStore {
    async fn get(&self, key: &str) -> Result<Option<StateRecord>, StateStoreError> {
        check_key(key)?;
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(key, "GetItem", &e))?;
        match answer.item() {
            None => Ok(None),
            Some(item) => {
                let record = record(key, item)?;
                Ok(is_live(record.expires_at, now()).then_some(record))
            }
        }
    }

    async fn put(
        &self,
        key: &str,
        data: &Value,
        expires_at: Option<i64>,
        expect: Expect,
    ) -> Result<Written, StateStoreError> {
        check_key(key)?;
        let mut update =
            String::from("SET #data = :data, #version = if_not_exists(#version, :zero) + :one");
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(key.to_owned()))
            .expression_attribute_names("#data", "data")
            .expression_attribute_names("#version", "version")
            .expression_attribute_names("#expires", TTL_ATTRIBUTE)
            .expression_attribute_values(":data", AttributeValue::S(data.to_string()))
            .expression_attribute_values(":zero", number(0))
            .expression_attribute_values(":one", number(1))
            .expression_attribute_values(":now", number(now()))
            .return_values(ReturnValue::UpdatedNew);
        match expires_at {
            Some(at) => {
                update.push_str(", #expires = :expires");
                request = request.expression_attribute_values(":expires", number(at));
            }
            None => update.push_str(" REMOVE #expires"),
        }
        // DynamoDB refuses expression names and values the expressions do not use.
        let condition = match expect {
            Expect::Absent => {
                request = request.expression_attribute_names("#pk", PK);
                "attribute_not_exists(#pk) OR #expires <= :now"
            }
            Expect::Version(v) => {
                request = request.expression_attribute_values(":expected", number(v));
                LIVE_AT_VERSION
            }
        };
        let answer = request
            .update_expression(update)
            .condition_expression(condition)
            .send()
            .await;
        match answer {
            Ok(output) => {
                let version = output
                    .attributes()
                    .and_then(|a| a.get("version"))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| StateStoreError::Corrupt {
                        key: key.to_owned(),
                        message: "UpdateItem returned no version".into(),
                    })?;
                Ok(Written::Done(version))
            }
            Err(e) if is_condition_failure(&e) => Ok(Written::Conflict(self.get(key).await?)),
            Err(e) => Err(classify(key, "UpdateItem", &e)),
        }
    }

    async fn delete(&self, key: &str, version: u64) -> Result<bool, StateStoreError> {
        check_key(key)?;
        let answer = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(key.to_owned()))
            .condition_expression(LIVE_AT_VERSION)
            .expression_attribute_names("#version", "version")
            .expression_attribute_names("#expires", TTL_ATTRIBUTE)
            .expression_attribute_values(":expected", number(version))
            .expression_attribute_values(":now", number(now()))
            .send()
            .await;
        match answer {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(classify(key, "DeleteItem", &e)),
        }
    }
}
