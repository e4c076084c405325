//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas only one
//! writes. Every write to the Lease carries the resourceVersion it was decided from, so two
//! candidates can never both win; a leader that cannot renew in time stops at once.
//!
//! Each replica times the Lease on its own monotonic clock, as client-go does, never by the
//! times written in it (two nodes' clocks may disagree): a standby counts the lease duration
//! from when it saw the Lease last change, and a leader counts its renew deadline from when it
//! sent its last successful renewal, so it stops before any standby can count the Lease out.

use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::time::Instant;

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

/// What of the Lease changes whenever it is renewed or changes hands.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    holder: Option<String>,
    renew_time: Option<Timestamp>,
    duration: Duration,
    resource_version: Option<String>,
}

impl Record {
    fn of(lease: &Lease) -> Record {
        let spec = lease.spec.clone().unwrap_or_default();
        let seconds = spec.lease_duration_seconds.unwrap_or(0);
        Record {
            holder: spec.holder_identity.filter(|holder| !holder.is_empty()),
            renew_time: spec.renew_time.map(|t| t.0),
            duration: Duration::from_secs(u64::try_from(seconds).unwrap_or(0)),
            resource_version: lease.metadata.resource_version.clone(),
        }
    }
}

/// The Lease as a candidate last saw it, and since when (by the candidate's clock) it has
/// looked like that: client-go's observedRecord and observedTime.
#[derive(Clone, Debug)]
pub struct Observed {
    record: Record,
    since: Instant,
}

impl Observed {
    /// Whether the holder has let a whole lease duration pass, as far as we saw, without
    /// renewing.
    fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.since) >= self.record.duration
    }
}

/// What a candidate knows after reading the Lease (`None`: there is none) at `now`: what it
/// knew before if the Lease has not changed since, else the Lease as seen from `now` (pure).
pub fn observe(before: Option<Observed>, lease: Option<&Lease>, now: Instant) -> Option<Observed> {
    let record = Record::of(lease?);
    match before {
        Some(seen) if seen.record == record => Some(seen),
        _ => Some(Observed { record, since: now }),
    }
}

