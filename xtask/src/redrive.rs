//! `cargo xtask replay --dlq <integration>`: re-drives what an integration's stack kept after
//! the retries ran out, on AWS.
//!
//! Two kinds of queue, found by the names the templates give them (`<offering>-...`):
//!
//! - `<offering>-dead-letter` (Lansweeper): sync messages the refresh queue gave up on
//!   (`maxReceiveCount`). Each goes back to its source queue, `<offering>-refresh-trigger`,
//!   body and attributes as they were.
//! - `<offering>-failed-events` (every integration): Lambda's on-failure records of
//!   asynchronous invocations that failed three times. A record of an `Installation changed`
//!   event is put on the engine's bus again (`<app>-<domain>`, the domain named by the event),
//!   whose rule delivers it to the function as before; anything else (a scheduled event: the
//!   next schedule does its work) is kept and reported.
//!
//! A message is deleted only after it was sent on (at least once: should the delete fail, the
//! message is sent again on the next run, and every consumer handles a change or a sync once).
//! `--dry-run` counts and lists without changing anything; without `--yes` the re-drive asks
//! first.

use std::collections::HashMap;
use std::io::Write;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use serde_json::Value;

/// Where the messages of one queue go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Back to the source queue.
    Queue {
        /// Its name.
        name: String,
        /// Its URL.
        url: String,
    },
    /// Onto the engine's bus (`<app>-<domain>`).
    Bus,
}

/// One queue to re-drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The queue's name.
    pub queue: String,
    /// Its URL.
    pub url: String,
    /// How many messages it holds (SQS's approximate count).
    pub messages: u64,
    /// Where they go.
    pub target: Target,
}

/// What one re-drive did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Messages sent on and deleted.
    pub moved: u64,
    /// Messages kept, with why.
    pub kept: Vec<String>,
}

/// Why a re-drive failed.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    /// A queue of the stack is not there.
    #[error(
        "queue `{0}` does not exist (is the integration deployed with this offering reference, in this account and region?)"
    )]
    NoQueue(String),
    /// An AWS call failed.
    #[error("{call}: {message}")]
    Aws {
        /// The call.
        call: &'static str,
        /// The SDK's message.
        message: String,
    },
    /// Input or output failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn aws<E: std::error::Error>(call: &'static str) -> impl FnOnce(E) -> RedriveError {
    move |error| RedriveError::Aws {
        call,
        message: aws_sdk_sqs::error::DisplayErrorContext(error).to_string(),
    }
}

/// The AWS clients a re-drive uses.
#[derive(Debug, Clone)]
pub struct Redrive {
    sqs: aws_sdk_sqs::Client,
    events: aws_sdk_eventbridge::Client,
    /// The engine's application name (`4me-app-builder`): the bus is `<app>-<domain>`.
    app: String,
}

impl Redrive {
    /// A re-drive with the clients of `config`, for the engine of application `app`.
    pub fn new(config: &aws_config::SdkConfig, app: &str) -> Redrive {
        Redrive {
            sqs: aws_sdk_sqs::Client::new(config),
            events: aws_sdk_eventbridge::Client::new(config),
            app: app.to_owned(),
        }
    }

    /// The queues of `integration`'s stack deployed with `offering`, and their counts.
    pub async fn plan(&self, integration: &str, offering: &str) -> Result<Vec<Step>, RedriveError> {
        let mut steps = Vec::new();
        if integration == "lansweeper" {
            let source = format!("{offering}-refresh-trigger");
            let url = self.queue_url(&source).await?;
            steps.push(
                self.step(
                    &format!("{offering}-dead-letter"),
                    Target::Queue { name: source, url },
                )
                .await?,
            );
        }
        steps.push(
            self.step(&format!("{offering}-failed-events"), Target::Bus)
                .await?,
        );
        Ok(steps)
    }

