//! The chart's KMS API (`kmsApi`), rendered: nothing of it while it is off; with it on, the
//! flags, the certificate's read-only volume, the Service, the RBAC it adds and the
//! NetworkPolicy's port; and the certificate the chart makes itself, read with OpenSSL.

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::chart::{
    Rendered, args, assert_binding, container, find, kinds, lint_problems, names, operator_rules,
    render,
};
use crate::common::openssl::openssl_fails;
use crate::common::openssl::{openssl_ok, openssl_text};
use crate::common::scratch::Scratch;

/// The rules the KMS API adds where the operator's Key rules are: CreateKey and
/// CreateKeyVersion (the other key-management actions patch a Key, which is granted already).
pub fn api_key_rules() -> Value {
    json!([{"apiGroups": ["keyward.dev"], "resources": ["keys", "keyversions"],
            "verbs": ["create"]}])
}

/// The operator's rules with the KMS API on.
pub fn operator_rules_with_api() -> Value {
    let mut rules = operator_rules();
    rules
        .as_array_mut()
        .unwrap()
        .extend(api_key_rules().as_array().unwrap().iter().cloned());
    rules
}

pub fn review_rules() -> Value {
    json!([
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"],
         "verbs": ["create"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"],
         "verbs": ["create"]},
    ])
}

/// The DNS names a client in the cluster may use for the Service `svc` in `ns`.
pub fn service_names(svc: &str, ns: &str) -> [String; 4] {
    [
        svc.to_string(),
        format!("{svc}.{ns}"),
        format!("{svc}.{ns}.svc"),
        format!("{svc}.{ns}.svc.cluster.local"),
    ]
}

fn decoded(secret: &Value, entry: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(secret["data"][entry].as_str().unwrap())
        .unwrap_or_else(|e| panic!("Secret entry {entry} is not base64: {e}"))
}

#[test]
fn kms_api_off_by_default_renders_none_of_it() {
    let (objects, notes) = render(json!({}), "keyward-system").unwrap();
    for name in names(&objects) {
        assert!(!name.contains("kms-api"), "{name} rendered with kmsApi off");
    }
    assert!(!kinds(&objects).contains(&"ConfigMap".to_string()));
    assert!(!kinds(&objects).contains(&"Secret".to_string()));
    let deployment = find(&objects, "Deployment", "kw-keyward");
    assert!(
        !args(deployment).iter().any(|a| a.starts_with("--kms-api")),
        "{:?}",
        args(deployment)
    );
    let pod = &deployment["spec"]["template"]["spec"];
    assert!(pod.get("volumes").is_none(), "{pod:#}");
    assert!(container(deployment).get("volumeMounts").is_none());
    assert!(deployment["spec"]["template"]["metadata"]["annotations"].is_null());
    let operator = find(&objects, "ClusterRole", "keyward-system-kw-keyward");
    assert_eq!(operator["rules"], operator_rules());
    let policy = find(&objects, "NetworkPolicy", "kw-keyward");
    assert_eq!(policy["spec"]["ingress"].as_array().unwrap().len(), 1);
    assert!(!notes.contains("KMS API"), "{notes}");

    // kmsApiFrom alone opens nothing while the API is off.
    let values = json!({"networkPolicy": {"kmsApiFrom": [{"podSelector": {}}]}});
    let (objects, _) = render(values, "keyward-system").unwrap();
    let policy = find(&objects, "NetworkPolicy", "kw-keyward");
    assert_eq!(policy["spec"]["ingress"].as_array().unwrap().len(), 1);
}

