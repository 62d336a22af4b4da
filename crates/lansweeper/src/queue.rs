//! The refresh queue port: one message per customer sync. A new sync's body is the customer
//! account id (as the original's); the continuation of a chained sync is
//! `{"account": …, "sync": …}` (see [`SyncMessage`]), sent with a delay of at most 15 minutes
//! (SQS's longest).

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The longest delay SQS gives a message (`DelaySeconds` ≤ 900).
pub const MAX_DELAY: Duration = Duration::from_secs(900);

/// The most messages one `SendMessageBatch` takes (SQS's limit).
pub const MAX_BATCH: usize = 10;

/// What a refresh-queue message asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncMessage {
    /// The customer account to sync.
    pub account: String,
    /// The chained sync this message continues; `None`: a new sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<String>,
}

impl SyncMessage {
    /// A new sync of `account`.
    pub fn new_sync(account: &str) -> Self {
        SyncMessage {
            account: account.to_owned(),
            sync: None,
        }
    }

    /// The continuation of chained sync `sync` of `account`.
    pub fn continuation(account: &str, sync: &str) -> Self {
        SyncMessage {
            account: account.to_owned(),
            sync: Some(sync.to_owned()),
        }
    }

    /// The message of a queue body: a JSON object with an `account`, or else the trimmed body
    /// as the account of a new sync.
    pub fn parse(body: &str) -> Self {
        serde_json::from_str::<SyncMessage>(body)
            .unwrap_or_else(|_| SyncMessage::new_sync(body.trim()))
    }

    /// The queue body: the bare account for a new sync, JSON for a continuation.
    pub fn body(&self) -> String {
        match &self.sync {
            None => self.account.clone(),
            Some(_) => serde_json::to_string(self).unwrap_or_else(|_| self.account.clone()),
        }
    }
}

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
    /// Queues `message`, to be delivered after `delay` (at most [`MAX_DELAY`]).
    fn send(
        &self,
        message: &SyncMessage,
        delay: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Queues a new sync of `account`.
    fn enqueue(&self, account: &str) -> impl Future<Output = Result<(), QueueError>> + Send {
        async move {
            self.send(&SyncMessage::new_sync(account), Duration::ZERO)
                .await
        }
    }

    /// Queues a new sync of each of `accounts`; the accounts that could not be queued, each
    /// with its error. One message at a time unless the queue sends batches.
    fn enqueue_all(&self, accounts: &[String]) -> impl Future<Output = Vec<QueueError>> + Send {
        async move {
            let mut failed = Vec::new();
            for account in accounts {
                if let Err(error) = self.enqueue(account).await {
                    failed.push(error);
                }
            }
            failed
        }
    }
}

/// An in-process queue (tests, local runs): remembers the messages in order.
#[derive(Debug, Default)]
pub struct InMemoryQueue {
    messages: Mutex<Vec<(String, Duration)>>,
    fail: Mutex<bool>,
}

impl InMemoryQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bodies of the messages queued so far.
    pub fn messages(&self) -> Vec<String> {
        self.delayed().into_iter().map(|(body, _)| body).collect()
    }

    /// The bodies and delays of the messages queued so far.
    pub fn delayed(&self) -> Vec<(String, Duration)> {
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Takes the messages queued so far out of the queue (as a consumer receives them).
    pub fn take(&self) -> Vec<(String, Duration)> {
        std::mem::take(&mut *self.messages.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Makes every following `enqueue` fail (or succeed again).
    pub fn set_failing(&self, fail: bool) {
        *self.fail.lock().unwrap_or_else(|e| e.into_inner()) = fail;
    }
}

impl RefreshQueue for InMemoryQueue {
    async fn send(&self, message: &SyncMessage, delay: Duration) -> Result<(), QueueError> {
        if *self.fail.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(QueueError {
                account: message.account.clone(),
                message: "queue unavailable".into(),
            });
        }
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((message.body(), delay.min(MAX_DELAY)));
        Ok(())
    }
}

impl<Q: RefreshQueue> RefreshQueue for std::sync::Arc<Q> {
    fn send(
        &self,
        message: &SyncMessage,
        delay: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send {
        (**self).send(message, delay)
    }

    fn enqueue_all(&self, accounts: &[String]) -> impl Future<Output = Vec<QueueError>> + Send {
        (**self).enqueue_all(accounts)
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
        Self::new(
            aws_sdk_sqs::Client::new(app_builder_core::aws::sdk_config().await),
            queue_url,
        )
    }

    /// The queue URL.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }
}

impl RefreshQueue for SqsRefreshQueue {
    async fn send(&self, message: &SyncMessage, delay: Duration) -> Result<(), QueueError> {
        let delay = i32::try_from(delay.min(MAX_DELAY).as_secs()).unwrap_or(0);
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(message.body())
            .delay_seconds(delay)
            .send()
            .await
            .map(drop)
            .map_err(|e| QueueError {
                account: message.account.clone(),
                message: aws_sdk_sqs::error::DisplayErrorContext(&e).to_string(),
            })
    }

    /// `SendMessageBatch` of up to [`MAX_BATCH`] accounts per request. SQS answers each entry
    /// (`Successful` / `Failed`); an entry it does not name as sent, or a whole batch that
    /// fails, is an error for each of its accounts.
    async fn enqueue_all(&self, accounts: &[String]) -> Vec<QueueError> {
        use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
        let mut failed = Vec::new();
        for batch in accounts.chunks(MAX_BATCH) {
            // Entry ids are the positions in the batch (SQS allows letters, digits, - and _).
            let entries: Vec<SendMessageBatchRequestEntry> = batch
                .iter()
                .enumerate()
                .filter_map(|(position, account)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(position.to_string())
                        .message_body(SyncMessage::new_sync(account).body())
                        .build()
                        .ok()
                })
                .collect();
            let sent = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
            let answered = match sent {
                Ok(output) => output,
                Err(error) => {
                    let message = aws_sdk_sqs::error::DisplayErrorContext(&error).to_string();
                    failed.extend(batch.iter().map(|account| QueueError {
                        account: account.clone(),
                        message: message.clone(),
                    }));
                    continue;
                }
            };
            for (position, account) in batch.iter().enumerate() {
                let id = position.to_string();
                if answered.successful().iter().any(|entry| entry.id() == id) {
                    continue;
                }
                let message = answered
                    .failed()
                    .iter()
                    .find(|entry| entry.id() == id)
                    .map_or_else(
                        || "not acknowledged by SendMessageBatch".to_owned(),
                        |entry| {
                            format!("{}: {}", entry.code(), entry.message().unwrap_or_default())
                        },
                    );
                failed.push(QueueError {
                    account: account.clone(),
                    message,
                });
            }
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_sync_is_the_bare_account_and_a_continuation_names_its_sync() {
        let new = SyncMessage::new_sync("wdc");
        assert_eq!(new.body(), "wdc");
        assert_eq!(SyncMessage::parse(" wdc\n"), new);
        let next = SyncMessage::continuation("wdc", "m-1");
        assert_eq!(next.body(), r#"{"account":"wdc","sync":"m-1"}"#);
        assert_eq!(SyncMessage::parse(&next.body()), next);
        // Anything else is an account name (checked, and refused, by the sync).
        assert_eq!(SyncMessage::parse("[1]").account, "[1]");
    }
}
