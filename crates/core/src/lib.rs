//! Shared library of the 4me app builder engine.
//!
//! Every Lambda function of the engine is a thin `main` over handlers that use this crate:
//!
//! - [`fourme`]: the 4me client (OAuth client credentials with a cached token, typed GraphQL,
//!   cursor paging, async-query results, REST, retries and rate limiting);
//! - [`policy`]: verification of 4me webhook-policy JWTs;
//! - [`secrets`]: the secret store port (AWS Secrets Manager and a local file store), secret naming
//!   and the merge that loses no concurrent update;
//! - [`config`]: start-up configuration from the `PARAM_*` environment (errors name the variable);
//! - [`context`]: provider and customer contexts assembled from the store;
//! - [`events`]: API Gateway, EventBridge, SQS and schedule event helpers;
//! - [`response`]: `{"message": ...}` responses and the error type that maps to them;
//! - [`webhook`]: receiving 4me webhook deliveries (request checks, verification, delivery id,
//!   `webhook.verify` callbacks).
#![warn(missing_docs)]

pub mod config;
pub mod context;
pub mod events;
pub mod fourme;
pub mod policy;
pub mod response;
pub mod secrets;
pub mod webhook;
