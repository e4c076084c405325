//! The chart's HSM values (`hsm`), rendered: nothing of them while `hsm.module` is empty; with
//! it set, the three `--pkcs11-*` flags, the PIN Secret's one key mounted read-only with mode
//! 0400 where `--pkcs11-pin-file` points, the module's own environment and volumes, and the
//! fsGroup that lets the operator read them; the schema's refusals; and what NOTES.txt says
//! about SoftHSM2.

use serde_json::{Value, json};

use crate::chart::{args, container, find, lint_problems, render};

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// A network HSM's client library, as a vendor's package would install it.
const NETWORK_HSM: &str = "/opt/hsm/lib/libhsmclient.so";

/// A complete HSM configuration: a token label YAML would misread unquoted, a PIN under a key
/// of its own, and the module's configuration and token directory.
fn hsm_values(module: &str) -> Value {
    json!({"hsm": {
        "module": module,
        "tokenLabel": "keyward: #1",
        "pinSecret": {"name": "keyward-hsm-pin", "key": "user-pin"},
        "env": [{"name": "SOFTHSM2_CONF", "value": "/var/lib/softhsm/softhsm2.conf"}],
        "volumes": [
            {"name": "tokens", "persistentVolumeClaim": {"claimName": "keyward-softhsm"}},
            {"name": "hsm-client", "configMap": {"name": "hsm-client"}},
        ],
        "volumeMounts": [
            {"name": "tokens", "mountPath": "/var/lib/softhsm"},
            {"name": "hsm-client", "mountPath": "/etc/hsm-client", "readOnly": true},
        ],
    }})
}

fn pkcs11_args(deployment: &Value) -> Vec<String> {
    args(deployment)
        .into_iter()
        .filter(|a| a.contains("pkcs11"))
        .collect()
}

fn pod(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]
}

#[test]
fn hsm_unset_renders_no_pkcs11_flag_environment_or_volume() {
    // Neither by default, nor with every other hsm value set: the module turns it all on.
    for values in [json!({}), hsm_values("")] {
        let (objects, notes) = render(values.clone(), "keyward-system").unwrap();
        let deployment = find(&objects, "Deployment", "kw-keyward");
        assert_eq!(pkcs11_args(deployment), Vec::<String>::new(), "{values}");
        let rendered = serde_json::to_string(deployment).unwrap();
        for word in ["pkcs11", "PKCS11", "SOFTHSM2_CONF", "tokens", "hsm-client"] {
            assert!(!rendered.contains(word), "{word} with {values}: {rendered}");
        }
        assert!(pod(deployment).get("volumes").is_none(), "{values}");
        assert!(container(deployment).get("volumeMounts").is_none());
        assert_eq!(
            container(deployment)["env"].as_array().unwrap().len(),
            2,
            "only POD_NAME and POD_NAMESPACE: {values}"
        );
        // No fsGroup: nothing to read or write on a volume.
        assert!(
            pod(deployment)["securityContext"].get("fsGroup").is_none(),
            "{values}"
        );
        assert!(!notes.contains("PKCS#11"), "{notes}");
        assert!(!notes.contains("SoftHSM2"), "{notes}");
    }
}

