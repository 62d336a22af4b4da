//! The AWS SDK configuration of a process, loaded once.
//!
//! Loading it resolves the region and credentials and builds the HTTPS client. Every AWS
//! adapter's `from_env` takes it from here, so a function with three clients (Secrets Manager,
//! DynamoDB, EventBridge) shares one connection pool.
//!
//! The HTTPS client is the SDK's own (rustls on aws-lc) with two changes, both for the cold
//! start (BENCHMARKS.md, "Cold starts"):
//!
//! - it trusts the roots compiled into the binary ([`crate::tls`]), not the system's;
//! - its connector is built on first use. The SDK builds a throwaway connector as each client is
//!   created, so that the system's roots are read at start-up rather than by the first request.
//!   Each build parses every root from PEM again: four times in a function's init (the three
//!   clients and the STS client of the credentials chain), most of its instructions. With
//!   nothing to read from disk there is nothing to front-load, and [`DeferredConnector`] skips
//!   that step: the connector is built once, by the first request, as it is without it.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::Builder;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use tokio::sync::OnceCell;

static CONFIG: OnceCell<SdkConfig> = OnceCell::const_new();

/// The process's SDK configuration (`aws_config` defaults on first use: `AWS_REGION`,
/// `AWS_ENDPOINT_URL`, credentials from the environment, profile or the Lambda role), with
/// [`https_client`].
pub async fn sdk_config() -> &'static SdkConfig {
    CONFIG
        .get_or_init(|| {
            aws_config::defaults(BehaviorVersion::latest())
                .http_client(https_client())
                .load()
        })
        .await
}

/// The SDK's HTTPS client trusting the compiled-in roots, its connector built on first use.
fn https_client() -> SharedHttpClient {
    let trust_store = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(crate::tls::roots_pem());
    // `build` cannot fail: it moves the trust store into the context.
    let tls = TlsContext::builder()
        .with_trust_store(trust_store)
        .build()
        .expect("a TLS context builds");
    let client = Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(tls)
        .build_https();
    SharedHttpClient::new(DeferredConnector(client))
}

/// An HTTP client whose connector is built by the first request only: it leaves out the SDK's
/// build-and-discard at client creation (`validate_base_client_config`) and is the wrapped
/// client in everything else.
#[derive(Debug)]
struct DeferredConnector(SharedHttpClient);

impl HttpClient for DeferredConnector {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::config::{Credentials, Region};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// The first request builds the connector, which parses every root; the SDK panics on one
    /// it cannot parse, which would be a panic in every function's first request. Here the
    /// request gets as far as its TLS client hello.
    #[tokio::test]
    async fn the_https_client_builds_its_connector_on_the_first_request() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut first = [0u8; 1];
            socket.read_exact(&mut first).await.expect("read");
            first[0]
        });
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(Credentials::new("id", "secret", None, None, "test"))
            .endpoint_url(format!("https://localhost:{port}"))
            .http_client(https_client())
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        let client = aws_sdk_dynamodb::Client::from_conf(config);
        let answer = client.list_tables().send().await;
        // A TLS record of type 22 is a handshake: the client hello.
        assert_eq!(server.await.expect("server"), 22);
        assert!(answer.is_err(), "the server never answered the handshake");
    }
}
