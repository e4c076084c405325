//! The `AccessKey` resource: credentials for keyward's KMS API that act as a ServiceAccount.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// An AccessKey pair for the KMS API, issued into a Secret of this namespace (entries
/// `accessKeyId` and `accessKeySecret`). A request signed with it acts as the ServiceAccount it
/// names: RBAC on `keys.keyward.dev` decides what it may do. Deleting the AccessKey revokes the
/// pair at once; keyward keeps its own copy of the secret where tenants cannot read or forge it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
// Each printcolumn(...) names its own type_; clippy reads them as one repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "keyward.dev",
    version = "v1alpha1",
    kind = "AccessKey",
    namespaced,
    shortname = "kwak",
    category = "keyward",
    status = "AccessKeyStatus",
    derive = "PartialEq",
    doc = "An AccessKey pair for keyward's KMS API, acting as a ServiceAccount.",
    printcolumn(
        name = "ServiceAccount",
        type_ = "string",
        json_path = ".spec.serviceAccountName"
    ),
    printcolumn(
        name = "AccessKeyId",
        type_ = "string",
        json_path = ".status.accessKeyId"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeySpec {
    /// The ServiceAccount of this namespace that requests signed with the pair act as.
    /// Immutable: to act as another, create another AccessKey.
    #[schemars(length(min = 1, max = 253))]
    #[schemars(regex(pattern = super::OBJECT_NAME_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message(Message::Message("spec.serviceAccountName is immutable: create another AccessKey to act as another ServiceAccount".into())))]
    pub service_account_name: String,

    /// The Secret of this namespace that receives the pair (default: the AccessKey's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[schemars(regex(pattern = super::OBJECT_NAME_PATTERN))]
    pub secret_name: Option<String>,
}

/// What keyward issued; written only by the controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeyStatus {
    /// The AccessKeyId of the pair (not secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,

    /// The Secret that holds the pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,

    /// `Ready` is True once the pair is issued and in its Secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl AccessKey {
    /// The Secret the pair is issued into.
    pub fn secret_name(&self) -> String {
        use kube::ResourceExt;
        self.spec
            .secret_name
            .clone()
            .unwrap_or_else(|| self.name_any())
    }
}
