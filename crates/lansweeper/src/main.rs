//! Lambda entry point of the Lansweeper integration function (the handlers are being ported; until
//! then start-up only validates the Lansweeper API settings).

use app_builder_core::config::Settings;
use lansweeper::api::ApiSettings;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_target(false)
        .init();
    let settings = ApiSettings::from_settings(&Settings::from_env())?;
    tracing::info!(api_url = %settings.api_url, "lansweeper function configured");
    Ok(())
}