#[test]
fn hsm_module_passes_its_flags_mounts_only_the_pin_key_read_only_and_adds_the_modules_extras() {
    let values = hsm_values(NETWORK_HSM);
    assert_eq!(lint_problems(Some(values.clone())), Vec::<String>::new());
    let (objects, _) = render(values, "keyward-system").unwrap();
    let deployment = find(&objects, "Deployment", "kw-keyward");

    // The flags, each once; the label arrives whole (quoted in the template).
    assert_eq!(
        pkcs11_args(deployment),
        [
            format!("--pkcs11-module={NETWORK_HSM}"),
            "--pkcs11-token-label=keyward: #1".to_string(),
            "--pkcs11-pin-file=/etc/keyward/pkcs11-pin/pin".to_string(),
        ]
    );

    // The PIN: the named key alone, mode 0400, from the named Secret, first among the volumes;
    // the module's volumes follow as given.
    assert_eq!(
        pod(deployment)["volumes"],
        json!([
            {"name": "pkcs11-pin", "secret": {
                "secretName": "keyward-hsm-pin", "defaultMode": 0o400,
                "items": [{"key": "user-pin", "path": "pin", "mode": 0o400}]}},
            {"name": "tokens", "persistentVolumeClaim": {"claimName": "keyward-softhsm"}},
            {"name": "hsm-client", "configMap": {"name": "hsm-client"}},
        ])
    );
    // Mounted read-only where --pkcs11-pin-file points (mountPath + the item's path).
    let c = container(deployment);
    assert_eq!(
        c["volumeMounts"],
        json!([
            {"name": "pkcs11-pin", "mountPath": "/etc/keyward/pkcs11-pin", "readOnly": true},
            {"name": "tokens", "mountPath": "/var/lib/softhsm"},
            {"name": "hsm-client", "mountPath": "/etc/hsm-client", "readOnly": true},
        ])
    );
    let pin_file = format!(
        "{}/{}",
        c["volumeMounts"][0]["mountPath"].as_str().unwrap(),
        pod(deployment)["volumes"][0]["secret"]["items"][0]["path"]
            .as_str()
            .unwrap()
    );
    assert!(
        args(deployment).contains(&format!("--pkcs11-pin-file={pin_file}")),
        "{:?}",
        args(deployment)
    );

    // The module's environment after the chart's own; the PIN is in none of it.
    assert_eq!(
        c["env"],
        json!([
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE",
             "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "SOFTHSM2_CONF", "value": "/var/lib/softhsm/softhsm2.conf"},
        ])
    );

    // The PIN file is root's, mode 0400: the pod's fsGroup (the operator's group) lets the
    // kubelet make it readable to the operator. The rest of the restricted context stays.
    assert_eq!(
        pod(deployment)["securityContext"],
        json!({"fsGroup": 65532, "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
               "seccompProfile": {"type": "RuntimeDefault"}})
    );
    // A group of the user's own choosing is kept; without runAsGroup, 65532.
    let mut values = hsm_values(NETWORK_HSM);
    values["podSecurityContext"] = json!({"runAsNonRoot": true, "runAsGroup": 2000});
    let (objects, _) = render(values.clone(), "keyward-system").unwrap();
    let security = &pod(find(&objects, "Deployment", "kw-keyward"))["securityContext"];
    assert_eq!(security["fsGroup"], 2000, "{security}");
    values["podSecurityContext"] = json!({"runAsNonRoot": true, "fsGroup": 3000});
    let (objects, _) = render(values.clone(), "keyward-system").unwrap();
    let security = &pod(find(&objects, "Deployment", "kw-keyward"))["securityContext"];
    assert_eq!(security["fsGroup"], 3000, "{security}");
    values["podSecurityContext"] = json!({"runAsNonRoot": true});
    let (objects, _) = render(values, "keyward-system").unwrap();
    let security = &pod(find(&objects, "Deployment", "kw-keyward"))["securityContext"];
    assert_eq!(security["fsGroup"], 65532, "{security}");
}

#[test]
fn hsm_and_the_kms_api_mount_their_secrets_side_by_side() {
    let mut values = hsm_values(NETWORK_HSM);
    values["kmsApi"] = json!({"enabled": true, "tls": {"secretName": "kms-api-cert"}});
    assert_eq!(lint_problems(Some(values.clone())), Vec::<String>::new());
    let (objects, _) = render(values, "keyward-system").unwrap();
    let deployment = find(&objects, "Deployment", "kw-keyward");
    let volumes: Vec<&str> = pod(deployment)["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        volumes,
        ["kms-api-tls", "pkcs11-pin", "tokens", "hsm-client"]
    );
    let mounts: Vec<&str> = container(deployment)["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        mounts,
        ["kms-api-tls", "pkcs11-pin", "tokens", "hsm-client"]
    );
    let args = args(deployment);
    assert!(
        args.iter().any(|a| a.starts_with("--kms-api-tls-cert=")),
        "{args:?}"
    );
    assert_eq!(pkcs11_args(deployment).len(), 3, "{args:?}");
}

