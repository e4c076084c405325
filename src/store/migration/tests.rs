use std::collections::BTreeMap;

use k8s_openapi::ByteString;

use super::*;

const STORE_NS: &str = "keyward";

fn former(key_id: &str, entries: &[(&str, &[u8])]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some("payments.keyward-material".into()),
            namespace: Some("team-a".into()),
            resource_version: Some("41".into()),
            uid: Some("uid-1".into()),
            labels: Some(BTreeMap::from([
                (labels::MANAGED_BY.into(), labels::MANAGED_BY_VALUE.into()),
                (labels::ROLE.into(), labels::ROLE_MATERIAL.into()),
            ])),
            annotations: Some(BTreeMap::from([
                (labels::KEY.into(), "payments".into()),
                (labels::KEY_ID.into(), key_id.into()),
            ])),
            ..ObjectMeta::default()
        },
        type_: Some(labels::MATERIAL_SECRET_TYPE.into()),
        data: Some(
            entries
                .iter()
                .map(|(name, bytes)| (name.to_string(), ByteString(bytes.to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

fn copy_of(original: &Secret) -> Secret {
    let to = destination(original, STORE_NS).unwrap();
    match plan_move(original, to, None) {
        MoveStep::Copy(copy) => *copy,
        other => panic!("expected a copy, got {other:?}"),
    }
}

#[test]
fn a_former_store_is_copied_whole_under_its_namespace_and_name() {
    let original = former("key-1", &[("key.json", b"{}"), ("v1.key", b"0123")]);
    assert!(is_former_store(&original));
    let copy = copy_of(&original);
    assert_eq!(copy.metadata.namespace.as_deref(), Some(STORE_NS));
    assert_eq!(
        copy.metadata.name.as_deref(),
        Some("team-a.payments.keyward-store")
    );
    assert_eq!(copy.data, original.data);
    assert_eq!(copy.type_, original.type_);
    assert_eq!(
        copy.annotations()
            .get(labels::KEY_NAMESPACE)
            .map(String::as_str),
        Some("team-a")
    );
    assert_eq!(
        copy.labels().get(labels::KEY_NAMESPACE).map(String::as_str),
        Some("team-a")
    );
    // Created, never replaced: no version to be conditional on, no identity of the original.
    assert!(copy.metadata.resource_version.is_none() && copy.metadata.uid.is_none());
    assert!(!is_former_store(&copy));
}

#[test]
fn the_original_is_deleted_only_once_the_copy_holds_all_of_it() {
    let original = former("key-1", &[("key.json", b"{}"), ("v1.key", b"0123")]);
    let to = destination(&original, STORE_NS).unwrap();
    let copy = copy_of(&original);
    assert_eq!(
        plan_move(&original, to, Some(&copy)),
        MoveStep::DeleteOriginal
    );

    let mut short = copy.clone();
    short.data.as_mut().unwrap().remove("v1.key");
    assert!(matches!(
        plan_move(&original, to, Some(&short)),
        MoveStep::Conflict(_)
    ));

    let mut changed = copy.clone();
    changed
        .data
        .as_mut()
        .unwrap()
        .insert("v1.key".into(), ByteString(b"other".to_vec()));
    assert!(matches!(
        plan_move(&original, to, Some(&changed)),
        MoveStep::Conflict(_)
    ));
}

#[test]
fn another_key_under_the_copys_name_is_a_conflict_that_names_no_material() {
    let original = former("key-1", &[("key.json", b"{}"), ("v1.key", b"secret-bytes")]);
    let to = destination(&original, STORE_NS).unwrap();
    let other = copy_of(&former("key-2", &[("key.json", b"{}")]));
    let MoveStep::Conflict(message) = plan_move(&original, to, Some(&other)) else {
        panic!("expected a conflict");
    };
    assert!(message.contains("another key"), "{message}");
    assert!(!message.contains("secret-bytes") && !message.contains("v1.key"));
}
