//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas only one
//! writes. Every write to the Lease carries the resourceVersion it was decided from, so two
//! candidates can never both win; a leader that cannot renew in time stops at once.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

/// Where the Lease is and who we are.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// How long a Lease stays valid without renewal; a standby takes over after that.
    pub duration: Duration,
}

impl LeaseConfig {
    /// How often the Lease is renewed, or a standby looks at it (as client-go: 2 s of 15 s).
    pub fn retry_period(&self) -> Duration {
        (self.duration * 2 / 15).max(Duration::from_millis(200))
    }

    /// A leader that could not renew for this long stops: the Lease may be another's soon.
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }
}

/// What a candidate should do with the Lease as it stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// No Lease yet: create it, holding it.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Expired or released: take it over.
    TakeOver,
    /// Another candidate holds it: look again later.
    Wait,
}

/// Decides from the Lease's holder and renew time (pure).
pub fn next_step(lease: Option<&Lease>, identity: &str, now: Timestamp) -> Step {
    let Some(lease) = lease else {
        return Step::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => Step::Renew,
        None | Some("") => Step::TakeOver,
        Some(_) => {
            let duration =
                SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(0).into());
            let renewed = spec
                .renew_time
                .map(|t| t.0)
                .unwrap_or(Timestamp::UNIX_EPOCH);
            let expiry = renewed.checked_add(duration).unwrap_or(Timestamp::MAX);
            if now >= expiry {
                Step::TakeOver
            } else {
                Step::Wait
            }
        }
    }
}

/// The Lease held by `config.identity` from `now`.
fn held(config: &LeaseConfig, previous: Option<&Lease>, now: Timestamp) -> Lease {
    let previous_spec = previous.and_then(|l| l.spec.clone()).unwrap_or_default();
    let ours = previous_spec.holder_identity.as_deref() == Some(config.identity.as_str());
    let transitions = previous_spec.lease_transitions.unwrap_or(0);
    Lease {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(config.namespace.clone()),
            resource_version: previous.and_then(|l| l.metadata.resource_version.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(config.identity.clone()),
            lease_duration_seconds: Some(config.duration.as_secs().max(1) as i32),
            acquire_time: if ours {
                previous_spec.acquire_time
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if ours || previous.is_none() {
                transitions
            } else {
                transitions + 1
            }),
            ..LeaseSpec::default()
        }),
    }
}

/// A candidate for the Lease.
pub struct Candidate {
    api: Api<Lease>,
    config: LeaseConfig,
}

