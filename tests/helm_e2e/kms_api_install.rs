//! The chart's KMS API on the API server: the certificate the chart makes survives `helm
//! upgrade`; the release's ServiceAccount may review tokens and access and create Keys; any
//! ServiceAccount may read the published CA; and the operator, run as that ServiceAccount with
//! the Deployment's arguments and the Secret's files where the pod mounts them, answers over
//! TLS a client that trusts only the published CA and names the Service, deciding by a
//! TokenReview and a SubjectAccessReview.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::cluster::{
    Release, can, client_from, impersonating_kubeconfig, start_chart_operator_with,
};
use crate::common::kms::{create_service_account, grant, service_account_token};
use crate::common::operator::{OwnOperator, logged_field};
use crate::common::scratch::Scratch;
use crate::common::{TestEnv, eventually};

#[tokio::test]
async fn helm_kms_api_keeps_its_certificate_on_upgrade_and_the_chart_operator_serves_it() {
    let env = TestEnv::new("helm-kms-api").await;
    // The harness owns the CRDs on this shared cluster: the release leaves them alone.
    let values = json!({"crds": {"install": false}, "kmsApi": {"enabled": true}});
    let mut release = Release::install(&env.namespace, &values, false);
    let fullname = release.fullname();
    let ns = env.namespace.as_str();
    let installed = Installed::read(&env, &fullname).await;

    // An upgrade that changes something else keeps the certificate (Helm's lookup), so the
    // clients that trust the published CA keep trusting the API, and the pods do not restart
    // for it.
    let upgraded = release.upgrade(&json!({"crds": {"install": false},
                                            "kmsApi": {"enabled": true}, "logLevel": "debug"}));
    assert_eq!(upgraded["revision"], 2, "{upgraded:#}");
    let after = Installed::read(&env, &fullname).await;
    assert!(
        after.args.contains(&"--log-level=debug".to_string()),
        "the upgrade did not reach the Deployment: {:?}",
        after.args
    );
    assert!(
        after.tls == installed.tls,
        "helm upgrade replaced the KMS API's certificate"
    );
    assert_eq!(
        after.ca, installed.ca,
        "helm upgrade replaced the published CA"
    );
    assert_eq!(after.checksum, installed.checksum);

    // What the release's ServiceAccount may do for the API, and what any ServiceAccount may read.
    let scratch = Scratch::new(ns);
    let sa = format!("system:serviceaccount:{ns}:{fullname}");
    let kubeconfig = impersonating_kubeconfig(&sa, &scratch);
    assert_api_permissions(&client_from(&kubeconfig).await, ns).await;
    assert_ca_readable_by_any_service_account(&fullname, ns).await;

    // The operator as the chart's Deployment runs it, serving the API over TLS.
    let mounted = Scratch::new("kms-api-tls-mount");
    let mut operator = start_api_operator(&env, &release, &kubeconfig, &mounted, &installed).await;
    let port = eventually("the KMS API address in the operator's log", || async {
        logged_field(
            &operator.log(),
            "serving the KMS API (HTTPS)",
            "kms_api_addr",
        )
        .and_then(|addr| addr.rsplit(':').next())
        .map(str::to_string)
    })
    .await;
    assert!(operator.running(), "{}", operator.log());

    // A workload that may list keys, and one that may not, each with its own token.
    for account in ["reader", "nobody"] {
        create_service_account(&env, account).await;
    }
    grant(&env, "reader", &["listkeys"]).await;
    let client = ApiClient {
        host: format!("{fullname}-kms-api.{ns}.svc"),
        port,
        ca: installed.ca.clone(),
        scratch: Scratch::new("kms-api-client"),
    };
    let token = service_account_token(&env, "reader", "keyward").await;
    let (status, body) = client.list_keys_until_synced(&token).await;
    assert_eq!(status, 200, "ListKeys as reader: {body}");
    assert_eq!(body["TotalCount"], 0, "{body}");
    let token = service_account_token(&env, "nobody", "keyward").await;
    let (status, body) = client.list_keys_until_synced(&token).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (403, Some("Forbidden.NoPermission")),
        "ListKeys as nobody: {body}"
    );
    // The served certificate is not valid for another name.
    assert!(
        client.refused_as("kubernetes.default.svc", &token),
        "a client accepted the certificate for another name"
    );
    assert!(operator.running(), "{}", operator.log());
    drop(operator);

    // Uninstalling removes the certificate and the CA with the release.
    release.uninstall();
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), ns);
    assert!(
        secrets
            .get_opt(&format!("{fullname}-kms-api-tls"))
            .await
            .unwrap()
            .is_none()
    );
}