#[test]
fn kms_api_with_a_named_secret_serves_it_behind_its_own_service_with_the_reviews_granted() {
    let values = json!({"kmsApi": {"enabled": true, "tls": {"secretName": "kms-api-cert"}}});
    assert_eq!(lint_problems(Some(values.clone())), Vec::<String>::new());
    let (objects, notes) = render(values, "keyward-system").unwrap();
    // The Secret is the user's (cert-manager's): the chart makes none, and no CA ConfigMap.
    for kind in ["Secret", "ConfigMap"] {
        assert!(!kinds(&objects).contains(&kind.to_string()), "{kind}");
    }

    let deployment = find(&objects, "Deployment", "kw-keyward");
    let args = args(deployment);
    for flag in [
        "--kms-api-addr=0.0.0.0:8443",
        "--kms-api-tls-cert=/etc/keyward/kms-api-tls/tls.crt",
        "--kms-api-tls-key=/etc/keyward/kms-api-tls/tls.key",
        "--kms-api-nonce-capacity=100000",
    ] {
        assert_eq!(
            args.iter().filter(|a| *a == flag).count(),
            1,
            "{flag}: {args:?}"
        );
    }
    assert!(!args.contains(&"--kms-api-insecure-http".to_string()));
    assert_tls_volume(deployment, "kms-api-cert");
    // The certificate is cert-manager's to renew: no checksum of it on the pods.
    assert!(deployment["spec"]["template"]["metadata"]["annotations"].is_null());

    // A Service of its own, apart from the metrics Service, selecting the operator pods.
    let service = find(&objects, "Service", "kw-keyward-kms-api");
    assert_eq!(service["spec"]["type"], "ClusterIP");
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "https", "port": 443, "targetPort": "kms-api", "protocol": "TCP"}])
    );
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let metrics = find(&objects, "Service", "kw-keyward-metrics");
    assert_eq!(metrics["spec"]["ports"].as_array().unwrap().len(), 1);

    // RBAC: the reviews cluster-wide, Key and KeyVersion creation with the operator's rules.
    assert_review_rbac(
        &objects,
        "keyward-system-kw-keyward-kms-api",
        "keyward-system",
    );
    let operator = find(&objects, "ClusterRole", "keyward-system-kw-keyward");
    assert_eq!(operator["rules"], operator_rules_with_api());

    // The NetworkPolicy admits the API's port from anywhere in the cluster, and metrics as
    // before.
    let policy = find(&objects, "NetworkPolicy", "kw-keyward");
    assert_eq!(
        policy["spec"]["ingress"],
        json!([
            {"from": [{"namespaceSelector":
                       {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
             "ports": [{"port": "http", "protocol": "TCP"}]},
            {"from": [{"namespaceSelector": {}}],
             "ports": [{"port": "kms-api", "protocol": "TCP"}]},
        ])
    );
    assert!(
        notes.contains("https://kw-keyward-kms-api.keyward-system.svc\n"),
        "{notes}"
    );
    assert!(notes.contains("Secret kms-api-cert"), "{notes}");
    assert!(!notes.contains("WARNING"), "{notes}");
}

/// The Secret `secret` is mounted read-only where the flags point, its tls.crt and tls.key only,
/// and the container names the API's port.
fn assert_tls_volume(deployment: &Value, secret: &str) {
    let c = container(deployment);
    assert_eq!(
        c["volumeMounts"],
        json!([{"name": "kms-api-tls", "mountPath": "/etc/keyward/kms-api-tls",
                "readOnly": true}])
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "kms-api-tls", "secret": {"secretName": secret, "items": [
            {"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}]}}])
    );
    assert_eq!(
        c["ports"],
        json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"},
               {"name": "kms-api", "containerPort": 8443, "protocol": "TCP"}])
    );
}

/// The ClusterRole `name` grants exactly the TokenReviews and SubjectAccessReviews, bound to
/// the release's ServiceAccount.
fn assert_review_rbac(objects: &[Rendered], name: &str, namespace: &str) {
    assert_eq!(find(objects, "ClusterRole", name)["rules"], review_rules());
    assert_binding(
        find(objects, "ClusterRoleBinding", name),
        "ClusterRole",
        name,
        "kw-keyward",
        namespace,
    );
}

#[test]
fn kms_api_in_namespaced_mode_creates_keys_in_the_watched_namespace_and_reviews_cluster_wide() {
    let mut values = crate::chart::namespaced_values();
    values["kmsApi"] = json!({"enabled": true, "tls": {"secretName": "kms-api-cert"}});
    values["networkPolicy"]["kmsApiFrom"] =
        json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "team-a"}}}]);
    assert_eq!(lint_problems(Some(values.clone())), Vec::<String>::new());
    let (objects, _) = render(values, "keyward-system").unwrap();
    let role = find(&objects, "Role", "kw-keyward");
    assert_eq!(role["metadata"]["namespace"], "team-a");
    assert_eq!(role["rules"], operator_rules_with_api());
    // The reviews are cluster-scoped: the one ClusterRole of a namespaced release with an
    // accountId.
    assert_review_rbac(
        &objects,
        "keyward-system-kw-keyward-kms-api",
        "keyward-system",
    );
    assert_eq!(
        kinds(&objects)
            .iter()
            .filter(|k| k.starts_with("Cluster"))
            .count(),
        2
    );
    // kmsApiFrom restricts who reaches the API.
    let policy = find(&objects, "NetworkPolicy", "kw-keyward");
    assert_eq!(
        policy["spec"]["ingress"][1],
        json!({"from": [{"namespaceSelector":
                         {"matchLabels": {"kubernetes.io/metadata.name": "team-a"}}}],
               "ports": [{"port": "kms-api", "protocol": "TCP"}]})
    );

    // No peers: no ingress to the API (and none at all without metrics peers either).
    let values = json!({"kmsApi": {"enabled": true},
                        "networkPolicy": {"kmsApiFrom": [], "metricsFrom": []}});
    let (objects, _) = render(values, "keyward-system").unwrap();
    let policy = find(&objects, "NetworkPolicy", "kw-keyward");
    assert_eq!(policy["spec"]["ingress"], json!([]));
}

