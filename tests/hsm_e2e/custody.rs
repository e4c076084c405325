//! Where an HSM key's material is, and is not: in the token, as sensitive, never extractable
//! objects; never in a Secret. Key specs the module cannot hold are refused with nothing
//! minted, including the seed's SM4 default in mainland-China regions.

use std::collections::BTreeSet;

use keyward::hsm::VersionObjects;

use super::{
    assert_published_public_keys_are_the_tokens, assert_token_holds_exactly_the_recorded_versions,
    hex, hsm_env, record,
};
use crate::common::{entry_names, key_manifest};

const SUPPORTED: [(&str, &str); 5] = [
    ("aes", "{protectionLevel: HSM}"),
    (
        "rsa-sign",
        "{protectionLevel: HSM, keySpec: RSA_2048, keyUsage: SIGN/VERIFY}",
    ),
    (
        "rsa-enc",
        "{protectionLevel: HSM, keySpec: RSA_2048, keyUsage: ENCRYPT/DECRYPT}",
    ),
    (
        "p256",
        "{protectionLevel: HSM, keySpec: EC_P256, keyUsage: SIGN/VERIFY}",
    ),
    (
        "p256k",
        "{protectionLevel: HSM, keySpec: EC_P256K, keyUsage: SIGN/VERIFY}",
    ),
];

#[tokio::test]
async fn every_supported_spec_is_generated_in_the_token_and_no_secret_holds_its_material() {
    let (mut env, hsm) = hsm_env("hsm-custody").await;
    env.start_operator(&[]);
    for (name, spec) in SUPPORTED {
        env.apply_key(&key_manifest(name, spec)).await;
    }
    for (name, _) in SUPPORTED {
        let key = env.wait_ready(name).await;
        let metadata = key.status.unwrap().key_metadata.unwrap();
        assert_eq!(metadata.protection_level.as_str(), "HSM", "{name}");

        let store = env.store(name).await.unwrap();
        let record = record(&env, name).await;
        assert_eq!(record.key_id, metadata.key_id, "{name}");
        assert_eq!(record.versions.len(), 1, "{name}");
        let version = &record.versions[0].key_version_id;
        let asymmetric = !record.key_spec.is_symmetric();

        // The token: the version's objects, kept in it.
        assert_token_holds_exactly_the_recorded_versions(&hsm, &record);
        if !asymmetric {
            // The module refuses the value itself (pkcs11-tool reads no private keys at all:
            // for those the Access flags checked above are the evidence).
            let id = hex(&VersionObjects::new(&record.key_id, version).id());
            let (read, text) =
                hsm.pkcs11_tool(&["--read-object", "--type", "secrkey", "--id", &id]);
            assert!(
                !read,
                "{name}: pkcs11-tool read the secret key of {version}: {text}"
            );
            assert!(text.contains("CKR_ATTRIBUTE_SENSITIVE"), "{name}: {text}");
        }

        // The Secrets: the store holds the record and (asymmetric) the public key; the
        // consumer the ids and (asymmetric) the public key. Nothing else.
        let mut store_entries = BTreeSet::from(["key.json".to_string()]);
        let mut consumer_entries = BTreeSet::from(["keyId".to_string(), "keyVersionId".into()]);
        if asymmetric {
            store_entries.insert(format!("{version}.public.pem"));
            consumer_entries.insert(format!("{version}.public.pem"));
            consumer_entries.insert("public.pem".into());
            assert_published_public_keys_are_the_tokens(&hsm, &record, &store);
        }
        let store_names: BTreeSet<String> = entry_names(&store).into_iter().collect();
        assert_eq!(store_names, store_entries, "{name}: store entries");
        let consumer = env.secret(name).await.unwrap();
        let consumer_names: BTreeSet<String> = entry_names(&consumer).into_iter().collect();
        assert_eq!(consumer_names, consumer_entries, "{name}: consumer entries");
    }
    // No Secret keyward manages, anywhere this test has, holds a private or secret key.
    for secret in env.managed_secrets().await {
        for name in entry_names(&secret) {
            assert!(
                name == "key.json"
                    || name == "keyId"
                    || name == "keyVersionId"
                    || name.ends_with("public.pem"),
                "Secret {:?} holds entry {name}",
                secret.metadata.name
            );
        }
    }
}

#[tokio::test]
async fn specs_the_module_cannot_hold_are_refused_naming_spec_and_module_with_nothing_minted() {
    let (mut env, hsm) = hsm_env("hsm-refused").await;
    // The seed: HSM keys in mainland China default to Aliyun_SM4, which SoftHSM2 lacks.
    env.start_operator(&["--region", "cn-hangzhou"]);
    let refused = [
        (
            "sm2",
            "{protectionLevel: HSM, keySpec: EC_SM2, keyUsage: SIGN/VERIFY}",
            "spec.keySpec EC_SM2 cannot",
        ),
        (
            "sm4",
            "{protectionLevel: HSM, keySpec: Aliyun_SM4}",
            "spec.keySpec Aliyun_SM4 cannot",
        ),
        (
            "default",
            "{protectionLevel: HSM}",
            "spec.keySpec defaults to Aliyun_SM4 for HSM keys in region cn-hangzhou",
        ),
    ];
    for (name, spec, _) in refused {
        env.apply_key(&key_manifest(name, spec)).await;
    }
    // Naming a spec the module holds is the way out.
    env.apply_key(&key_manifest(
        "aes",
        "{protectionLevel: HSM, keySpec: Aliyun_AES_256}",
    ))
    .await;
    env.wait_ready("aes").await;
    for (name, _, says) in refused {
        let key = env.wait_reason(name, "UnsupportedProtectionLevel").await;
        let message = crate::common::ready_message(&key);
        assert!(
            message.starts_with("Unsupported.ProtectionLevel: "),
            "{message}"
        );
        assert!(message.contains(says), "{name}: {message}");
        assert!(
            message.contains("PKCS#11 module /usr/lib/softhsm/libsofthsm2.so"),
            "{name}: {message}"
        );
        let event = env.wait_event(name, "UnsupportedProtectionLevel").await;
        assert!(event.contains(says), "{name}: {event}");
        assert!(
            env.store(name).await.is_none(),
            "{name}: a store was written"
        );
        assert!(
            env.secret(name).await.is_none(),
            "{name}: a consumer was written"
        );
    }
    // Only the AES key's one object is on the token.
    let objects = hsm.objects();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(objects[0].class, "Secret Key");
}
