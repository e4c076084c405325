//! The statuses the Key reconciler wrote, by the version of the Key they were planned from.
//!
//! A reconcile can start from a cached Key older than the status the previous reconcile wrote
//! (the watch event of that write has not arrived yet). Planned from that stale Key, the same
//! status looks missing and would be written again. Remembering which Key version each write
//! was planned from, and a digest of what it wrote, lets that second write be skipped; a newer
//! Key version (after our write or anyone else's) is planned and written afresh.
//!
//! The memo also knows the version each write produced, so that a reconcile can tell that its
//! cached Key is older than its own last write and wait for the cache rather than plan from a
//! Key without the status it was given (a lost store would then be reported with no KeyId).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::api::{Key, KeyStatus};

#[derive(Default)]
pub struct StatusMemo(Mutex<HashMap<String, Written>>);

/// One status write: the Key version it was planned from, a digest of it, and the Key version
/// it produced.
struct Written {
    from: String,
    digest: u64,
    produced: Option<u64>,
}

impl StatusMemo {
    /// Past this many keys the memo starts afresh: at worst one status is written twice.
    const MAX: usize = 100_000;

    /// Whether `status`, planned from `key`, was already written from this same version of it.
    pub fn already_written(&self, key: &Key, status: &KeyStatus) -> bool {
        let (Some(uid), Some(version)) = (key.uid(), key.resource_version()) else {
            return false;
        };
        let memo = self.0.lock().expect("status memo");
        memo.get(&uid)
            .is_some_and(|w| w.from == version && w.digest == digest(status))
    }

    /// Whether `key` is older than the Key this process's last status write produced: its
    /// watch event has not arrived yet. (Resource versions are etcd revisions; one that is not
    /// a number is never called stale.)
    pub fn is_stale(&self, key: &Key) -> bool {
        let (Some(uid), Some(version)) = (key.uid(), key.resource_version()) else {
            return false;
        };
        let Ok(version) = version.parse::<u64>() else {
            return false;
        };
        let memo = self.0.lock().expect("status memo");
        memo.get(&uid)
            .and_then(|w| w.produced)
            .is_some_and(|produced| version < produced)
    }

    /// Notes that `status` was written, planned from `key`, producing `written`.
    pub fn remember(&self, key: &Key, status: &KeyStatus, written: &Key) {
        let (Some(uid), Some(version)) = (key.uid(), key.resource_version()) else {
            return;
        };
        let mut memo = self.0.lock().expect("status memo");
        if memo.len() >= Self::MAX {
            memo.clear();
        }
        let produced = written.resource_version().and_then(|v| v.parse().ok());
        memo.insert(
            uid,
            Written {
                from: version,
                digest: digest(status),
                produced,
            },
        );
    }
}

/// A digest of the status that ignores when conditions changed: planned again a second later,
/// a new Ready condition gets a later transition time, and is still the same news.
fn digest(status: &KeyStatus) -> u64 {
    let mut status = status.clone();
    for condition in &mut status.conditions {
        condition.last_transition_time = Time(jiff::Timestamp::UNIX_EPOCH);
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&status)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    fn key(version: &str) -> Key {
        let mut key = Key::new("k", Default::default());
        key.metadata.uid = Some("uid-1".into());
        key.metadata.resource_version = Some(version.into());
        key
    }

    fn ready_at(at: &str, message: &str) -> KeyStatus {
        KeyStatus {
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: "KeyReady".into(),
                message: message.into(),
                observed_generation: Some(1),
                last_transition_time: Time(at.parse().unwrap()),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn skips_only_the_same_status_planned_from_the_same_key_version() {
        let memo = StatusMemo::default();
        let status = ready_at("2026-01-01T00:00:00Z", "ready");
        assert!(
            !memo.already_written(&key("10"), &status),
            "nothing written yet"
        );
        memo.remember(&key("10"), &status, &key("12"));
        let a_second_later = ready_at("2026-01-01T00:00:01Z", "ready");
        assert!(memo.already_written(&key("10"), &a_second_later));
        assert!(
            !memo.already_written(&key("10"), &ready_at("2026-01-01T00:00:00Z", "changed")),
            "different news is written"
        );
        assert!(
            !memo.already_written(&key("11"), &status),
            "a newer Key (someone may have changed its status) is planned afresh"
        );
    }

    #[test]
    fn a_key_older_than_the_last_write_is_stale() {
        let memo = StatusMemo::default();
        assert!(!memo.is_stale(&key("10")), "nothing written yet");
        memo.remember(
            &key("10"),
            &ready_at("2026-01-01T00:00:00Z", "ready"),
            &key("12"),
        );
        assert!(memo.is_stale(&key("10")));
        assert!(memo.is_stale(&key("11")));
        assert!(!memo.is_stale(&key("12")), "the write's own echo");
        assert!(!memo.is_stale(&key("13")));
        assert!(!memo.is_stale(&key("not-a-number")));
    }
}