/// What the release installed for the API: the Secret's entries, the published CA, the
/// Deployment's arguments, volume and checksum annotation.
struct Installed {
    tls: BTreeMap<String, Vec<u8>>,
    ca: String,
    args: Vec<String>,
    checksum: Option<String>,
    mount_path: String,
}

impl Installed {
    async fn read(env: &TestEnv, fullname: &str) -> Installed {
        let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.namespace);
        let secret = secrets
            .get(&format!("{fullname}-kms-api-tls"))
            .await
            .unwrap();
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        let tls: BTreeMap<String, Vec<u8>> = secret
            .data
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        assert_eq!(
            tls.keys().collect::<Vec<_>>(),
            ["ca.crt", "tls.crt", "tls.key"]
        );
        let maps: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
        let ca = maps
            .get(&format!("{fullname}-kms-api-ca"))
            .await
            .unwrap()
            .data
            .unwrap()["ca.crt"]
            .clone();
        assert_eq!(ca.trim(), String::from_utf8_lossy(&tls["ca.crt"]).trim());
        let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.namespace);
        let template = deployments.get(fullname).await.unwrap().spec.template;
        let checksum = template
            .metadata
            .and_then(|m| m.annotations)
            .and_then(|a| a.get("keyward.dev/kms-api-tls-checksum").cloned());
        let container = &template.spec.unwrap().containers[0];
        let mount = &container.volume_mounts.as_ref().unwrap()[0];
        assert_eq!(mount.read_only, Some(true));
        Installed {
            tls,
            ca,
            args: container.args.clone().unwrap(),
            checksum,
            mount_path: mount.mount_path.clone(),
        }
    }
}

/// The ServiceAccount of a cluster-wide release with the API on: the reviews, and creating and
/// patching Keys and creating KeyVersions in any namespace; no more on Keys than that.
async fn assert_api_permissions(as_sa: &Client, ns: &str) {
    for resource in [
        "authentication.k8s.io/tokenreviews",
        "authorization.k8s.io/subjectaccessreviews",
    ] {
        assert!(
            can(as_sa, "create", resource, "", "").await,
            "the ServiceAccount may not create {resource}"
        );
    }
    for (verb, resource) in [
        ("create", "keyward.dev/keys"),
        ("patch", "keyward.dev/keys"),
        ("create", "keyward.dev/keyversions"),
    ] {
        for namespace in [ns, "default"] {
            assert!(
                can(as_sa, verb, resource, namespace, "").await,
                "the ServiceAccount may not {verb} {resource} in {namespace}"
            );
        }
    }
    for (verb, resource) in [
        ("update", "keyward.dev/keys"),
        ("delete", "keyward.dev/keys"),
        ("patch", "keyward.dev/keyversions"),
        ("delete", "keyward.dev/keyversions"),
        ("create", "keyward.dev/accesskeys"),
    ] {
        assert!(
            !can(as_sa, verb, resource, ns, "").await,
            "the ServiceAccount may {verb} {resource}"
        );
    }
}

