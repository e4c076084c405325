//! The `Key` resource: a CreateKey request in `spec`, the KMS's KeyMetadata in `status`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::kms::{AutomaticRotation, KeySpec, KeyState, KeyUsage, Origin, ProtectionLevel};

/// The longest description the KMS accepts, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 8192;

/// A customer master key (CMK). `spec` is the KMS CreateKey request; the controller validates
/// it, mints the key material into a Secret and reports the KMS KeyMetadata in `status`.
/// Omitted fields take the KMS defaults; the effective values appear in `status.keyMetadata`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "keyward.dev",
    version = "v1alpha1",
    kind = "Key",
    namespaced,
    shortname = "cmk",
    category = "keyward",
    status = "KeyStatus",
    derive = "PartialEq",
    doc = "A customer master key (CMK): spec is the KMS CreateKey request, status the KeyMetadata.",
    printcolumn(name = "KeySpec", type_ = "string", json_path = ".status.keyMetadata.keySpec"),
    printcolumn(name = "Usage", type_ = "string", json_path = ".status.keyMetadata.keyUsage"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.keyMetadata.keyState"),
    printcolumn(
        name = "Rotation",
        type_ = "string",
        json_path = ".status.keyMetadata.automaticRotation"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = immutable_rule("keySpec"),
    validation = immutable_rule("keyUsage"),
    validation = immutable_rule("origin"),
    validation = immutable_rule("protectionLevel"),
)]
#[serde(rename_all = "camelCase")]
pub struct KeyRequest {
    /// The description of the CMK, up to 8,192 characters. It can be changed at any time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8192))]
    pub description: Option<String>,

    /// The type of the CMK: Aliyun_AES_256 (default), Aliyun_SM4, RSA_2048, EC_P256, EC_P256K
    /// or EC_SM2. Case-sensitive. Immutable once the key exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Aliyun_AES_256", "Aliyun_SM4", "RSA_2048", "EC_P256", "EC_P256K", "EC_SM2"]))]
    pub key_spec: Option<String>,

    /// The purpose of the CMK: ENCRYPT/DECRYPT (default) or SIGN/VERIFY. Aliyun_AES_256 and
    /// Aliyun_SM4 encrypt only; EC_P256 and EC_P256K sign only; RSA_2048 and EC_SM2 do either.
    /// Immutable once the key exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["ENCRYPT/DECRYPT", "SIGN/VERIFY"]))]
    pub key_usage: Option<String>,

    /// The source of the key material: Aliyun_KMS (default, keyward generates it) or EXTERNAL
    /// (you import it; symmetric keys only). Case-sensitive. Immutable once the key exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Aliyun_KMS", "EXTERNAL"]))]
    pub origin: Option<String>,

    /// The protection level: SOFTWARE (default) or HSM. Case-sensitive. HSM has no backend in
    /// keyward yet and is refused. Immutable once the key exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["SOFTWARE", "HSM"]))]
    pub protection_level: Option<String>,

    /// Whether the key rotates automatically (default false). Only symmetric keys with origin
    /// Aliyun_KMS can rotate automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_automatic_rotation: Option<bool>,

    /// The period of automatic rotation, integer[unit] with unit d, h, m or s (for example
    /// 365d or 604800s), from 7 to 730 days. Required when enableAutomaticRotation is true,
    /// ignored otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[dhms]$"))]
    pub rotation_interval: Option<String>,

    /// The Secret that consumers mount, in the Key's namespace (default: the Key's name).
    /// keyward creates it and never takes over a Secret it did not create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[schemars(regex(
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
    ))]
    pub secret_name: Option<String>,
}

/// A CEL transition rule: once the key exists (its KeyMetadata is in status), `field` may only
/// be omitted or repeat the value the key was created with. The controller enforces the same
/// rule on effective values, for API servers that drop CEL rules (Kubernetes before 1.25).
fn immutable_rule(field: &str) -> kube::core::Rule {
    kube::core::Rule::new(format!(
        "!has(oldSelf.status) || !has(oldSelf.status.keyMetadata) || !has(self.spec.{field}) \
         || self.spec.{field} == oldSelf.status.keyMetadata.{field}"
    ))
    .message(kube::core::Message::Message(format!(
        "spec.{field} is immutable once the key exists: set it back to the value in \
         status.keyMetadata.{field}, or create a new Key"
    )))
}

/// What the controller observed and decided; written only by the controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyStatus {
    /// The KMS KeyMetadata of the key, present once the key exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_metadata: Option<KeyMetadata>,

    /// The Secret that holds the key material for consumers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,

    /// `Ready` is True when the key is usable and its consumer Secret is up to date.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The KMS KeyMetadata, field for field. Times are UTC to the second (2016-03-25T10:42:40Z).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyMetadata {
    /// acs:kms:<region>:<account-id>:key/<keyId>
    pub arn: String,
    /// Enabled, Disabled, or Suspended (rotation configured but the key is not Enabled).
    pub automatic_rotation: AutomaticRotation,
    /// When the key was created.
    pub creation_date: String,
    /// The account that created the key.
    pub creator: String,
    /// When the key material will be deleted; only while the key is PendingDeletion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_date: Option<String>,
    /// The description of the key; omitted when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The globally unique ID of the key (a UUID).
    pub key_id: String,
    /// The type of the key.
    pub key_spec: KeySpec,
    /// Enabled, Disabled, PendingDeletion or PendingImport.
    pub key_state: KeyState,
    /// The purpose of the key.
    pub key_usage: KeyUsage,
    /// When the newest key version was generated (for a new key, its initial version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_date: Option<String>,
    /// When the key material expires; absent when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub material_expire_time: Option<String>,
    /// When the next automatic rotation is due; only when rotation is Enabled or Suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation_date: Option<String>,
    /// The source of the key material.
    pub origin: Origin,
    /// The current primary key version (symmetric keys only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_key_version: Option<String>,
    /// The protection level of the key.
    pub protection_level: ProtectionLevel,
    /// The rotation period in seconds (31536000s); only when rotation is Enabled or Suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_interval: Option<String>,
}
