//! The engine's secret store: [`LocalSecretStore`] files that report each successful write (as
//! the Secrets Manager call AWS would see: `CreateSecret` for a new secret, `PutSecretValue`
//! otherwise) to the engine's activity log. Writes are not events: installations change on the
//! engine's bus ([`crate::bus`]).

use std::sync::Arc;

use app_builder_core::secrets::{
    LocalSecretStore, SecretDocument, SecretName, SecretStore, SecretStoreError,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A successful write of a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretWrite {
    /// Whether the write created the secret.
    pub created: bool,
    /// The secret's name.
    pub secret: String,
}

impl SecretWrite {
    /// The Secrets Manager call the write stands for.
    pub fn call(&self) -> &'static str {
        if self.created {
            "CreateSecret"
        } else {
            "PutSecretValue"
        }
    }
}

/// The file store that reports its writes.
#[derive(Debug, Clone)]
pub struct EventingStore {
    inner: LocalSecretStore,
    writes: Arc<mpsc::UnboundedSender<SecretWrite>>,
}

impl EventingStore {
    /// A store over `inner` reporting each successful write to `writes`.
    pub fn new(inner: LocalSecretStore, writes: mpsc::UnboundedSender<SecretWrite>) -> Self {
        Self {
            inner,
            writes: Arc::new(writes),
        }
    }

    /// The file store underneath.
    pub fn files(&self) -> &LocalSecretStore {
        &self.inner
    }
}

impl SecretStore for EventingStore {
    async fn get(&self, name: &SecretName) -> Result<Option<SecretDocument>, SecretStoreError> {
        self.inner.get(name).await
    }

    async fn update<F>(
        &self,
        name: &SecretName,
        mut f: F,
    ) -> Result<Option<SecretDocument>, SecretStoreError>
    where
        F: FnMut(Option<&SecretDocument>) -> Option<SecretDocument> + Send,
    {
        // The closure runs under the file lock on the committed document: what it saw last
        // tells whether this write created the secret.
        let mut existed = false;
        let stored = self
            .inner
            .update(name, |current| {
                existed = current.is_some();
                f(current)
            })
            .await?;
        if stored.is_some() {
            // A closed receiver means the engine is shutting down: nobody is left to tell.
            let _ = self.writes.send(SecretWrite {
                created: !existed,
                secret: name.as_str().to_owned(),
            });
        }
        Ok(stored)
    }

    async fn delete(&self, name: &SecretName) -> Result<(), SecretStoreError> {
        self.inner.delete(name).await
    }

    async fn schedule_deletion(
        &self,
        name: &app_builder_core::secrets::SecretName,
        recovery_days: u32,
    ) -> Result<(), app_builder_core::secrets::SecretStoreError> {
        self.inner.schedule_deletion(name, recovery_days).await
    }
}

/// The EventBridge scheduled event.
pub fn scheduled_event(rule: &str) -> Value {
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": crate::LOCAL_ACCOUNT,
        "time": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "region": crate::LOCAL_REGION,
        "resources": [format!("arn:aws:events:{}:{}:rule/{rule}", crate::LOCAL_REGION, crate::LOCAL_ACCOUNT)],
        "detail": {}
    })
}

/// An SQS event with one message whose body is `body`.
pub fn sqs_event(queue_arn: &str, message_id: &str, body: &str, receive_count: u32) -> Value {
    json!({
        "Records": [{
            "messageId": message_id,
            "receiptHandle": format!("local-{message_id}"),
            "body": body,
            "attributes": {
                "ApproximateReceiveCount": receive_count.to_string(),
                "SentTimestamp": chrono::Utc::now().timestamp_millis().to_string(),
                "SenderId": crate::LOCAL_ACCOUNT,
                "ApproximateFirstReceiveTimestamp": chrono::Utc::now().timestamp_millis().to_string()
            },
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": crate::LOCAL_REGION
        }]
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use app_builder_core::events::EngineEvent;

    #[tokio::test]
    async fn writes_are_reported_as_create_then_put_and_declined_updates_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let store = EventingStore::new(LocalSecretStore::new(dir.path()), tx);
        let name = SecretName::new("app/typeform/4me-demo.com/instances/acme").unwrap();
        let doc = SecretDocument::try_from(json!({"a": 1})).unwrap();
        store.upsert(&name, doc.clone()).await.unwrap();
        store.upsert(&name, doc).await.unwrap();
        store.update(&name, |_| None).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().call(), "CreateSecret");
        let second = rx.recv().await.unwrap();
        assert_eq!(second.call(), "PutSecretValue");
        assert_eq!(second.secret, name.as_str());
        assert!(rx.try_recv().is_err(), "a declined update writes nothing");
    }

    #[test]
    fn local_events_are_what_the_functions_classify() {
        assert!(matches!(
            EngineEvent::classify(scheduled_event("sync")).unwrap(),
            EngineEvent::Schedule(_)
        ));
        assert!(matches!(
            EngineEvent::classify(sqs_event("arn:q", "m1", "acme", 1)).unwrap(),
            EngineEvent::Sqs(_)
        ));
    }
}
