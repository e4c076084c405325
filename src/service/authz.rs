//! Authorization is RBAC: each action is a SubjectAccessReview for the caller, verb = the
//! action's name in lower case, resource `keys.keyward.dev`, the Key's namespace and name.
//! Decisions are kept for a few seconds, so a hot key costs one review per caller, verb and key
//! per window, not one per call; a revoked RoleBinding takes effect within that window.

use std::collections::HashMap;
use std::sync::Mutex;
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

#[derive(Default)]
pub struct Authorizer {
    decisions: Mutex<HashMap<Question, (bool, Instant)>>,
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
        let now = Instant::now();
        if let Some((allowed, at)) = self.decisions().get(&question)
            && now.duration_since(*at) < DECISION_TTL
        {
            return Ok(*allowed);
        }
        let allowed = kube
            .review_access(user, groups, verb, namespace, name)
            .await?;
        let mut decisions = self.decisions();
        if decisions.len() >= MAX_DECISIONS {
            decisions.retain(|_, (_, at)| now.duration_since(*at) < DECISION_TTL);
            if decisions.len() >= MAX_DECISIONS {
                decisions.clear();
            }
        }
        decisions.insert(question, (allowed, now));
        Ok(allowed)
    }

    fn decisions(&self) -> std::sync::MutexGuard<'_, HashMap<Question, (bool, Instant)>> {
        self.decisions.lock().expect("authorization decisions")
    }
}
