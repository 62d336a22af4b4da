//! The moto server the AWS adapters' tests run against (`cargo xtask test` starts one and sets
//! `AWS_ENDPOINT_URL`). Without it these tests fail on purpose rather than skip.

/// Fails the test with how to start moto unless `AWS_ENDPOINT_URL` is set.
pub fn require_endpoint() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        !endpoint.is_empty(),
        "AWS_ENDPOINT_URL is not set: start moto (`moto_server -H 127.0.0.1 -p 5055`) and run with \
         AWS_ENDPOINT_URL=http://127.0.0.1:5055 AWS_ACCESS_KEY_ID=testing \
         AWS_SECRET_ACCESS_KEY=testing AWS_REGION=eu-west-1 (see the README)"
    );
}

/// A DynamoDB client on moto that retries more than the SDK's default three attempts: moto under
/// the whole suite's load answers 5xx now and then, which DynamoDB itself does far more rarely.
#[allow(dead_code)] // not every test binary including this module uses it
pub async fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    require_endpoint();
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&config)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(8))
            .build(),
    )
}
