//! The AWS SDK configuration of a process, loaded once.
//!
//! Loading it resolves the region and credentials and builds the HTTPS client, which reads the
//! system's root certificates: a few milliseconds a time, all of it in a Lambda's init. Every
//! AWS adapter's `from_env` takes it from here, so a function with three clients (Secrets
//! Manager, DynamoDB, EventBridge) pays once and the clients share one connection pool.

use aws_config::{BehaviorVersion, SdkConfig};
use tokio::sync::OnceCell;

static CONFIG: OnceCell<SdkConfig> = OnceCell::const_new();

/// The process's SDK configuration (`aws_config::load_defaults` on first use: `AWS_REGION`,
/// `AWS_ENDPOINT_URL`, credentials from the environment, profile or the Lambda role).
pub async fn sdk_config() -> &'static SdkConfig {
    CONFIG
        .get_or_init(|| aws_config::load_defaults(BehaviorVersion::latest()))
        .await
}
