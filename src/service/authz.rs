//! Authorization is RBAC: each action is a SubjectAccessReview for the caller, verb = the
//! action's name in lower case, resource `keys.keyward.dev`, the Key's namespace and name.
//! Decisions are kept for a few seconds, so a hot key costs one review per caller, verb and key
//! per window, not one per call (concurrent calls on a cold question wait for one review); a
//! revoked RoleBinding takes effect within that window.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cluster::Kube;
use crate::error::Error;

/// How long a decision is reused.
pub const DECISION_TTL: Duration = Duration::from_secs(5);

/// Decisions kept at most; past it, expired ones are dropped, and if none has expired, all.
const MAX_DECISIONS: usize = 10_000;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Question {
    user: String,
    verb: String,
    namespace: String,
    name: Option<String>,
}

/// What is known of one question: the last answer, and a lock that lets one request ask while
/// the others wait for its answer, so a burst of calls on a cold key sends one review.
#[derive(Default)]
struct Known {
    decision: Option<(bool, Instant)>,
    asking: Arc<tokio::sync::Mutex<()>>,
}

impl Known {
    fn fresh(&self, now: Instant) -> Option<bool> {
        self.decision
            .filter(|(_, at)| now.duration_since(*at) < DECISION_TTL)
            .map(|(allowed, _)| allowed)
    }
}

#[derive(Default)]
pub struct Authorizer {
    known: Mutex<HashMap<Question, Known>>,
}

impl Authorizer {
    /// Whether `user` may `verb` the Key `name` (or Keys, without a name) in `namespace`.
    pub async fn allowed(
        &self,
        kube: &Kube,
        user: &str,
        groups: &[String],
        verb: &str,
        namespace: &str,
        name: Option<&str>,
    ) -> Result<bool, Error> {
        let question = Question {
            user: user.to_string(),
            verb: verb.to_string(),
            namespace: namespace.to_string(),
            name: name.map(str::to_string),
        };
        let asking = {
            let mut known = self.known();
            let entry = known.entry(question.clone()).or_default();
            if let Some(allowed) = entry.fresh(Instant::now()) {
                return Ok(allowed);
            }
            entry.asking.clone()
        };
        let _turn = asking.lock().await;
        // Whoever asked while this request waited has answered for it too.
        if let Some(allowed) = self
            .known()
            .get(&question)
            .and_then(|k| k.fresh(Instant::now()))
        {
            return Ok(allowed);
        }
        let allowed = kube
            .review_access(user, groups, verb, namespace, name)
            .await?;
        let now = Instant::now();
        let mut known = self.known();
        if known.len() >= MAX_DECISIONS {
            known.retain(|_, k| k.fresh(now).is_some());
            if known.len() >= MAX_DECISIONS {
                known.clear();
            }
        }
        known.entry(question).or_default().decision = Some((allowed, now));
        Ok(allowed)
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<Question, Known>> {
        self.known.lock().expect("authorization decisions")
    }
}
