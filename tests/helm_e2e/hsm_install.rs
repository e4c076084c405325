//! The chart's HSM values on the API server: an installed release upgraded to use a PKCS#11
//! module gets a Deployment the API server accepts (volume sources, modes, mounts naming their
//! volumes, the fsGroup), holding what the rendering tests expect, and loses it all again on
//! the way back. No pod runs: the test cluster has no node, and the PIN Secret and the token's
//! claim need not exist for the Deployment to be stored.

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::json;

use crate::cluster::Release;
use crate::common::TestEnv;

#[tokio::test]
async fn helm_upgrade_to_an_hsm_module_is_accepted_by_the_api_server_and_reverts_cleanly() {
    let env = TestEnv::new("helm-hsm").await;
    // The harness owns the CRDs on this shared cluster: the release leaves them alone.
    let plain = json!({"crds": {"install": false}});
    let mut release = Release::install(&env.namespace, &plain, false);
    let fullname = release.fullname();
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.namespace);

    let with_hsm = json!({"crds": {"install": false}, "replicas": 1, "hsm": {
        "module": "/usr/lib/softhsm/libsofthsm2.so",
        "tokenLabel": "keyward",
        "pinSecret": {"name": "keyward-hsm-pin"},
        "env": [{"name": "SOFTHSM2_CONF", "value": "/var/lib/softhsm/softhsm2.conf"}],
        "volumes": [{"name": "tokens",
                     "persistentVolumeClaim": {"claimName": "keyward-softhsm"}}],
        "volumeMounts": [{"name": "tokens", "mountPath": "/var/lib/softhsm"}],
    }});
    let upgraded = release.upgrade(&with_hsm);
    assert_eq!(upgraded["revision"], 2, "{upgraded:#}");
    let pod = deployments
        .get(&fullname)
        .await
        .unwrap()
        .spec
        .template
        .spec
        .unwrap();
    let container = &pod.containers[0];
    let args = container.args.clone().unwrap();
    let pkcs11: Vec<&String> = args.iter().filter(|a| a.contains("pkcs11")).collect();
    assert_eq!(
        pkcs11,
        [
            "--pkcs11-module=/usr/lib/softhsm/libsofthsm2.so",
            "--pkcs11-token-label=keyward",
            "--pkcs11-pin-file=/etc/keyward/pkcs11-pin/pin",
        ]
    );
    let volumes = pod.volumes.clone().unwrap();
    assert_eq!(volumes.len(), 2, "{volumes:?}");
    let pin = volumes[0]
        .secret
        .as_ref()
        .expect("the PIN volume is a Secret's");
    assert_eq!(volumes[0].name, "pkcs11-pin");
    assert_eq!(pin.secret_name.as_deref(), Some("keyward-hsm-pin"));
    assert_eq!(pin.default_mode, Some(0o400));
    let items = pin.items.clone().unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(
        (items[0].key.as_str(), items[0].path.as_str(), items[0].mode),
        ("pin", "pin", Some(0o400))
    );
    assert_eq!(
        volumes[1]
            .persistent_volume_claim
            .as_ref()
            .map(|c| c.claim_name.as_str()),
        Some("keyward-softhsm")
    );
    let mounts = container.volume_mounts.clone().unwrap();
    assert_eq!(
        mounts
            .iter()
            .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only))
            .collect::<Vec<_>>(),
        [
            ("pkcs11-pin", "/etc/keyward/pkcs11-pin", Some(true)),
            ("tokens", "/var/lib/softhsm", None),
        ]
    );
    let env_names: Vec<String> = container
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(env_names, ["POD_NAME", "POD_NAMESPACE", "SOFTHSM2_CONF"]);
    assert_eq!(pod.security_context.unwrap().fs_group, Some(65532));

    // Back to no module: no flag, volume or fsGroup is left behind.
    let reverted = release.upgrade(&plain);
    assert_eq!(reverted["revision"], 3, "{reverted:#}");
    let pod = deployments
        .get(&fullname)
        .await
        .unwrap()
        .spec
        .template
        .spec
        .unwrap();
    let container = &pod.containers[0];
    assert!(
        !container
            .args
            .as_ref()
            .unwrap()
            .iter()
            .any(|a| a.contains("pkcs11")),
        "{:?}",
        container.args
    );
    assert_eq!(pod.volumes, None);
    assert_eq!(container.volume_mounts, None);
    assert_eq!(pod.security_context.unwrap().fs_group, None);
    release.uninstall();
}
