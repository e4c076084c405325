//! The controllers: which objects trigger which reconciler, and how failures are retried.

mod key;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

use crate::api::Key;
use crate::api::labels;
use crate::error::Error;
use crate::k8s::Kube;
use crate::plan::PlanSettings;

/// What every reconcile shares.
pub struct Context {
    pub kube: Kube,
    pub settings: PlanSettings,
    /// Consecutive failures per Key, for exponential backoff; cleared on success.
    failures: Mutex<HashMap<ObjectRef<Key>, u32>>,
}

impl Context {
    pub fn new(kube: Kube, settings: PlanSettings) -> Self {
        Context {
            kube,
            settings,
            failures: Mutex::default(),
        }
    }
}

/// Where the controller looks: one namespace, or all of them.
#[derive(Clone, Debug)]
pub struct Scope {
    pub namespace: Option<String>,
}

impl Scope {
    fn api<K>(&self, client: kube::Client) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        }
    }
}

/// Runs the Key controller until a shutdown signal.
pub async fn run(ctx: Arc<Context>, scope: Scope) {
    let client = ctx.kube.client().clone();
    let keys: Api<Key> = scope.api(client.clone());
    // Only keyward's Secrets, and only their metadata: key bytes never enter the cache, and
    // the cluster's other Secrets cost nothing.
    let secrets: Api<PartialObjectMeta<Secret>> = scope.api(client);
    let secret_changes = watcher(
        secrets,
        watcher::Config::default().labels(&labels::managed_selector()),
    )
    .touched_objects();

    Controller::new(keys, watcher::Config::default())
        .watches_stream(secret_changes, key_of_secret)
        .shutdown_on_signal()
        .run(reconcile_key, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile did not complete");
            }
        })
        .await;
}

/// The Key a keyward Secret belongs to, from the annotation that holds its full name.
fn key_of_secret(secret: PartialObjectMeta<Secret>) -> Option<ObjectRef<Key>> {
    let name = secret.annotations().get(labels::KEY)?;
    let namespace = secret.namespace()?;
    Some(ObjectRef::new(name).within(&namespace))
}

async fn reconcile_key(key: Arc<Key>, ctx: Arc<Context>) -> Result<Action, Error> {
    let result = key::reconcile(key.clone(), ctx.clone()).await;
    if result.is_ok() {
        ctx.failures
            .lock()
            .expect("failure counts")
            .remove(&ObjectRef::from(key.as_ref()));
    }
    result
}

/// Retries a failed reconcile with per-key exponential backoff, 1 s doubling to 5 minutes.
fn error_policy(key: Arc<Key>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = {
        let mut counts = ctx.failures.lock().expect("failure counts");
        let count = counts.entry(ObjectRef::from(key.as_ref())).or_insert(0);
        *count = count.saturating_add(1);
        *count
    };
    let delay = backoff(failures);
    tracing::warn!(
        key = %key.name_any(), namespace = key.namespace().as_deref().unwrap_or(""),
        category = error.category(), error = %error, retry_in = ?delay, "reconcile failed"
    );
    Action::requeue(delay)
}

fn backoff(failures: u32) -> Duration {
    const MAX: Duration = Duration::from_secs(300);
    let exponent = failures.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exponent).min(MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_five_minutes() {
        let delays: Vec<u64> = (1..=11).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(u32::MAX).as_secs(), 300);
    }
}