#[test]
fn kms_api_over_plain_http_is_for_development_and_says_so() {
    let values = json!({"kmsApi": {"enabled": true, "insecureHttp": true, "port": 9443,
                                   "service": {"port": 80}, "nonceCapacity": 2500000}});
    let (objects, notes) = render(values, "keyward-system").unwrap();
    let deployment = find(&objects, "Deployment", "kw-keyward");
    let args = args(deployment);
    assert!(args.contains(&"--kms-api-addr=0.0.0.0:9443".to_string()));
    // A large capacity is rendered as the integer it is, not in exponent form.
    assert!(
        args.contains(&"--kms-api-nonce-capacity=2500000".to_string()),
        "{args:?}"
    );
    assert!(args.contains(&"--kms-api-insecure-http".to_string()));
    assert!(
        !args.iter().any(|a| a.starts_with("--kms-api-tls")),
        "{args:?}"
    );
    assert!(
        deployment["spec"]["template"]["spec"]
            .get("volumes")
            .is_none()
    );
    for kind in ["Secret", "ConfigMap"] {
        assert!(!kinds(&objects).contains(&kind.to_string()), "{kind}");
    }
    let service = find(&objects, "Service", "kw-keyward-kms-api");
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "http", "port": 80, "targetPort": "kms-api", "protocol": "TCP"}])
    );
    assert!(
        notes.contains("WARNING: kmsApi.insecureHttp is true"),
        "{notes}"
    );

    // The schema refuses what the operator would refuse, or what would collide.
    for (values, complaint) in [
        (
            json!({"kmsApi": {"enabled": true, "insecureHttp": true,
                              "tls": {"secretName": "kms-api-cert"}}}),
            "/kmsApi/tls/secretName",
        ),
        (json!({"kmsApi": {"port": 8080}}), "/kmsApi/port"),
        (json!({"kmsApi": {"port": 0}}), "/kmsApi/port"),
        (json!({"kmsApi": {"port": 65536}}), "/kmsApi/port"),
        (
            json!({"kmsApi": {"service": {"port": "https"}}}),
            "/kmsApi/service/port",
        ),
        (
            json!({"kmsApi": {"tls": {"secretName": "Not_A_Name"}}}),
            "/kmsApi/tls/secretName",
        ),
        (
            json!({"kmsApi": {"tls": {"validityDays": 0}}}),
            "/kmsApi/tls/validityDays",
        ),
        (
            json!({"kmsApi": {"nonceCapacity": 0}}),
            "/kmsApi/nonceCapacity",
        ),
        (json!({"kmsApi": {"enabeld": true}}), "enabeld"),
        (
            json!({"networkPolicy": {"kmsApiFrom": [{}]}}),
            "/networkPolicy/kmsApiFrom/0",
        ),
    ] {
        match render(values.clone(), "keyward") {
            Ok(_) => panic!("values {values} were accepted"),
            Err(e) => assert!(
                e.contains(complaint),
                "values {values}: expected a complaint about {complaint}, got:\n{e}"
            ),
        }
    }
}

