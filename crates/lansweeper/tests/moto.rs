//! AWS adapters on moto (`AWS_ENDPOINT_URL` must point at a moto server; these tests fail rather
//! than skip without it): the OAuth callback stores the refresh token in Secrets Manager and
//! queues the sync on SQS.
#![allow(clippy::unwrap_used)]

mod support;

use app_builder_core::secrets::{AwsSecretStore, SecretStore};
use std::time::Duration;

use lansweeper::queue::SyncMessage;
use lansweeper::{RefreshQueue, SqsRefreshQueue};
use support::{API_URL, Env};

fn require_moto() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        !endpoint.is_empty(),
        "AWS_ENDPOINT_URL is not set: start moto (`moto_server -H 127.0.0.1 -p 5055`) and run with \
         AWS_ENDPOINT_URL=http://127.0.0.1:5055 AWS_ACCESS_KEY_ID=testing \
         AWS_SECRET_ACCESS_KEY=testing AWS_REGION=eu-west-1 (see the README)"
    );
}

async fn sqs_client() -> aws_sdk_sqs::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    aws_sdk_sqs::Client::new(&config)
}

/// A new queue's URL.
async fn new_queue(client: &aws_sdk_sqs::Client) -> String {
    let name = format!("lansweeper-refresh-{}", uuid::Uuid::new_v4().simple());
    client
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned()
}

async fn receive_bodies(client: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    let out = client
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    out.messages()
        .iter()
        .filter_map(|m| m.body().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn sqs_refresh_queue_sends_the_account_id_as_message_body() {
    require_moto();
    let client = sqs_client().await;
    let url = new_queue(&client).await;
    let queue = SqsRefreshQueue::new(client.clone(), url.clone());
    queue.enqueue("wdc").await.unwrap();
    assert_eq!(receive_bodies(&client, &url).await, ["wdc"]);

    // A continuation is JSON naming its sync, held back by SQS for its delay (at most 15
    // minutes).
    let continuation = SyncMessage::continuation("wdc", "sync-1");
    queue
        .send(&continuation, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(receive_bodies(&client, &url).await.is_empty(), "delayed");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let bodies = receive_bodies(&client, &url).await;
    assert_eq!(bodies.len(), 1);
    assert_eq!(SyncMessage::parse(&bodies[0]), continuation);
    queue
        .send(&continuation, Duration::from_secs(3600))
        .await
        .expect("a longer delay is cut to SQS's 15 minutes, not refused");

    // A missing queue is an error naming the account, not a silent success.
    let missing = SqsRefreshQueue::new(client, format!("{url}-missing"));
    let err = missing.enqueue("wdc").await.unwrap_err();
    assert_eq!(err.account, "wdc");
}

/// The schedule's fan-out: many accounts in `SendMessageBatch`es of ten, every one delivered;
/// a queue that cannot be reached names every account it did not queue.
#[tokio::test]
async fn sqs_refresh_queue_sends_many_accounts_in_batches_of_ten() {
    require_moto();
    let moto = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let proxy = app_builder_test_support::FaultProxy::start(&moto)
        .await
        .unwrap();
    let client = aws_sdk_sqs::Client::new(&proxy.sdk_config().await);
    let url = new_queue(&client).await;
    let queue = SqsRefreshQueue::new(client.clone(), url.clone());
    let accounts: Vec<String> = (0..23).map(|n| format!("account-{n}")).collect();
    assert!(queue.enqueue_all(&accounts).await.is_empty());
    assert_eq!(proxy.seen("AmazonSQS.SendMessageBatch"), 3);
    assert_eq!(proxy.seen("AmazonSQS.SendMessage"), 0);
    let mut received = Vec::new();
    loop {
        let bodies = receive_bodies(&client, &url).await;
        if bodies.is_empty() {
            break;
        }
        received.extend(bodies);
    }
    received.sort();
    let mut expected = accounts.clone();
    expected.sort();
    assert_eq!(received, expected);

    proxy.fail(
        "AmazonSQS.SendMessageBatch",
        app_builder_test_support::Fault::Unavailable,
        None,
    );
    let failed = queue.enqueue_all(&accounts[..12]).await;
    assert_eq!(
        failed
            .iter()
            .map(|e| e.account.as_str())
            .collect::<Vec<_>>(),
        accounts[..12]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn oauth_callback_stores_the_refresh_token_in_secrets_manager() {
    require_moto();
    let store = AwsSecretStore::from_env().await.with_max_attempts(30);
    let provider = format!("p{}", uuid::Uuid::new_v4().simple());
    let env = Env::new(store, &provider).await;
    let account = format!("c{}", uuid::Uuid::new_v4().simple());
    let customer = env.install(&account).await;
    assert_eq!(env.installation(&account).await.0, 200);
    let secret = env
        .secret(&account)
        .await
        .get_str("callback_secret")
        .unwrap()
        .to_owned();
    let code = env.lansweeper.authorize(
        &customer.lansweeper_app.client_id,
        &format!("{API_URL}{account}/{secret}"),
    );
    let resp = env
        .get(&format!("{account}/{secret}"), &[("code", &code)])
        .await;
    assert_eq!(resp.status(), 302);
    let refresh = env
        .store
        .get(&env.secret_name(&account))
        .await
        .unwrap()
        .unwrap()
        .get_str("refresh_token")
        .unwrap()
        .to_owned();
    assert!(env.lansweeper.is_refresh_token_valid(&refresh));
    assert_eq!(env.queue.messages(), [account.as_str()]);
}
