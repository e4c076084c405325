//! An AccessKey as observed -> what to do (pure): issue its pair once, keep the issued Secret
//! in step with keyward's copy, retire Secrets of earlier `secretName`s, report in status.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use crate::api::access_key::{AccessKey, AccessKeyStatus};
use crate::api::labels;
use crate::store::credential::{Credential, InvalidCredential};

use super::SecretWrite;

/// What the AccessKey reconciler read.
pub struct ObservedAccessKey<'a> {
    pub access_key: &'a AccessKey,
    /// keyward's copy of the pair, as read (the Secret, for a conditional delete), and parsed.
    pub credential: Option<(&'a Secret, Result<Credential, InvalidCredential>)>,
    /// The Secret `secretName` names, if it exists.
    pub issued: Option<&'a Secret>,
    /// keyward's pair Secrets of this AccessKey under other names.
    pub former: &'a [Secret],
}

#[derive(Debug)]
pub enum AccessKeyPlan {
    /// No pair yet: mint one and create keyward's copy (create-only: one pair per AccessKey).
    Issue,
    /// keyward's copy belongs to an earlier AccessKey of the same name (deleted while the
    /// operator was away): it acts for nobody now; delete it as read, then issue anew.
    Revoke(Secret),
    /// Delete a Secret of an earlier `secretName` as read: no copy outlives its use.
    Retire(Secret),
    Converge(AccessKeyConverge),
}

#[derive(Debug, Default)]
pub struct AccessKeyConverge {
    pub issued: Option<SecretWrite>,
    pub status: Option<AccessKeyStatus>,
}

pub fn plan(observed: &ObservedAccessKey, now: jiff::Timestamp) -> AccessKeyPlan {
    let access_key = observed.access_key;
    let credential = match &observed.credential {
        None => return AccessKeyPlan::Issue,
        Some((_, Err(invalid))) => {
            let refused = Outcome::Refused {
                reason: "CredentialInvalid",
                message: format!(
                    "CredentialInvalid: {invalid}; requests signed with this AccessKey are \
                     refused. An administrator can delete it in keyward's store namespace to \
                     have a new pair issued"
                ),
            };
            return converge(access_key, None, refused, now);
        }
        Some((secret, Ok(credential))) if !credential.belongs_to(access_key) => {
            return AccessKeyPlan::Revoke((*secret).clone());
        }
        Some((_, Ok(credential))) => credential,
    };
    if let Some(former) = observed.former.first() {
        return AccessKeyPlan::Retire(former.clone());
    }
    let secret_name = access_key.secret_name();
    let issued = match observed.issued {
        Some(existing) if !is_pair_of(existing, access_key) => {
            let message = format!(
                "SecretNameConflict: Secret {secret_name} already exists and was not written by \
                 keyward for this AccessKey; it is left untouched. Set spec.secretName to a \
                 name that is free"
            );
            let refused = Outcome::Refused {
                reason: "SecretNameConflict",
                message,
            };
            return converge(access_key, None, refused, now);
        }
        Some(existing) if credential.is_in(existing) => None,
        Some(existing) => {
            let mut desired = credential.issued_secret(&secret_name);
            desired.metadata.resource_version = existing.resource_version();
            Some(SecretWrite::Replace(desired))
        }
        None => Some(SecretWrite::Create(credential.issued_secret(&secret_name))),
    };
    let message = format!(
        "AccessKey {} is in Secret {secret_name}; requests signed with it act as {}",
        credential.access_key_id,
        credential.username()
    );
    let outcome = Outcome::Issued {
        access_key_id: credential.access_key_id.clone(),
        message,
    };
    converge(access_key, issued, outcome, now)
}

/// Whether `secret` is a pair keyward issued for this AccessKey (and so may be rewritten).
pub fn is_pair_of(secret: &Secret, access_key: &AccessKey) -> bool {
    secret.type_.as_deref() == Some(labels::ACCESS_KEY_PAIR_SECRET_TYPE)
        && secret.labels().get(labels::MANAGED_BY).map(String::as_str)
            == Some(labels::MANAGED_BY_VALUE)
        && secret.annotations().get(labels::ACCESS_KEY) == Some(&access_key.name_any())
}

/// The Ready condition's outcome: the pair issued (its AccessKeyId and what to say), or why
/// it cannot be used.
enum Outcome {
    Issued {
        access_key_id: String,
        message: String,
    },
    Refused {
        reason: &'static str,
        message: String,
    },
}