#[test]
fn the_generated_certificate_names_the_service_and_its_ca_is_published_for_clients() {
    let values = json!({"kmsApi": {"enabled": true}});
    assert_eq!(lint_problems(Some(values.clone())), Vec::<String>::new());
    let (objects, notes) = render(values, "keyward-system").unwrap();
    let secret = find(&objects, "Secret", "kw-keyward-kms-api-tls");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let deployment = find(&objects, "Deployment", "kw-keyward");
    assert_tls_volume(deployment, "kw-keyward-kms-api-tls");

    // The CA clients are told to trust is the one that signed the served certificate.
    let ca_map = find(&objects, "ConfigMap", "kw-keyward-kms-api-ca");
    let published = ca_map["data"]["ca.crt"].as_str().unwrap();
    assert_eq!(
        published.trim(),
        String::from_utf8(decoded(secret, "ca.crt")).unwrap().trim()
    );
    let scratch = Scratch::new("chart-kms-api-tls");
    scratch.write("ca.crt", published.as_bytes());
    scratch.write("tls.crt", &decoded(secret, "tls.crt"));
    scratch.write("tls.key", &decoded(secret, "tls.key"));
    let verified = openssl_text(
        &scratch,
        "verify the served certificate against the published CA",
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "-purpose",
            "sslserver",
            "tls.crt",
        ],
    );
    assert_eq!(verified.trim(), "tls.crt: OK");
    let svc = "kw-keyward-kms-api";
    for name in service_names(svc, "keyward-system") {
        openssl_ok(
            &scratch,
            &format!("verify the certificate for {name}"),
            &[
                "verify",
                "-CAfile",
                "ca.crt",
                "-verify_hostname",
                &name,
                "tls.crt",
            ],
        );
    }
    openssl_fails(
        &scratch,
        "verify the certificate for the metrics Service",
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "-verify_hostname",
            "kw-keyward-metrics.keyward-system.svc",
            "tls.crt",
        ],
    );
    let text = openssl_text(
        &scratch,
        "print the certificate",
        &["x509", "-in", "tls.crt", "-noout", "-text"],
    );
    let sans: Vec<String> = service_names(svc, "keyward-system")
        .iter()
        .map(|n| format!("DNS:{n}"))
        .collect();
    assert!(text.contains(&sans.join(", ")), "SANs:\n{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
    // The key is the certificate's (compared by public halves only).
    let from_cert = openssl_ok(
        &scratch,
        "take the certificate's public key",
        &["x509", "-in", "tls.crt", "-noout", "-pubkey"],
    );
    let from_key = openssl_ok(
        &scratch,
        "take the key's public half",
        &["pkey", "-in", "tls.key", "-pubout"],
    );
    assert_eq!(from_cert, from_key, "tls.key is not the certificate's key");

    // A new certificate restarts the pods, which read it at start-up only.
    let checksum: String = Sha256::digest(secret["data"]["tls.crt"].as_str().unwrap().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["annotations"],
        json!({"keyward.dev/kms-api-tls-checksum": checksum})
    );

    // Every ServiceAccount may read the CA's ConfigMap, and nothing else there.
    let reader = find(&objects, "Role", "kw-keyward-kms-api-ca-reader");
    assert_eq!(reader["metadata"]["namespace"], "keyward-system");
    assert_eq!(
        reader["rules"],
        json!([{"apiGroups": [""], "resources": ["configmaps"],
                "resourceNames": ["kw-keyward-kms-api-ca"], "verbs": ["get"]}])
    );
    let binding = find(&objects, "RoleBinding", "kw-keyward-kms-api-ca-reader");
    assert_eq!(
        binding["subjects"],
        json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                "name": "system:serviceaccounts"}])
    );
    assert!(
        notes.contains("ConfigMap\nkw-keyward-kms-api-ca"),
        "{notes}"
    );

    // Without a cluster to look in, every render makes a new CA: the cluster test proves that
    // an upgrade keeps the installed one.
    let (again, _) = render(json!({"kmsApi": {"enabled": true}}), "keyward-system").unwrap();
    assert_ne!(
        find(&again, "Secret", "kw-keyward-kms-api-tls")["data"]["ca.crt"],
        secret["data"]["ca.crt"]
    );
}
