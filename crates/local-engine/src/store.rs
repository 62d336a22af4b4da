//! The engine's secret store: [`LocalSecretStore`] files, plus the local stand-in for the
//! CloudTrail → EventBridge rule: every successful write of a secret is announced as the
//! Secrets Manager event AWS would emit (`CreateSecret` for a new secret, `PutSecretValue`
//! otherwise), for the engine to deliver asynchronously to the functions that subscribe.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use app_builder_core::events::{SecretEventName, SecretWriteEvent};
use app_builder_core::secrets::{
    LocalSecretStore, SecretDocument, SecretName, SecretStore, SecretStoreError,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The file store that announces its writes.
#[derive(Debug, Clone)]
pub struct EventingStore {
    inner: LocalSecretStore,
    events: Arc<mpsc::UnboundedSender<SecretWriteEvent>>,
    /// Events announced and not yet delivered to every subscriber ([`Self::event_delivered`]).
    in_flight: Arc<AtomicUsize>,
}

impl EventingStore {
    /// A store over `inner` sending one event per successful write to `events`.
    pub fn new(inner: LocalSecretStore, events: mpsc::UnboundedSender<SecretWriteEvent>) -> Self {
        Self {
            inner,
            events: Arc::new(events),
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// How many announced events have not been delivered to every subscriber yet.
    pub fn events_in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Marks one announced event as delivered to every subscriber.
    pub fn event_delivered(&self) {
        // Saturating: a delivery is never counted below zero.
        let _ = self
            .in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
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
            let event_name = if existed {
                SecretEventName::PutSecretValue
            } else {
                SecretEventName::CreateSecret
            };
            // Counted before it is sent, so a write made while an event is being handled
            // keeps the engine unsettled until its own event is delivered too.
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            let sent = self.events.send(SecretWriteEvent {
                event_name,
                secret_id: name.as_str().to_owned(),
            });
            // A closed receiver means the engine is shutting down: nobody is left to notify.
            if sent.is_err() {
                self.event_delivered();
            }
        }
        Ok(stored)
    }

    async fn delete(&self, name: &SecretName) -> Result<(), SecretStoreError> {
        self.inner.delete(name).await
    }
}

/// The EventBridge event of a Secrets Manager write as the rule delivers it (the CloudTrail
/// record: `CreateSecret` names the secret in `requestParameters.name`, the other calls in
/// `requestParameters.secretId`).
pub fn cloudtrail_event(event: &SecretWriteEvent) -> Value {
    let parameters = match event.event_name {
        SecretEventName::CreateSecret => json!({"name": event.secret_id}),
        _ => json!({"secretId": event.secret_id}),
    };
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.secretsmanager",
        "account": crate::LOCAL_ACCOUNT,
        "time": now,
        "region": crate::LOCAL_REGION,
        "resources": [],
        "detail": {
            "eventVersion": "1.08",
            "eventTime": now,
            "eventSource": "secretsmanager.amazonaws.com",
            "eventName": event.event_name.as_str(),
            "awsRegion": crate::LOCAL_REGION,
            "requestParameters": parameters,
            "responseElements": null,
            "requestID": uuid::Uuid::new_v4().to_string(),
            "eventID": uuid::Uuid::new_v4().to_string(),
            "readOnly": false,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": crate::LOCAL_ACCOUNT
        }
    })
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
    async fn writes_are_announced_as_create_then_put_and_declined_updates_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let store = EventingStore::new(LocalSecretStore::new(dir.path()), tx);
        let name = SecretName::new("app/typeform/4me-demo.com/instances/acme").unwrap();
        let doc = SecretDocument::try_from(json!({"a": 1})).unwrap();
        store.upsert(&name, doc.clone()).await.unwrap();
        store.upsert(&name, doc).await.unwrap();
        store.update(&name, |_| None).await.unwrap();
        let first = rx.recv().await.unwrap();
        let second = rx.recv().await.unwrap();
        assert_eq!(first.event_name, SecretEventName::CreateSecret);
        assert_eq!(second.event_name, SecretEventName::PutSecretValue);
        assert_eq!(second.secret_id, name.as_str());
        assert!(rx.try_recv().is_err(), "a declined update writes nothing");
        assert_eq!(store.events_in_flight(), 2, "announced, not yet delivered");
        store.event_delivered();
        store.event_delivered();
        store.event_delivered();
        assert_eq!(store.events_in_flight(), 0, "never below zero");

        // The events are what EventBridge delivers: the engine's own classifier reads them back.
        for event in [first, second] {
            let Ok(EngineEvent::SecretWrite(read)) =
                EngineEvent::classify(cloudtrail_event(&event))
            else {
                panic!("not a secret write event");
            };
            assert_eq!(read, event);
        }
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
