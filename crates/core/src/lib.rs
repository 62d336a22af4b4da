//! Shared library of the 4me app builder engine.
//!
//! Every Lambda function of the engine is a thin `main` over handlers that use this crate:
//!
//! - [`fourme`]: the 4me client (OAuth client credentials with a cached token, typed GraphQL,
//!   cursor paging, async-query results, REST, retries and rate limiting);
//! - [`policy`]: verification of 4me webhook-policy JWTs;
//! - [`secrets`]: the secret store port (AWS Secrets Manager and a local file store), secret naming
//!   and the merge that loses no concurrent update;
//! - [`state`]: the state store port for what is not a secret (idempotency records, leases,
//!   checkpoints), with conditional writes and expiry; DynamoDB and local file adapters;
//! - [`idempotency`]: at-most-once handling of retried deliveries over the state store
//!   (in-progress and completed records, payload hashes), Powertools' semantics;
//! - [`config`]: start-up configuration from the `PARAM_*` environment (errors name the variable);
//! - [`context`]: provider and customer contexts assembled from the store;
//! - [`configuration`]: 4me's configuration URI (checking the link 4me sends the installing
//!   user to, and the server-rendered pages of an integration's configuration flow);
//! - [`aws`]: the one AWS SDK configuration of a process;
//! - [`tls`]: the root certificates the functions trust, compiled in, and their HTTP clients;
//! - [`bus`]: the engine's event bus (`Installation changed` events) and its EventBridge publisher;
//! - [`events`]: API Gateway, EventBridge, SQS and schedule event helpers;
//! - [`telemetry`]: the JSON logging set-up of every function's `main`;
//! - [`metrics`]: what each invocation counts, as CloudWatch Embedded Metric Format lines;
//! - [`response`]: `{"message": ...}` responses and the error type that maps to them;
//! - [`webhook`]: receiving 4me webhook deliveries (request checks, verification, delivery id,
//!   `webhook.verify` callbacks).
#![warn(missing_docs)]

pub mod aws;
mod aws_error;
pub mod bus;
pub mod config;
pub mod configuration;
pub mod context;
pub mod events;
pub mod fourme;
pub mod idempotency;
mod localfs;
pub mod metrics;
pub mod policy;
pub mod response;
pub mod secrets;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod webhook;
