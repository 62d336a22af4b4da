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
//! - `hold`: one `UpdateItem` setting `held_until` (N) and the version, conditioned on no live
//!   hold and a live (or no) item, returning the item (`ALL_NEW`). A key held before its first
//!   write has no `data` and reads as absent. When the condition fails on an expired item, the
//!   item is deleted (conditioned on its expiry) and the hold tried again, so a hold never
//!   revives expired data. `put` removes `held_until`: the holder's write releases the hold.
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

use super::{
    Expect, Hold, StateRecord, StateStore, StateStoreError, Written, check_key, is_live, now,
};

/// Partition key attribute.
const PK: &str = "pk";
/// The TTL attribute.
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// Until when the item is held ([`StateStore::hold`]).
const HELD_ATTRIBUTE: &str = "held_until";
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

    /// The item under `key`, live or not, read consistently.
    async fn item(&self, key: &str) -> Result<Option<Item>, StateStoreError> {
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
        answer.item().map(|item| Item::read(key, item)).transpose()
    }

    /// Deletes the item under `key` if it has expired (DynamoDB's TTL has not removed it yet).
    async fn delete_expired(&self, key: &str) -> Result<(), StateStoreError> {
        let answer = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(key.to_owned()))
            .condition_expression("#expires <= :now")
            .expression_attribute_names("#expires", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", number(now()))
            .send()
            .await;
        match answer {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(classify(key, "DeleteItem", &e)),
        }
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

/// An item as stored (live or not).
struct Item {
    /// `None`: a key held before its first write.
    data: Option<Value>,
    version: u64,
    expires_at: Option<i64>,
}

impl Item {
    fn read(key: &str, item: &HashMap<String, AttributeValue>) -> Result<Self, StateStoreError> {
        let corrupt = |message: &str| StateStoreError::Corrupt {
            key: key.to_owned(),
            message: message.to_owned(),
        };
        let data = match item.get("data") {
            Some(AttributeValue::S(text)) => {
                Some(serde_json::from_str(text).map_err(|_| corrupt("data is not JSON"))?)
            }
            Some(_) => return Err(corrupt("data is not a string")),
            None => None,
        };
        let version = match item.get("version") {
            Some(AttributeValue::N(n)) => {
                n.parse().map_err(|_| corrupt("version is not a number"))?
            }
            _ => return Err(corrupt("no version attribute")),
        };
        let expires_at = match item.get(TTL_ATTRIBUTE) {
            Some(AttributeValue::N(n)) => Some(
                n.parse()
                    .map_err(|_| corrupt("expires_at is not a number"))?,
            ),
            _ => None,
        };
        Ok(Self {
            data,
            version,
            expires_at,
        })
    }

    fn is_live(&self, now: i64) -> bool {
        is_live(self.expires_at, now)
    }

    /// The record `get` returns: live and written.
    fn record(self, now: i64) -> Option<StateRecord> {
        if !self.is_live(now) {
            return None;
        }
        Some(StateRecord {
            data: self.data?,
            version: self.version,
            expires_at: self.expires_at,
        })
    }
}

impl StateStore for DynamoStateStore {
    async fn get(&self, key: &str) -> Result<Option<StateRecord>, StateStoreError> {
        Ok(self.item(key).await?.and_then(|item| item.record(now())))
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
            .expression_attribute_names("#held", HELD_ATTRIBUTE)
            .expression_attribute_values(":data", AttributeValue::S(data.to_string()))
            .expression_attribute_values(":zero", number(0))
            .expression_attribute_values(":one", number(1))
            .expression_attribute_values(":now", number(now()))
            .return_values(ReturnValue::UpdatedNew);
        // The holder's write releases its hold (`REMOVE #held`).
        match expires_at {
            Some(at) => {
                update.push_str(", #expires = :expires REMOVE #held");
                request = request.expression_attribute_values(":expires", number(at));
            }
            None => update.push_str(" REMOVE #expires, #held"),
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

    async fn hold(&self, key: &str, until: i64) -> Result<Hold, StateStoreError> {
        check_key(key)?;
        // A second failed condition on an expired item means others keep writing the key.
        for _ in 0..2 {
            let answer = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(PK, AttributeValue::S(key.to_owned()))
                .update_expression(
                    "SET #held = :until, #version = if_not_exists(#version, :zero) + :one",
                )
                .condition_expression(
                    "(attribute_not_exists(#held) OR #held <= :now) \
                     AND (attribute_not_exists(#expires) OR #expires > :now)",
                )
                .expression_attribute_names("#held", HELD_ATTRIBUTE)
                .expression_attribute_names("#version", "version")
                .expression_attribute_names("#expires", TTL_ATTRIBUTE)
                .expression_attribute_values(":until", number(until))
                .expression_attribute_values(":zero", number(0))
                .expression_attribute_values(":one", number(1))
                .expression_attribute_values(":now", number(now()))
                .return_values(ReturnValue::AllNew)
                .send()
                .await;
            match answer {
                Ok(output) => {
                    let item = output
                        .attributes()
                        .ok_or_else(|| StateStoreError::Corrupt {
                            key: key.to_owned(),
                            message: "UpdateItem returned no item".into(),
                        })?;
                    let item = Item::read(key, item)?;
                    return Ok(Hold::Taken {
                        version: item.version,
                        data: item.data,
                        expires_at: item.expires_at,
                    });
                }
                Err(e) if is_condition_failure(&e) => match self.item(key).await? {
                    Some(item) if !item.is_live(now()) => self.delete_expired(key).await?,
                    // Gone meanwhile: try again.
                    None => {}
                    Some(_) => return Ok(Hold::Busy),
                },
                Err(e) => return Err(classify(key, "UpdateItem", &e)),
            }
        }
        Ok(Hold::Busy)
    }
}
