//! Authorization is RBAC: each action is a SubjectAccessReview for the caller, verb = the
//! action's name in lower case, resource `keys.keyward.dev`, the Key's namespace and name.
//! Decisions are kept for a few seconds, so a hot key costs one review per caller, verb and key
//! per window, not one per call (concurrent calls on a cold question wait for one review); a
//! revoked RoleBinding takes effect within that window.

use super::recent::{Recent, TTL};
use crate::cluster::Kube;
use crate::error::Error;

/// How long a decision is reused.
pub const DECISION_TTL: std::time::Duration = TTL;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Question {
    user: String,
    verb: String,
    namespace: String,
    name: Option<String>,
}

#[derive(Default)]
pub struct Authorizer {
    decisions: Recent<Question, bool>,
}

impl Authorizer {
    pub fn counts(&self) -> super::recent::Counts {
        self.decisions.counts()
    }

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
        self.decisions
            .answer(question, || {
                kube.review_access(user, groups, verb, namespace, name)
            })
            .await
    }
}
