//! The `KeyVersion` resource: a CreateKeyVersion request for an asymmetric Key.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A request for a new version of an asymmetric Key (the KMS CreateKeyVersion). Once accepted,
/// the new version becomes the Key's newest: its consumer Secret's default entries switch to
/// it, and every older version stays available under its id. A rejected request stays
/// rejected, like a failed API call; create a new KeyVersion to try again.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
// Each printcolumn(...) names its own type_; clippy reads them as one repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "keyward.dev",
    version = "v1alpha1",
    kind = "KeyVersion",
    namespaced,
    shortname = "cmkv",
    category = "keyward",
    status = "KeyVersionStatus",
    derive = "PartialEq",
    doc = "A CreateKeyVersion request: a new version of an asymmetric Key.",
    printcolumn(name = "Key", type_ = "string", json_path = ".spec.keyRef.name"),
    printcolumn(
        name = "VersionId",
        type_ = "string",
        json_path = ".status.keyVersion.keyVersionId"
    ),
    printcolumn(
        name = "State",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct KeyVersionRequest {
    /// The Key to create a new version of, in the same namespace. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message(Message::Message("spec.keyRef is immutable: create a new KeyVersion for another Key".into())))]
    pub key_ref: KeyRef,
}

/// A reference to a Key in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
pub struct KeyRef {
    /// The name of the Key: an object name (lowercase letters, digits, '-' and '.').
    #[schemars(length(min = 1, max = 253))]
    #[schemars(regex(pattern = super::OBJECT_NAME_PATTERN))]
    pub name: String,
}

/// The outcome of the request; written only by the controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyVersionStatus {
    /// The KMS CreateKeyVersion response, once the version exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_version: Option<KeyVersionMetadata>,

    /// `Ready` is True once the version exists; False with a `Rejected...` reason when the
    /// request was refused (final), or while the Key does not exist yet (it waits).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The metadata of a key version (KMS KeyVersion); times are UTC to the second.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyVersionMetadata {
    /// The globally unique ID of the key.
    pub key_id: String,
    /// The ID of the version (a UUID).
    pub key_version_id: String,
    /// When the version was created.
    pub creation_date: String,
}
