//! The refresh queue port: one message per customer sync (body = customer account id).

use std::sync::Mutex;

/// Why a message could not be queued.
#[derive(Debug, thiserror::Error)]
#[error("Unable to queue a refresh of {account}: {message}")]
pub struct QueueError {
    /// The customer account.
    pub account: String,
    /// What went wrong.
    pub message: String,
}

/// Where sync requests go (SQS in AWS).
pub trait RefreshQueue: Send + Sync {
    /// Queues a sync of `account`.
    fn enqueue(&self, account: &str) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// An in-process queue (tests, local runs): remembers the messages in order.
#[derive(Debug, Default)]
pub struct InMemoryQueue {
    messages: Mutex<Vec<String>>,
    fail: Mutex<bool>,
}

impl InMemoryQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// The messages queued so far.
    pub fn messages(&self) -> Vec<String> {
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Makes every following `enqueue` fail (or succeed again).
    pub fn set_failing(&self, fail: bool) {
        *self.fail.lock().unwrap_or_else(|e| e.into_inner()) = fail;
    }
}

impl RefreshQueue for InMemoryQueue {
    async fn enqueue(&self, account: &str) -> Result<(), QueueError> {
        if *self.fail.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(QueueError {
                account: account.to_owned(),
                message: "queue unavailable".into(),
            });
        }
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(account.to_owned());
        Ok(())
    }
}

impl<Q: RefreshQueue> RefreshQueue for std::sync::Arc<Q> {
    fn enqueue(&self, account: &str) -> impl Future<Output = Result<(), QueueError>> + Send {
        (**self).enqueue(account)
    }
}

/// The refresh queue on Amazon SQS (`REFRESH_QUEUE_URL`).
#[derive(Debug, Clone)]
pub struct SqsRefreshQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsRefreshQueue {
    /// A queue over `client` sending to `queue_url`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        SqsRefreshQueue {
            client,
            queue_url: queue_url.into(),
        }
    }

    /// A queue with the client from the environment (region, credentials, `AWS_ENDPOINT_URL`).
    pub async fn from_env(queue_url: impl Into<String>) -> Self {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        Self::new(aws_sdk_sqs::Client::new(&config), queue_url)
    }

    /// The queue URL.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }
}

impl RefreshQueue for SqsRefreshQueue {
    async fn enqueue(&self, account: &str) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(account)
            .send()
            .await
            .map(drop)
            .map_err(|e| QueueError {
                account: account.to_owned(),
                message: aws_sdk_sqs::error::DisplayErrorContext(&e).to_string(),
            })
    }
}
