//! The Lansweeper integration (original-spec §5.3): OAuth with Lansweeper, scheduled fan-out over
//! SQS and the sync of Lansweeper assets into 4me as discovered configuration items.
//!
//! [`api`] is the Lansweeper Data API client: OAuth token exchange and refresh (rotation reported
//! to the caller), request spacing for Lansweeper's 150 requests per minute, `Retry-After` on 429,
//! backoff on 5xx, GraphQL variables for every filter value, and assets as a lazy page stream.
#![warn(missing_docs)]

pub mod api;
