//! Every Secret of the tenant's namespace deleted (`kubectl delete secrets --all`): the
//! consumer Secrets are rebuilt from the stores, which the tenant cannot reach, and no key
//! is lost, changed or reported missing, even for a moment.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, ResourceExt};

use crate::common::{TestEnv, data_digest, key_manifest};
use crate::{Held, ReadyHistory, consumer_with};

/// Keys of every kind of material, one publishing under a Secret name of its own, one
/// imported from a Secret of the namespace (deleted too): (Key, consumer Secret, spec).
const KEYS: [(&str, &str, &str); 6] = [
    ("aes", "aes", "{}"),
    ("sm4", "sm4", "{keySpec: Aliyun_SM4}"),
    ("rsa", "rsa", "{keySpec: RSA_2048}"),
    ("p256", "p256", "{keySpec: EC_P256, keyUsage: SIGN/VERIFY}"),
    (
        "sm2",
        "sm2-mounted",
        "{keySpec: EC_SM2, keyUsage: SIGN/VERIFY, secretName: sm2-mounted}",
    ),
    (
        "imported",
        "imported",
        "{origin: EXTERNAL, keySpec: Aliyun_SM4, keyMaterial: {secretRef: {name: import}}}",
    ),
];

/// The Secret the imported key's raw material is imported from.
const IMPORT_SECRET: &str = "import";

#[tokio::test]
async fn deleting_every_secret_in_the_tenant_namespace_loses_nothing() {
    let env = TestEnv::with_operator("every-secret-deleted").await;
    put_import_secret(&env).await;
    for (name, _, spec) in KEYS {
        env.apply_key(&key_manifest(name, spec)).await;
    }
    let mut before = BTreeMap::new();
    for (name, _, _) in KEYS {
        before.insert(name, Held::of(&env, name).await);
    }
    let stores_before = stores(&env).await;
    assert_eq!(stores_before.len(), KEYS.len());
    let history = ReadyHistory::watch(&env).await;

    // As `kubectl delete secrets --all` does: list, then delete each.
    let secrets = env.secrets().list(&ListParams::default()).await.unwrap();
    for secret in &secrets.items {
        let _ = env
            .secrets()
            .delete(&secret.name_any(), &DeleteParams::default())
            .await;
    }
    let deleted: Vec<String> = secrets.items.iter().map(|s| s.name_any()).collect();
    for (_, secret_name, _) in KEYS.iter().chain([&("", IMPORT_SECRET, "")]) {
        assert!(
            deleted.iter().any(|d| d == secret_name),
            "{secret_name} not deleted"
        );
    }

    // Each consumer Secret is rebuilt, as its event says, with the same bytes.
    for (name, secret_name, _) in KEYS {
        let note = env.wait_event(name, "SecretRestored").await;
        assert!(
            note.starts_with(&format!("Secret {secret_name} was deleted; rebuilt it")),
            "{note}"
        );
        consumer_with(&env, secret_name, &before[name].consumer).await;
        assert_eq!(Held::of(&env, name).await, before[name], "{name} changed");
    }
    assert_eq!(
        stores(&env).await,
        stores_before,
        "the stores were written: none had anything to change"
    );
    let history = history.states();
    assert_eq!(history.len(), KEYS.len(), "the watch saw every Key");
    for (name, states) in history {
        assert_eq!(
            states,
            [("True".to_string(), "KeyReady".to_string())],
            "Key {name} left Ready"
        );
    }
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.namespace);
    let events = events.list(&ListParams::default()).await.unwrap().items;
    let missing: Vec<_> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("MaterialStoreMissing"))
        .map(|e| e.note.clone())
        .collect();
    assert!(
        missing.is_empty(),
        "a store was reported missing: {missing:?}"
    );
}

/// Each store of the store namespace: its resourceVersion and a digest of its data, by name.
async fn stores(env: &TestEnv) -> BTreeMap<String, (Option<String>, String)> {
    let lp = ListParams::default().labels("app.kubernetes.io/managed-by=keyward");
    let stores = env.stores().list(&lp).await.unwrap().items;
    stores
        .iter()
        .map(|s| (s.name_any(), (s.resource_version(), data_digest(s))))
        .collect()
}

/// The imported key's material, 16 random bytes as `keyMaterial`.
async fn put_import_secret(env: &TestEnv) {
    let mut material = vec![0; 16];
    getrandom::fill(&mut material).expect("OS RNG");
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(IMPORT_SECRET.into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "keyMaterial".into(),
            ByteString(material),
        )])),
        ..Secret::default()
    };
    env.secrets()
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the import Secret");
}
