//! The 4me client: endpoints derived from the 4me domain, OAuth client credentials with a cached
//! token, typed GraphQL queries and mutations, cursor paging, async-query results, REST calls,
//! retries and request spacing.
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
pub mod settings;

pub use client::{ACCOUNT_HEADER, FourMeClient, RateLimit, operation_name};
pub use endpoints::{EndpointError, Endpoints};
pub use error::{FieldError, FourMeError};
pub use settings::{ClientSettings, Credentials};