    async fn queue_url(&self, name: &str) -> Result<String, RedriveError> {
        let answer = self.sqs.get_queue_url().queue_name(name).send().await;
        match answer {
            Ok(found) => found
                .queue_url
                .ok_or_else(|| RedriveError::NoQueue(name.to_owned())),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_queue_does_not_exist()) =>
            {
                Err(RedriveError::NoQueue(name.to_owned()))
            }
            Err(error) => Err(aws("GetQueueUrl")(error)),
        }
    }

    async fn step(&self, queue: &str, target: Target) -> Result<Step, RedriveError> {
        let url = self.queue_url(queue).await?;
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(aws("GetQueueAttributes"))?;
        let messages = attributes
            .attributes
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                    .cloned()
            })
            .and_then(|count| count.parse().ok())
            .unwrap_or(0);
        Ok(Step {
            queue: queue.to_owned(),
            url,
            messages,
            target,
        })
    }

    /// Moves the messages of `step` to its target (see the module docs).
    pub async fn run(&self, step: &Step) -> Result<Outcome, RedriveError> {
        let mut outcome = Outcome::default();
        let mut kept_handles = Vec::new();
        loop {
            let received = self
                .sqs
                .receive_message()
                .queue_url(&step.url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                // Long enough for this run not to receive a kept message again.
                .visibility_timeout(300)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(aws("ReceiveMessage"))?;
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            let mut done = Vec::new();
            for message in messages {
                let (Some(id), Some(handle)) = (message.message_id(), message.receipt_handle())
                else {
                    continue;
                };
                let body = message.body().unwrap_or_default();
                let sent = match &step.target {
                    Target::Queue { url, .. } => {
                        self.sqs
                            .send_message()
                            .queue_url(url)
                            .message_body(body)
                            .set_message_attributes(message.message_attributes.clone())
                            .send()
                            .await
                            .map_err(aws("SendMessage"))?;
                        Ok(())
                    }
                    Target::Bus => self.put_on_bus(body).await?,
                };
                match sent {
                    Ok(()) => done.push(
                        DeleteMessageBatchRequestEntry::builder()
                            .id(format!("m{}", done.len()))
                            .receipt_handle(handle)
                            .build()
                            .map_err(aws("DeleteMessageBatch"))?,
                    ),
                    Err(why) => {
                        outcome.kept.push(format!("{id}: {why}"));
                        kept_handles.push(handle.to_owned());
                    }
                }
            }
            if !done.is_empty() {
                let count = done.len() as u64;
                let deleted = self
                    .sqs
                    .delete_message_batch()
                    .queue_url(&step.url)
                    .set_entries(Some(done))
                    .send()
                    .await
                    .map_err(aws("DeleteMessageBatch"))?;
                outcome.moved += count - deleted.failed.len() as u64;
            }
        }
        // What stays is visible again at once, for the next look at the queue.
        for handle in kept_handles {
            self.sqs
                .change_message_visibility()
                .queue_url(&step.url)
                .receipt_handle(handle)
                .visibility_timeout(0)
                .send()
                .await
                .map_err(aws("ChangeMessageVisibility"))?;
        }
        Ok(outcome)
    }

    /// Puts the `Installation changed` event of a Lambda on-failure record on the engine's bus;
    /// `Ok(Err(why))` keeps a record that holds no such event.
    async fn put_on_bus(&self, body: &str) -> Result<Result<(), String>, RedriveError> {
        let record: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let event = &record["requestPayload"];
        let (Some(source), Some(detail_type)) =
            (event["source"].as_str(), event["detail-type"].as_str())
        else {
            return Ok(Err("not a Lambda on-failure record of an event".into()));
        };
        if source != app_builder_core::bus::EVENT_SOURCE
            || detail_type != app_builder_core::bus::INSTALLATION_CHANGED
        {
            return Ok(Err(format!(
                "a `{detail_type}` event from `{source}`, not the engine's (the next schedule does a scheduled event's work)"
            )));
        }
        let Some(domain) = event["detail"]["domain"].as_str() else {
            return Ok(Err("the event names no domain".into()));
        };
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .event_bus_name(format!("{}-{domain}", self.app))
            .source(source)
            .detail_type(detail_type)
            .detail(event["detail"].to_string())
            .build();
        let put = self
            .events
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(aws("PutEvents"))?;
        if put.failed_entry_count > 0 {
            let why = put
                .entries
                .unwrap_or_default()
                .into_iter()
                .filter_map(|e| e.error_message)
                .collect::<Vec<_>>()
                .join("; ");
            return Err(RedriveError::Aws {
                call: "PutEvents",
                message: why,
            });
        }
        Ok(Ok(()))
    }
}