#[test]
fn hsm_schema_refuses_a_module_without_its_token_label_or_pin_secret() {
    // Each complaint names the value missing, and only that one.
    for (values, complaint, not) in [
        (
            json!({"hsm": {"module": SOFTHSM, "pinSecret": {"name": "pin"}}}),
            "/hsm/tokenLabel",
            Some("/hsm/pinSecret/name"),
        ),
        (
            json!({"hsm": {"module": SOFTHSM, "tokenLabel": "keyward"}}),
            "/hsm/pinSecret/name",
            Some("/hsm/tokenLabel"),
        ),
        (json!({"hsm": {"module": SOFTHSM}}), "/hsm/tokenLabel", None),
        (
            json!({"hsm": {"module": SOFTHSM}}),
            "/hsm/pinSecret/name",
            None,
        ),
        // The chart sets KEYWARD_PKCS11_* as flags; a PIN in the environment would be in the
        // Deployment for anyone who can read it.
        (
            json!({"hsm": {"env": [{"name": "KEYWARD_PKCS11_PIN", "value": "1234"}]}}),
            "/hsm/env/0/name",
            None,
        ),
        // The chart's own volume names.
        (
            json!({"hsm": {"volumes": [{"name": "pkcs11-pin", "emptyDir": {}}]}}),
            "/hsm/volumes/0/name",
            None,
        ),
        (
            json!({"hsm": {"volumeMounts": [{"name": "tokens"}]}}),
            "/hsm/volumeMounts/0",
            None,
        ),
        // A PKCS#11 token label has 32 characters at most.
        (
            json!({"hsm": {"tokenLabel": "a-token-label-longer-than-32-chars"}}),
            "/hsm/tokenLabel",
            None,
        ),
        (
            json!({"hsm": {"pinSecret": {"name": "Not_A_Name"}}}),
            "/hsm/pinSecret/name",
            None,
        ),
        (
            json!({"hsm": {"pinSecret": {"key": ""}}}),
            "/hsm/pinSecret/key",
            None,
        ),
        (json!({"hsm": {"module": 11}}), "/hsm/module", None),
        (json!({"hsm": {"pin": "1234"}}), "pin", None),
    ] {
        match render(values.clone(), "keyward") {
            Ok(_) => panic!("values {values} were accepted"),
            Err(e) => {
                assert!(
                    e.contains(complaint),
                    "values {values}: expected a complaint about {complaint}, got:\n{e}"
                );
                if let Some(not) = not {
                    assert!(
                        !e.contains(not),
                        "values {values}: {not} was set, yet named:\n{e}"
                    );
                }
            }
        }
    }
    render(
        json!({"hsm": {"module": SOFTHSM, "tokenLabel": "keyward",
                       "pinSecret": {"name": "pin"}}}),
        "keyward",
    )
    .expect("a module with its token label and PIN Secret");
}

#[test]
fn softhsm_with_several_replicas_renders_and_notes_warn_it_is_for_one_replica_in_development() {
    // Two replicas share a network HSM: no warning, only the image and the egress it needs.
    let (objects, notes) = render(hsm_values(NETWORK_HSM), "keyward-system").unwrap();
    assert_eq!(
        find(&objects, "Deployment", "kw-keyward")["spec"]["replicas"],
        2
    );
    assert!(notes.contains("PKCS#11 token \"keyward: #1\""), "{notes}");
    assert!(
        notes.contains("Secret keyward-hsm-pin (key user-pin)"),
        "{notes}"
    );
    assert!(notes.contains("dynamically linked (glibc)"), "{notes}");
    assert!(notes.contains("networkPolicy.egressExtra"), "{notes}");
    assert!(!notes.contains("WARNING"), "{notes}");
    assert!(!notes.contains("SoftHSM2"), "{notes}");
    let mut values = hsm_values(NETWORK_HSM);
    values["networkPolicy"] = json!({"enabled": false});
    let (_, notes) = render(values, "keyward-system").unwrap();
    assert!(!notes.contains("networkPolicy.egressExtra"), "{notes}");

    // SoftHSM2 with the default two replicas still renders, and says why it should not.
    let (objects, notes) = render(hsm_values(SOFTHSM), "keyward-system").unwrap();
    assert_eq!(
        find(&objects, "Deployment", "kw-keyward")["spec"]["replicas"],
        2
    );
    assert!(
        notes.contains("WARNING: hsm.module is SoftHSM2, a software token for development only"),
        "{notes}"
    );
    assert!(notes.contains("persistent volume"), "{notes}");
    assert!(notes.contains("replicas is 2"), "{notes}");
    // Its token is local files, not a network peer.
    assert!(!notes.contains("networkPolicy.egressExtra"), "{notes}");

    // One replica: the warning stays (development only), the replicas sentence goes. The
    // module's name is matched whatever its case.
    let mut values = hsm_values("/opt/SoftHSM/lib/libSoftHSM2.so");
    values["replicas"] = json!(1);
    values["leaderElection"] = json!({"enabled": false});
    let (_, notes) = render(values, "keyward-system").unwrap();
    assert!(notes.contains("WARNING: hsm.module is SoftHSM2"), "{notes}");
    assert!(!notes.contains("replicas is"), "{notes}");
}
