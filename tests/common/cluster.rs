//! The test cluster itself: where its kubeconfig is (and a copy acting as another user), a
//! client for it, and the CRDs every test needs installed (and a change of one, as an upgrade
//! would make).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition,
};
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};

use super::CONVERGE;
use super::scratch::Scratch;

pub fn kubeconfig_path() -> PathBuf {
    match std::env::var_os("KEYWARD_TEST_KUBECONFIG") {
        Some(path) => PathBuf::from(path),
        None => panic!(
            "KEYWARD_TEST_KUBECONFIG is not set: run the suite with hack/test.sh, which starts a \
             local control plane, or point it at a disposable cluster's kubeconfig"
        ),
    }
}

/// A copy of the test kubeconfig whose user impersonates `user` (the admin may), in `scratch`:
/// not in the harness's log directory, which is printed when a test fails (a kubeconfig holds
/// a token).
pub fn impersonating_kubeconfig(user: &str, scratch: &Scratch) -> PathBuf {
    let text = std::fs::read_to_string(kubeconfig_path()).unwrap();
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    for entry in config["users"].as_sequence_mut().unwrap() {
        entry["user"]
            .as_mapping_mut()
            .unwrap()
            .insert("as".into(), user.into());
    }
    scratch.write(
        "kubeconfig-impersonating",
        serde_yaml::to_string(&config).unwrap().as_bytes(),
    )
}

pub async fn client() -> Client {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path).expect("readable kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("usable kubeconfig");
    Client::try_from(config).expect("client")
}

/// The annotation of a served CRD with the digest of the one [`install_crds`] installed.
const DIGEST: &str = "keyward.dev/test-crd-digest";

/// Installs (or updates) the CRDs and waits until they are served. Create/replace rather than
/// server-side apply: the 1.20 test server silently drops the CEL rules on create, but its
/// server-side apply rejects them. A digest annotation tells whether the served CRD is already
/// this one (the server's defaults make a field comparison useless), and a replace keeps the
/// annotations others put there (Helm's resource policy among them).
pub async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in keyward::api::crds() {
        let name = crd.name_any();
        let digest = {
            use sha2::{Digest, Sha256};
            let bytes = Sha256::digest(keyward::api::crd_yaml(&crd).as_bytes());
            bytes[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let deadline = Instant::now() + CONVERGE;
        loop {
            let mut desired = crd.clone();
            let result = match crds.get_opt(&name).await.expect("get CRD") {
                Some(current) if current.annotations().get(DIGEST) == Some(&digest) => Ok(current),
                Some(current) => {
                    let mut annotations = current.annotations().clone();
                    annotations.insert(DIGEST.into(), digest.clone());
                    desired.metadata.annotations = Some(annotations);
                    desired.metadata.labels = Some(current.labels().clone());
                    desired.metadata.resource_version = current.resource_version();
                    crds.replace(&name, &PostParams::default(), &desired).await
                }
                None => {
                    desired
                        .annotations_mut()
                        .insert(DIGEST.into(), digest.clone());
                    crds.create(&PostParams::default(), &desired).await
                }
            };
            match result {
                Ok(current) if is_established(&current) => break,
                // Another test is installing it concurrently, or it is not served yet.
                Ok(_) | Err(kube::Error::Api(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(_) => panic!("CRD {name} was not established"),
                Err(e) => panic!("installing CRD {name}: {e}"),
            }
        }
    }
}

/// Changes the spec of the served CRD `name` (one more printer column), as an upgrade of the
/// CRD would: the API server builds that resource's storage anew, which ends every watch of it
/// and starts its watch cache afresh, so that no watch of it can resume from a
/// resourceVersion from before (410 Gone). No other resource's watches notice. It also drops
/// the digest annotation, so that the next [`install_crds`] (every test's first step) puts the
/// CRD back as it was.
pub async fn change_crd(client: &Client, name: &str) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut crd = crds.get(name).await.expect("get CRD");
    crd.annotations_mut().remove(DIGEST);
    for version in &mut crd.spec.versions {
        let columns = version
            .additional_printer_columns
            .get_or_insert_with(Vec::new);
        columns.push(CustomResourceColumnDefinition {
            name: "Changed".into(),
            type_: "string".into(),
            json_path: ".metadata.name".into(),
            ..CustomResourceColumnDefinition::default()
        });
    }
    crds.replace(name, &PostParams::default(), &crd)
        .await
        .unwrap_or_else(|e| panic!("changing CRD {name}: {e}"));
}

fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Established" && c.status == "True")
}
