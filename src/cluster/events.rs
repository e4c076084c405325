//! Events, posted off the reconcilers' path as client-go's recorder posts them: a reconcile
//! hands its event over and goes on, so a new key or a rotation waits for its own writes only.
//! One task posts them, one at a time and in the order they were recorded (so an event seen
//! means every earlier one was posted), and during a burst of new keys or rotations they wait
//! instead of slowing every key's writes. Events are best effort, as in Kubernetes itself: one
//! that cannot be posted is logged, and when the backlog is full the newest are dropped.

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::{mpsc, oneshot};

use super::MANAGER;
use crate::plan::Note;

/// Largest event note the events.k8s.io/v1 API accepts, in bytes.
const MAX_NOTE_BYTES: usize = 1024;

/// Events handed over and not yet posted, at most (client-go queues 1,000): a burst of 1,000
/// new keys or rotations fits, and a queue that is full costs about a megabyte.
const MAX_BACKLOG: usize = 1024;

enum Job {
    Post(Box<Event>),
    /// Answered once every event handed over before it was posted.
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct EventRecorder {
    queue: mpsc::Sender<Job>,
    /// Which operator process reports events (the pod name in a cluster).
    instance: String,
}

impl EventRecorder {
    /// Starts the task that posts the events; needs a Tokio runtime.
    pub fn new(client: Client, instance: String) -> Self {
        let (queue, jobs) = mpsc::channel(MAX_BACKLOG);
        tokio::spawn(post_in_order(client, jobs));
        EventRecorder { queue, instance }
    }

    /// Hands an event on `object` over to be posted. keyward records events only when
    /// something changed, so each is created on its own rather than folded into a series:
    /// kube's event recorder merges events of the same reason and would drop a new message.
    pub fn record<K: Resource<DynamicType = ()>>(&self, object: &K, note: &Note) {
        let event = Box::new(self.event(object, note));
        if self.queue.try_send(Job::Post(event)).is_err() {
            tracing::warn!(object = %object.name_any(), reason = note.reason.as_str(),
                "dropped an event: too many are waiting to be posted");
        }
    }

    /// Waits, at most `within`, for the events handed over to be posted: at shutdown, so that
    /// the last reconciles' events are not lost with the process.
    pub async fn flush(&self, within: Duration) {
        let (done, posted) = oneshot::channel();
        let flushed =
            async { self.queue.send(Job::Flush(done)).await.is_ok() && posted.await.is_ok() };
        if !matches!(tokio::time::timeout(within, flushed).await, Ok(true)) {
            tracing::warn!("stopped with events not yet posted");
        }
    }

    fn event<K: Resource<DynamicType = ()>>(&self, object: &K, note: &Note) -> Event {
        let regarding = object.object_ref(&());
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = format!(
            "{}.{}",
            object.name_any().chars().take(200).collect::<String>(),
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace),
                ..Default::default()
            },
            event_time: Some(MicroTime(jiff::Timestamp::now())),
            type_: Some(if note.warning { "Warning" } else { "Normal" }.to_string()),
            reason: Some(note.reason.to_string()),
            note: Some(truncate(&note.message, MAX_NOTE_BYTES)),
            action: Some("Reconcile".to_string()),
            regarding: Some(regarding),
            reporting_controller: Some(MANAGER.to_string()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        }
    }
}

/// Posts the events handed over, in order, until every recorder is dropped.
async fn post_in_order(client: Client, mut jobs: mpsc::Receiver<Job>) {
    while let Some(job) = jobs.recv().await {
        let event = match job {
            Job::Post(event) => event,
            Job::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
        if let Err(e) = events.create(&PostParams::default(), &event).await {
            let regarding = event.regarding.and_then(|r| r.name).unwrap_or_default();
            tracing::warn!(object = %regarding, reason = event.reason.unwrap_or_default(),
                error = %e, "could not record event");
        }
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("short", 1024), "short");
        let long = "é".repeat(1000);
        let cut = truncate(&long, 1024);
        assert!(cut.len() <= 1024 && cut.ends_with('…'));
    }
}