/// Decides from the Lease as observed (pure).
pub fn next_step(observed: Option<&Observed>, identity: &str, now: Instant) -> Step {
    let Some(observed) = observed else {
        return Step::Create;
    };
    match observed.record.holder.as_deref() {
        Some(holder) if holder == identity => Step::Renew,
        None => Step::TakeOver,
        Some(_) if observed.expired(now) => Step::TakeOver,
        Some(_) => Step::Wait,
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
    /// The Lease as last read.
    observed: Mutex<Option<Observed>>,
}

impl Candidate {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Candidate {
            api: crate::cluster::api(client, Some(&config.namespace)),
            config,
            observed: Mutex::default(),
        }
    }

    /// Tries once: when the write that left us holding the Lease was sent, if it did.
    async fn try_hold(&self) -> Result<Option<Instant>, kube::Error> {
        let current = self.api.get_opt(&self.config.name).await?;
        let step = {
            let mut observed = self.observed.lock().expect("observed Lease");
            *observed = observe(observed.take(), current.as_ref(), Instant::now());
            next_step(observed.as_ref(), &self.config.identity, Instant::now())
        };
        let now = Timestamp::now();
        let sent = Instant::now();
        let write = match step {
            Step::Wait => return Ok(None),
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
            Ok(_) => Ok(Some(sent)),
            // Someone else wrote the Lease first: not ours this time.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits until this candidate holds the Lease; returns when the write that won it was
    /// sent, from which its term runs.
    pub async fn acquire(&self) -> Instant {
        loop {
            match self.try_hold().await {
                Ok(Some(sent)) => return sent,
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "could not read or write the leader Lease"),
            }
            tokio::time::sleep(self.config.retry_period()).await;
        }
    }

    /// Keeps renewing the Lease won (or last renewed) with a write sent at `renewed`; returns
    /// when leadership is lost: another holder, or no successful renewal within the renew
    /// deadline.
    pub async fn hold(&self, renewed: Instant) {
        keep_renewing(&self.config, renewed, || self.try_hold()).await
    }

    /// Gives the Lease up, if we hold it, so that a standby takes over at once rather than
    /// after the lease duration; gives up itself after `within`.
    pub async fn release(&self, within: Duration) {
        match tokio::time::timeout(within, self.try_release()).await {
            Ok(Ok(true)) => tracing::info!("released the leader Lease"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not release the leader Lease"),
            Err(_) => tracing::warn!(?within, "releasing the leader Lease took too long"),
        }
    }

    async fn try_release(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(false);
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(false);
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await?;
        Ok(true)
    }
}

/// Renews every retry period with `renew` (when the successful write was sent, `None` if the
/// Lease is another's) until the Lease is lost or the renew deadline passes, counted from
/// when the last successful renewal was sent: the Lease promises its duration from then, not
/// from when the answer came, so a slow answer must not lengthen this leader's term.
async fn keep_renewing<F, Fut>(config: &LeaseConfig, mut renewed: Instant, mut renew: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<Instant>, kube::Error>>,
{
    loop {
        tokio::time::sleep(config.retry_period()).await;
        // A renewal must not outlast the deadline: one stuck on a silent connection would
        // keep this replica leading after a standby has taken the Lease over.
        let deadline = renewed + config.renew_deadline();
        match tokio::time::timeout_at(deadline, renew()).await {
            Ok(Ok(Some(sent))) => renewed = sent,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => tracing::warn!(error = %e, "could not renew the leader Lease"),
            Err(_) => tracing::warn!("renewing the leader Lease took past its deadline"),
        }
        if Instant::now() >= renewed + config.renew_deadline() {
            return;
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

    /// What a candidate knows having first read `lease` at `t0`.
    fn first_seen(lease: &Lease, t0: Instant) -> Option<Observed> {
        observe(None, Some(lease), t0)
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn no_lease_is_created() {
        let t0 = Instant::now();
        assert_eq!(
            next_step(observe(None, None, t0).as_ref(), "me", t0),
            Step::Create
        );
    }

    #[test]
    fn our_lease_is_renewed() {
        let t0 = Instant::now();
        let ours = first_seen(&lease(Some("me"), "2026-01-01T00:00:00Z"), t0);
        assert_eq!(
            next_step(ours.as_ref(), "me", t0 + secs(300.0)),
            Step::Renew
        );
    }

    #[test]
    fn anothers_lease_is_respected_for_its_duration_after_we_saw_it_change() {
        let t0 = Instant::now();
        let theirs = first_seen(&lease(Some("other"), "2026-01-01T00:00:00Z"), t0);
        assert_eq!(
            next_step(theirs.as_ref(), "me", t0 + secs(14.9)),
            Step::Wait
        );
        assert_eq!(
            next_step(theirs.as_ref(), "me", t0 + secs(15.0)),
            Step::TakeOver
        );
    }

    #[test]
    fn the_holders_clock_decides_nothing() {
        let t0 = Instant::now();
        // Written by a node whose clock is an hour behind ours: not expired for that.
        let behind = first_seen(&lease(Some("other"), "2025-12-31T23:00:00Z"), t0);
        assert_eq!(next_step(behind.as_ref(), "me", t0), Step::Wait);
        assert_eq!(
            next_step(behind.as_ref(), "me", t0 + secs(15.0)),
            Step::TakeOver
        );
        // An hour ahead: not an hour more to wait for a holder that stopped renewing.
        let ahead = first_seen(&lease(Some("other"), "2026-01-01T01:00:00Z"), t0);
        assert_eq!(
            next_step(ahead.as_ref(), "me", t0 + secs(15.0)),
            Step::TakeOver
        );
    }

    #[test]
    fn a_renewal_seen_restarts_the_count_and_an_unchanged_lease_does_not() {
        let t0 = Instant::now();
        let theirs = lease(Some("other"), "2026-01-01T00:00:00Z");
        let seen = first_seen(&theirs, t0);
        let unchanged = observe(seen, Some(&theirs), t0 + secs(10.0));
        assert_eq!(
            next_step(unchanged.as_ref(), "me", t0 + secs(15.0)),
            Step::TakeOver
        );
        let mut renewed = lease(Some("other"), "2026-01-01T00:00:10Z");
        renewed.metadata.resource_version = Some("8".into());
        let seen = observe(unchanged, Some(&renewed), t0 + secs(10.0));
        assert_eq!(next_step(seen.as_ref(), "me", t0 + secs(24.9)), Step::Wait);
        assert_eq!(
            next_step(seen.as_ref(), "me", t0 + secs(25.0)),
            Step::TakeOver
        );
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let t0 = Instant::now();
        let released = first_seen(&lease(None, "2026-01-01T00:00:00Z"), t0);
        assert_eq!(next_step(released.as_ref(), "me", t0), Step::TakeOver);
        let emptied = first_seen(&lease(Some(""), "2026-01-01T00:00:00Z"), t0);
        assert_eq!(next_step(emptied.as_ref(), "me", t0), Step::TakeOver);
    }

    #[tokio::test]
    async fn the_renew_deadline_counts_from_when_the_last_renewal_was_sent() {
        // Renewals every 300 ms, a renew deadline of 1.5 s.
        let config = LeaseConfig {
            duration: Duration::from_millis(2250),
            ..config()
        };
        let start = Instant::now();
        let mut renewals = 0;
        // The first renewal is sent at 0.3 s and answered at 1.2 s; the next never answers.
        keep_renewing(&config, start, || {
            renewals += 1;
            let first = renewals == 1;
            async move {
                let sent = Instant::now();
                if !first {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(Duration::from_millis(900)).await;
                Ok(Some(sent))
            }
        })
        .await;
        // Counted from the answer, the term would have run until 2.7 s.
        let stopped = start.elapsed();
        assert!(
            stopped >= secs(1.8) && stopped < secs(2.3),
            "stopped after {stopped:?}, not 1.5 s after the renewal sent at 0.3 s"
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