fn converge(
    access_key: &AccessKey,
    issued: Option<SecretWrite>,
    outcome: Outcome,
    now: jiff::Timestamp,
) -> AccessKeyPlan {
    let current = access_key.status.clone().unwrap_or_default();
    let generation = access_key.metadata.generation;
    let (status, reason, message, access_key_id) = match outcome {
        Outcome::Issued {
            access_key_id,
            message,
        } => ("True", "AccessKeyIssued", message, Some(access_key_id)),
        // The id stays reported while the pair cannot be used: users find it in their logs.
        Outcome::Refused { reason, message } => {
            ("False", reason, message, current.access_key_id.clone())
        }
    };
    let previous = current.conditions.iter().find(|c| c.type_ == "Ready");
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Time(now),
    };
    let condition = Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time,
    };
    let desired = AccessKeyStatus {
        access_key_id,
        secret_name: Some(access_key.secret_name()),
        conditions: vec![condition],
        observed_generation: generation,
    };
    AccessKeyPlan::Converge(AccessKeyConverge {
        status: (desired != current).then_some(desired),
        issued,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::access_key::AccessKeySpec;

    const NOW: &str = "2026-11-30T12:00:00Z";

    fn access_key(uid: &str) -> AccessKey {
        let mut access_key = AccessKey::new(
            "ci",
            AccessKeySpec {
                service_account_name: "deployer".into(),
                secret_name: None,
            },
        );
        access_key.metadata.namespace = Some("shop".into());
        access_key.metadata.uid = Some(uid.into());
        access_key.metadata.generation = Some(1);
        access_key
    }

    fn plan_for(
        access_key: &AccessKey,
        credential: Option<&Secret>,
        issued: Option<&Secret>,
        former: &[Secret],
    ) -> AccessKeyPlan {
        let observed = ObservedAccessKey {
            access_key,
            credential: credential.map(|s| (s, Credential::parse(s))),
            issued,
            former,
        };
        plan(&observed, NOW.parse().unwrap())
    }

    fn converged(plan: AccessKeyPlan) -> AccessKeyConverge {
        match plan {
            AccessKeyPlan::Converge(converge) => converge,
            other => panic!("expected Converge, got {other:?}"),
        }
    }

    fn with_version(mut secret: Secret, version: &str) -> Secret {
        secret.metadata.resource_version = Some(version.into());
        secret
    }

    #[test]
    fn a_new_access_key_is_issued_then_published_then_reported() {
        let access_key = access_key("u1");
        assert!(matches!(
            plan_for(&access_key, None, None, &[]),
            AccessKeyPlan::Issue
        ));
        let credential = Credential::issue(&access_key).unwrap();
        let stored = with_version(credential.to_secret("keyward"), "1");
        let converge = converged(plan_for(&access_key, Some(&stored), None, &[]));
        assert!(matches!(converge.issued, Some(SecretWrite::Create(_))));
        let status = converge.status.expect("a status");
        assert_eq!(status.access_key_id, Some(credential.access_key_id.clone()));
        assert_eq!(status.conditions[0].status, "True");
        assert_eq!(status.observed_generation, Some(1));
    }

    #[test]
    fn nothing_is_written_when_nothing_changed() {
        let mut access_key = access_key("u1");
        let credential = Credential::issue(&access_key).unwrap();
        let stored = with_version(credential.to_secret("keyward"), "1");
        let issued = with_version(credential.issued_secret("ci"), "2");
        let first = converged(plan_for(&access_key, Some(&stored), Some(&issued), &[]));
        assert!(first.issued.is_none());
        access_key.status = first.status;
        let again = converged(plan_for(&access_key, Some(&stored), Some(&issued), &[]));
        assert!(again.issued.is_none() && again.status.is_none());
    }

    #[test]
    fn an_edited_secret_is_replaced_as_read() {
        let access_key = access_key("u1");
        let credential = Credential::issue(&access_key).unwrap();
        let stored = with_version(credential.to_secret("keyward"), "1");
        let mut edited = with_version(credential.issued_secret("ci"), "7");
        edited.data.as_mut().unwrap().clear();
        let converge = converged(plan_for(&access_key, Some(&stored), Some(&edited), &[]));
        match converge.issued {
            Some(SecretWrite::Replace(secret)) => {
                assert_eq!(secret.resource_version().as_deref(), Some("7"));
                assert!(credential.is_in(&secret));
            }
            other => panic!("expected a replace, got {other:?}"),
        }
    }

    #[test]
    fn a_copy_issued_for_an_earlier_access_key_is_revoked_first() {
        let earlier = Credential::issue(&access_key("u0")).unwrap();
        let stored = with_version(earlier.to_secret("keyward"), "1");
        assert!(matches!(
            plan_for(&access_key("u1"), Some(&stored), None, &[]),
            AccessKeyPlan::Revoke(_)
        ));
    }

    #[test]
    fn a_former_secret_is_retired_and_a_foreign_one_never_written() {
        let access_key = access_key("u1");
        let credential = Credential::issue(&access_key).unwrap();
        let stored = with_version(credential.to_secret("keyward"), "1");
        let former = with_version(credential.issued_secret("old"), "3");
        assert!(matches!(
            plan_for(&access_key, Some(&stored), None, &[former]),
            AccessKeyPlan::Retire(_)
        ));
        let foreign = with_version(
            Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some("ci".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
            "4",
        );
        let converge = converged(plan_for(&access_key, Some(&stored), Some(&foreign), &[]));
        assert!(
            converge.issued.is_none(),
            "a foreign Secret is never written"
        );
        let ready = &converge.status.unwrap().conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "SecretNameConflict")
        );
    }
}