/// Prints the plan, asks unless `yes`, runs it unless `dry_run`; returns the outcomes by queue.
pub async fn redrive(
    redrive: &Redrive,
    steps: &[Step],
    dry_run: bool,
    yes: bool,
    out: &mut dyn Write,
    confirm: &mut dyn FnMut(&str) -> bool,
) -> Result<HashMap<String, Outcome>, RedriveError> {
    let total: u64 = steps.iter().map(|step| step.messages).sum();
    for step in steps {
        let target = match &step.target {
            Target::Queue { name, .. } => format!("back to queue {name}"),
            Target::Bus => format!(
                "each `Installation changed` event onto the bus {}-<domain>",
                redrive.app
            ),
        };
        writeln!(
            out,
            "  {}: {} messages -> {target}",
            step.queue, step.messages
        )?;
    }
    let mut outcomes = HashMap::new();
    if dry_run {
        writeln!(out, "dry run: {total} messages, nothing moved")?;
        return Ok(outcomes);
    }
    if total == 0 {
        writeln!(out, "nothing to re-drive")?;
        return Ok(outcomes);
    }
    if !yes && !confirm(&format!("Re-drive these {total} messages?")) {
        writeln!(out, "nothing moved")?;
        return Ok(outcomes);
    }
    for step in steps {
        let outcome = redrive.run(step).await?;
        writeln!(out, "  {}: {} moved", step.queue, outcome.moved)?;
        for why in &outcome.kept {
            writeln!(out, "    kept {why}")?;
        }
        outcomes.insert(step.queue.clone(), outcome);
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn config() -> aws_config::SdkConfig {
        assert!(
            std::env::var("AWS_ENDPOINT_URL").is_ok_and(|e| !e.is_empty()),
            "AWS_ENDPOINT_URL is not set: run under `cargo xtask test` (moto)"
        );
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-west-1"))
            .load()
            .await
    }

    async fn queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
        sqs.create_queue()
            .queue_name(name)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap()
    }

    async fn bodies(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
        let mut all = Vec::new();
        loop {
            let received = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                return all;
            }
            all.extend(messages.into_iter().filter_map(|m| m.body));
        }
    }

    /// The Lansweeper stack's queues on moto, a bus with a rule sending to a queue: a dry run
    /// moves nothing; the re-drive puts the sync messages back on the refresh queue and the
    /// failed installation event back on the bus, and keeps a failed scheduled event.
    #[tokio::test]
    async fn the_dead_letter_and_failed_events_queues_go_back_where_they_came_from() {
        let config = config().await;
        let sqs = aws_sdk_sqs::Client::new(&config);
        let events = aws_sdk_eventbridge::Client::new(&config);
        let offering = format!("ls{}", uuid::Uuid::new_v4().simple());
        let app = format!("app{}", &offering[2..10]);
        let refresh = queue(&sqs, &format!("{offering}-refresh-trigger")).await;
        let dead = queue(&sqs, &format!("{offering}-dead-letter")).await;
        let failed = queue(&sqs, &format!("{offering}-failed-events")).await;
        let delivered = queue(&sqs, &format!("{offering}-rule-target")).await;
        let bus = format!("{app}-4me.com");
        events.create_event_bus().name(&bus).send().await.unwrap();
        events
            .put_rule()
            .name(format!("{offering}-rule"))
            .event_bus_name(&bus)
            .event_pattern(
                r#"{"source":["4me-app-builder"],"detail-type":["Installation changed"]}"#,
            )
            .send()
            .await
            .unwrap();
        let target_arn = sqs
            .get_queue_attributes()
            .queue_url(&delivered)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
            .clone();
        events
            .put_targets()
            .rule(format!("{offering}-rule"))
            .event_bus_name(&bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("q")
                    .arn(target_arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        for account in ["acme", "globex"] {
            sqs.send_message()
                .queue_url(&dead)
                .message_body(format!(r#"{{"account":"{account}"}}"#))
                .send()
                .await
                .unwrap();
        }
        let detail = serde_json::json!({"domain": "4me.com", "offering": offering, "account": "acme",
            "step": "enabled", "keys": [], "change": "c-1"});
        let record = |payload: Value| {
            serde_json::json!({"version": "1.0", "requestContext": {"condition": "RetriesExhausted",
                "approximateInvokeCount": 3}, "requestPayload": payload})
            .to_string()
        };
        for body in [
            record(
                serde_json::json!({"source": "4me-app-builder", "detail-type": "Installation changed",
                "detail": detail}),
            ),
            record(
                serde_json::json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}),
            ),
        ] {
            sqs.send_message()
                .queue_url(&failed)
                .message_body(body)
                .send()
                .await
                .unwrap();
        }

        let redrive = Redrive::new(&config, &app);
        let steps = redrive.plan("lansweeper", &offering).await.unwrap();
        assert_eq!(
            steps
                .iter()
                .map(|s| (s.queue.as_str(), s.messages))
                .collect::<Vec<_>>(),
            [
                (format!("{offering}-dead-letter").as_str(), 2),
                (format!("{offering}-failed-events").as_str(), 2)
            ]
        );
        let mut out = Vec::new();
        let mut never = |_: &str| -> bool { panic!("a dry run asks nothing") };
        super::redrive(&redrive, &steps, true, false, &mut out, &mut never)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&out).contains("dry run: 4 messages, nothing moved"));
        let mut declined = |_: &str| false;
        super::redrive(&redrive, &steps, false, false, &mut out, &mut declined)
            .await
            .unwrap();
        assert!(
            bodies(&sqs, &refresh).await.is_empty(),
            "declined: nothing moved"
        );

        let mut asked = Vec::new();
        let mut confirm = |question: &str| {
            asked.push(question.to_owned());
            true
        };
        let outcomes = super::redrive(&redrive, &steps, false, false, &mut out, &mut confirm)
            .await
            .unwrap();
        assert_eq!(asked, ["Re-drive these 4 messages?"]);
        assert_eq!(outcomes[&format!("{offering}-dead-letter")].moved, 2);
        let failed_outcome = &outcomes[&format!("{offering}-failed-events")];
        assert_eq!(failed_outcome.moved, 1);
        assert_eq!(failed_outcome.kept.len(), 1, "{failed_outcome:?}");
        assert!(failed_outcome.kept[0].contains("Scheduled Event"));
        let mut moved = bodies(&sqs, &refresh).await;
        moved.sort();
        assert_eq!(moved, [r#"{"account":"acme"}"#, r#"{"account":"globex"}"#]);
        let on_bus = bodies(&sqs, &delivered).await;
        assert_eq!(on_bus.len(), 1);
        let event: Value = serde_json::from_str(&on_bus[0]).unwrap();
        assert_eq!(event["detail"], detail);
        assert_eq!(
            redrive.plan("lansweeper", &offering).await.unwrap()[0].messages,
            0
        );
        assert!(matches!(
            redrive.plan("typeform", "no-such-offering").await,
            Err(RedriveError::NoQueue(_))
        ));
    }
}