/// Any workload's ServiceAccount may read the CA's ConfigMap, and neither another ConfigMap nor
/// the certificate's Secret in the release namespace.
async fn assert_ca_readable_by_any_service_account(fullname: &str, ns: &str) {
    let scratch = Scratch::new("kms-api-ca-reader");
    let kubeconfig =
        impersonating_kubeconfig("system:serviceaccount:default:some-workload", &scratch);
    let workload = client_from(&kubeconfig).await;
    let ca = format!("{fullname}-kms-api-ca");
    assert!(can(&workload, "get", "/configmaps", ns, &ca).await);
    assert!(!can(&workload, "get", "/configmaps", ns, "another").await);
    assert!(!can(&workload, "list", "/configmaps", ns, "").await);
    assert!(
        !can(
            &workload,
            "get",
            "/secrets",
            ns,
            &format!("{fullname}-kms-api-tls")
        )
        .await
    );
    let maps: Api<ConfigMap> = Api::namespaced(workload, ns);
    let read = maps.get(&ca).await.expect("a workload reads the CA");
    assert!(read.data.unwrap()["ca.crt"].contains("BEGIN CERTIFICATE"));
}

/// The operator with the Deployment's arguments, confined to the test's namespace, listening
/// on a free loopback port, and reading the Secret's files from `mounted` as the pod reads them
/// from its volume.
async fn start_api_operator(
    env: &TestEnv,
    release: &Release,
    kubeconfig: &Path,
    mounted: &Scratch,
    installed: &Installed,
) -> OwnOperator {
    for file in ["tls.crt", "tls.key"] {
        mounted.write(file, &installed.tls[file]);
    }
    let mount = format!("{}/", installed.mount_path);
    let local = format!("{}/", mounted.dir().display());
    start_chart_operator_with(env, release, kubeconfig, Some(&env.namespace), move |a| {
        if a.starts_with("--kms-api-addr=") {
            "--kms-api-addr=127.0.0.1:0".to_string()
        } else {
            a.replace(&mount, &local)
        }
    })
    .await
}

/// curl (OpenSSL) trusting only the published CA, calling the API by the Service's name,
/// resolved to the operator on loopback.
struct ApiClient {
    host: String,
    port: String,
    ca: String,
    scratch: Scratch,
}

impl ApiClient {
    /// curl's exit code, and the HTTP status and body it got; the token travels in a header
    /// file, never on a command line.
    fn call(&self, host: &str, token: &str) -> (i32, u16, String) {
        let ca = self.scratch.path("ca.crt");
        if !ca.exists() {
            self.scratch.write("ca.crt", self.ca.as_bytes());
        }
        let header = self.scratch.path("authorization");
        let _ = std::fs::remove_file(&header);
        self.scratch.write(
            "authorization",
            format!("Authorization: Bearer {token}\n").as_bytes(),
        );
        let url = format!("https://{host}:{}/?Action=ListKeys&Format=JSON", self.port);
        let out = Command::new("curl")
            .args([
                "--silent",
                "--show-error",
                "--noproxy",
                "*",
                "--max-time",
                "20",
            ])
            .arg("--cacert")
            .arg(&ca)
            .arg("--resolve")
            .arg(format!("{host}:{}:127.0.0.1", self.port))
            .arg("--header")
            .arg(format!("@{}", header.display()))
            .args(["--write-out", "\n%{http_code}"])
            .arg(&url)
            .output()
            .expect("run curl");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", "0"));
        (
            out.status.code().unwrap_or(-1),
            status.trim().parse().unwrap_or(0),
            body.to_string(),
        )
    }

    /// ListKeys as the token's ServiceAccount, once the replica's caches are filled (until
    /// then it answers 503, as documented); the status and the JSON body.
    async fn list_keys_until_synced(&self, token: &str) -> (u16, Value) {
        eventually("the KMS API answering with its caches filled", || async {
            let (exit, status, body) = self.call(&self.host, token);
            assert_eq!(exit, 0, "curl failed (TLS or connection): {body}");
            (status != 503).then(|| {
                let json = serde_json::from_str(&body)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
                (status, json)
            })
        })
        .await
    }

    /// Whether curl refuses the server's certificate when it expects `host`.
    fn refused_as(&self, host: &str, token: &str) -> bool {
        let (exit, status, _) = self.call(host, token);
        // 60: the peer certificate cannot be authenticated with the given CA and name.
        exit == 60 && status == 0
    }
}
