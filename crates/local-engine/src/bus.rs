//! The local stand-in for the engine's EventBridge bus: what the secrets function publishes
//! ([`LocalBus`], its [`EventPublisher`]) is delivered, as the event EventBridge would deliver
//! ([`eventbridge_event`]), to every function with a rule whose pattern matches it
//! ([`matches`]), the rules being the ones the functions' templates declare.
//!
//! Pattern matching follows EventBridge's rules for the forms the templates use: an object
//! pattern matches when each of its keys matches the event's member of that name; a list of
//! values matches a string (or number, or boolean) equal to one of them, or an array of which one
//! element is.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use app_builder_core::bus::{
    EventPublisher, INSTALLATION_CHANGED, InstallationChanged, PublishError,
};
use serde_json::Value;
use tokio::sync::mpsc;

/// The bus: publishing sends the event to the engine's router.
#[derive(Debug, Clone)]
pub struct LocalBus {
    name: String,
    sender: mpsc::UnboundedSender<Put>,
    in_flight: Arc<AtomicUsize>,
}

/// An event put on the bus, and the journal entry it replays (none when a function published
/// it).
pub type Put = (InstallationChanged, Option<u64>);

impl LocalBus {
    /// A bus named `name` and the receiving end the router reads.
    pub fn new(name: &str) -> (Self, mpsc::UnboundedReceiver<Put>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let bus = Self {
            name: name.to_owned(),
            sender,
            in_flight: Arc::new(AtomicUsize::new(0)),
        };
        (bus, receiver)
    }

    /// How many published events have not been delivered to every matching rule yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Marks one published event as delivered.
    pub fn delivered(&self) {
        // Saturating: a delivery is never counted below zero.
        let _ = self
            .in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// Puts `event` on the bus as a replay of journal entry `of`.
    pub fn replay(&self, event: &InstallationChanged, of: u64) -> Result<(), PublishError> {
        self.put(event, Some(of))
    }

    fn put(&self, event: &InstallationChanged, replay_of: Option<u64>) -> Result<(), PublishError> {
        // Counted before it is sent, so an event published while another is being handled keeps
        // the engine unsettled until it is delivered too.
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.sender.send((event.clone(), replay_of)).map_err(|_| {
            self.delivered();
            PublishError {
                bus: self.name.clone(),
                detail_type: INSTALLATION_CHANGED,
                message: "the local engine has stopped".into(),
            }
        })
    }
}

impl EventPublisher for LocalBus {
    async fn publish(&self, event: &InstallationChanged) -> Result<(), PublishError> {
        self.put(event, None)
    }
}

/// The event as EventBridge delivers it to a rule's target.
pub fn eventbridge_event(detail: &InstallationChanged) -> Value {
    detail.eventbridge_event(
        &uuid::Uuid::new_v4().to_string(),
        crate::LOCAL_ACCOUNT,
        crate::LOCAL_REGION,
    )
}

/// Whether `event` matches the EventBridge `pattern` (see the module docs for the forms).
pub fn matches(pattern: &Value, event: &Value) -> bool {
    match pattern {
        Value::Object(members) => members.iter().all(|(key, sub)| match event.get(key) {
            Some(value) => matches(sub, value),
            None => false,
        }),
        Value::Array(allowed) => match event {
            Value::Array(values) => values.iter().any(|value| allowed.contains(value)),
            Value::Object(_) => false,
            scalar => allowed.contains(scalar),
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use app_builder_core::bus::LifecycleStep;
    use serde_json::json;

    fn detail(offering: &str) -> InstallationChanged {
        InstallationChanged {
            domain: "4me-demo.com".into(),
            offering: offering.into(),
            account: "wdc".into(),
            step: LifecycleStep::SecretsUpdated,
            keys: vec!["application".into(), "secrets".into()],
            change: "c-1".into(),
        }
    }

    #[test]
    fn patterns_match_like_eventbridge() {
        let event = eventbridge_event(&detail("typeform"));
        let pattern = json!({
            "source": ["4me-app-builder"],
            "detail-type": ["Installation changed"],
            "detail": {"domain": ["4me-demo.com"], "offering": ["lansweeper", "typeform"]}
        });
        assert!(matches(&pattern, &event));
        // Another offering, another domain, a missing member, a source of someone else.
        assert!(!matches(
            &pattern,
            &eventbridge_event(&detail("note-dispatcher"))
        ));
        let mut other_domain = event.clone();
        other_domain["detail"]["domain"] = json!("4me.com");
        assert!(!matches(&pattern, &other_domain));
        assert!(!matches(&json!({"detail": {"missing": ["x"]}}), &event));
        assert!(!matches(&json!({"source": ["aws.secretsmanager"]}), &event));
        // A list of values matches an array with one of them.
        assert!(matches(&json!({"detail": {"keys": ["secrets"]}}), &event));
        assert!(!matches(&json!({"detail": {"keys": ["policy"]}}), &event));
        // A list never matches an object.
        assert!(!matches(&json!({"detail": ["x"]}), &event));
    }

    #[tokio::test]
    async fn publishing_counts_until_delivered_and_fails_once_stopped() {
        let (bus, mut receiver) = LocalBus::new("local");
        bus.publish(&detail("typeform")).await.unwrap();
        assert_eq!(bus.in_flight(), 1);
        assert_eq!(receiver.recv().await.unwrap().0.offering, "typeform");
        bus.delivered();
        bus.delivered();
        assert_eq!(bus.in_flight(), 0, "never below zero");
        drop(receiver);
        assert!(bus.publish(&detail("typeform")).await.is_err());
        assert_eq!(bus.in_flight(), 0);
    }
}
