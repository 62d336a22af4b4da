//! The 4me client: endpoints derived from the 4me domain, OAuth client credentials with a cached
//! token, typed GraphQL queries and mutations, cursor paging, async-query results, REST calls,
//! retries and request spacing.
//!
//! Deliberate deviations from the Node original (`Js4meHelper`, docs/original.md#4me-client), all improvements:
//!
//! - the access token is cached until shortly before `expires_in` (one token request for many
//!   calls, concurrent callers share it) and renewed once when 4me answers 401;
//! - 429 answers are retried after `Retry-After`; 5xx answers, timeouts and connection errors with
//!   exponential backoff and full jitter; both bounded, then [`FourMeError::Unavailable`];
//! - requests of one client are spaced (100 ms) and kept within 20 per 2 s;
//! - GraphQL `errors` and mutation payload errors are typed errors ([`FourMeError::GraphQl`],
//!   [`FourMeError::Mutation`]) instead of `{error: ...}` values;
//! - async-query results answer 403/404 until the file exists: both mean "not yet" (the
//!   original treated them as fatal), polled until [`ClientSettings::async_timeout`];
//! - endpoints can be overridden with `FOURME_OAUTH_URL`, `FOURME_GRAPHQL_URL`, `FOURME_REST_URL`
//!   (used with the local sandbox);
//! - tokens, client secrets and signed result URLs never appear in `Debug`, errors or logs.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use app_builder_core::fourme::{ClientSettings, Credentials, Endpoints, FourMeClient};
//! let client = FourMeClient::new(
//!     Endpoints::from_env("4me.com")?,
//!     "wdc",
//!     Credentials::new("client-id", "client-secret"),
//!     ClientSettings::from_env(),
//! )?;
//! let data: serde_json::Value = client
//!     .query("query { me { id } }", &serde_json::json!({}))
//!     .await?;
//! # let _ = data;
//! # Ok(())
//! # }
//! ```

pub mod backoff;
mod client;
pub mod endpoints;
pub mod error;
pub mod instances;
pub mod settings;
pub mod types;

pub use client::{ACCOUNT_HEADER, FourMeClient, RateLimit, operation_name};
pub use endpoints::{EndpointError, Endpoints};
pub use error::{FieldError, FourMeError};
pub use settings::{ClientSettings, Credentials};
pub use types::{AsyncQuery, NodeId, PageInfo};