impl Candidate {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Candidate {
            api: crate::cluster::api(client, Some(&config.namespace)),
            config,
        }
    }

    /// Tries once; `Ok(true)` when we hold the Lease afterwards.
    async fn try_hold(&self) -> Result<bool, kube::Error> {
        let current = self.api.get_opt(&self.config.name).await?;
        let now = Timestamp::now();
        let write = match next_step(current.as_ref(), &self.config.identity, now) {
            Step::Wait => return Ok(false),
            Step::Create => {
                self.api
                    .create(&PostParams::default(), &held(&self.config, None, now))
                    .await
            }
            Step::Renew | Step::TakeOver => {
                let lease = held(&self.config, current.as_ref(), now);
                self.api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match write {
            Ok(_) => Ok(true),
            // Someone else wrote the Lease first: not ours this time.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_hold().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "could not read or write the leader Lease"),
            }
            tokio::time::sleep(self.config.retry_period()).await;
        }
    }

    /// Keeps renewing the Lease; returns when leadership is lost (another holder, or no
    /// successful renewal within the renew deadline).
    pub async fn hold(&self) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period()).await;
            // A renewal must not outlast the deadline: one stuck on a silent connection would
            // keep this replica leading after a standby has taken the Lease over.
            let left = self
                .config
                .renew_deadline()
                .saturating_sub(last_renewal.elapsed());
            match tokio::time::timeout(left, self.try_hold()).await {
                Ok(Ok(true)) => last_renewal = tokio::time::Instant::now(),
                Ok(Ok(false)) => return,
                Ok(Err(e)) => tracing::warn!(error = %e, "could not renew the leader Lease"),
                Err(_) => tracing::warn!("renewing the leader Lease took past its deadline"),
            }
            if last_renewal.elapsed() > self.config.renew_deadline() {
                return;
            }
        }
    }

    /// Gives the Lease up on shutdown so that a standby takes over at once.
    pub async fn release(&self) {
        let Ok(Some(current)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        if next_step(Some(&current), &self.config.identity, Timestamp::now()) != Step::Renew {
            return;
        }
        let mut released = current.clone();
        if let Some(spec) = released.spec.as_mut() {
            spec.holder_identity = None;
        }
        if let Err(e) = self
            .api
            .replace(&self.config.name, &PostParams::default(), &released)
            .await
        {
            tracing::warn!(error = %e, "could not release the leader Lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LeaseConfig {
        LeaseConfig {
            namespace: "keyward-system".into(),
            name: "keyward".into(),
            identity: "me".into(),
            duration: Duration::from_secs(15),
        }
    }

    fn lease(holder: Option<&str>, renewed: &str) -> Lease {
        Lease {
            metadata: ObjectMeta {
                resource_version: Some("7".into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(renewed.parse().unwrap())),
                acquire_time: Some(MicroTime("2026-01-01T00:00:00Z".parse().unwrap())),
                lease_transitions: Some(3),
                ..Default::default()
            }),
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn no_lease_is_created() {
        assert_eq!(
            next_step(None, "me", at("2026-01-01T00:00:00Z")),
            Step::Create
        );
    }

    #[test]
    fn our_lease_is_renewed() {
        let ours = lease(Some("me"), "2026-01-01T00:00:00Z");
        assert_eq!(
            next_step(Some(&ours), "me", at("2026-01-01T00:05:00Z")),
            Step::Renew
        );
    }

    #[test]
    fn anothers_lease_is_respected_until_it_expires() {
        let theirs = lease(Some("other"), "2026-01-01T00:00:00Z");
        assert_eq!(
            next_step(Some(&theirs), "me", at("2026-01-01T00:00:14.9Z")),
            Step::Wait
        );
        assert_eq!(
            next_step(Some(&theirs), "me", at("2026-01-01T00:00:15Z")),
            Step::TakeOver
        );
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let released = lease(None, "2026-01-01T00:00:00Z");
        assert_eq!(
            next_step(Some(&released), "me", at("2026-01-01T00:00:01Z")),
            Step::TakeOver
        );
        let emptied = lease(Some(""), "2026-01-01T00:00:00Z");
        assert_eq!(
            next_step(Some(&emptied), "me", at("2026-01-01T00:00:01Z")),
            Step::TakeOver
        );
    }

    #[test]
    fn taking_over_counts_a_transition_and_keeps_the_version_as_precondition() {
        let theirs = lease(Some("other"), "2026-01-01T00:00:00Z");
        let now = at("2026-01-01T00:01:00Z");
        let taken = held(&config(), Some(&theirs), now);
        let spec = taken.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.acquire_time, Some(MicroTime(now)));
        assert_eq!(spec.renew_time, Some(MicroTime(now)));
        assert_eq!(taken.metadata.resource_version.as_deref(), Some("7"));
    }

    #[test]
    fn renewing_keeps_the_acquire_time_and_transitions() {
        let ours = lease(Some("me"), "2026-01-01T00:00:00Z");
        let renewed = held(&config(), Some(&ours), at("2026-01-01T00:00:02Z"))
            .spec
            .unwrap();
        assert_eq!(renewed.lease_transitions, Some(3));
        assert_eq!(
            renewed.acquire_time,
            Some(MicroTime(at("2026-01-01T00:00:00Z")))
        );
        assert_eq!(
            renewed.renew_time,
            Some(MicroTime(at("2026-01-01T00:00:02Z")))
        );
    }

    #[test]
    fn timings_follow_the_lease_duration() {
        let c = config();
        assert_eq!(c.retry_period(), Duration::from_secs(2));
        assert_eq!(c.renew_deadline(), Duration::from_secs(10));
    }
}
