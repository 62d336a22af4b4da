//! The AWS SDK configuration of a process, loaded once.
//!
//! Loading it resolves the region and credentials and builds the HTTPS client. Every AWS
//! adapter's `from_env` takes it from here, so a function with three clients (Secrets Manager,
//! DynamoDB, EventBridge) shares one connection pool.
//!
//! The HTTPS client is the SDK's own (rustls on aws-lc) with two changes, both for the cold
//! start (BENCHMARKS.md, "Cold start"):
//!
//! - **Compiled-in roots.** It trusts Mozilla's root certificates as compiled into the binary
//!   (`webpki-root-certs`), not the system's. The system's are read from disk, the bundle and
//!   every file of the certificate directory, about 4 ms here; the compiled-in set takes no I/O
//!   and does not depend on where an image keeps its bundle. AWS's endpoints and 4me's chain to
//!   roots in that set; a newer set comes with a newer `webpki-root-certs`. Tools that run on a
//!   provider's machine (`xtask`) build their own configuration and keep the system's roots,
//!   which may hold a corporate proxy's.
//! - **Built on first use.** The SDK builds a throwaway connector as each client is created, so
//!   that the system's roots are read at start-up rather than by the first request. Each build
//!   parses every root from PEM again: four times in a function's init (the three clients and
//!   the STS client of the credentials chain), most of its instructions. With nothing to read
//!   from disk there is nothing to front-load, and [`DeferredConnector`] skips that step: the
//!   connector is built once, by the first request, as it is without it.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::Builder;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
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
        .with_pem_certificate(compiled_in_roots_pem());
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

/// The compiled-in roots as PEM, the form the SDK's trust store takes. Each certificate's base64
/// is one line: the SDK's reader (`rustls-pki-types`) goes line by line, and the usual
/// 64-character lines cost it several times the instructions, in the first request.
fn compiled_in_roots_pem() -> String {
    let mut pem = String::with_capacity(320 * 1024);
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        STANDARD.encode_string(cert, &mut pem);
        pem.push_str("\n-----END CERTIFICATE-----\n");
    }
    pem
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
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// Read back with the parser the SDK's trust store uses, the PEM holds every root.
    #[test]
    fn the_trust_store_is_given_every_compiled_in_root() {
        let pem = compiled_in_roots_pem();
        let parsed: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("the PEM parses");
        assert!(parsed.len() > 100, "{} roots", parsed.len());
        assert_eq!(parsed, webpki_root_certs::TLS_SERVER_ROOT_CERTS);
    }

    /// The connector parses every root as the client is built, and the SDK panics on one it
    /// cannot parse: this would be a panic in every function's init.
    #[tokio::test]
    async fn the_https_client_opens_a_tls_handshake_with_the_compiled_in_roots() {
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
