//! The API's error document: Alibaba's code, an HTTP status, a message that says what to do.
//! Every failure of a request becomes one, and no message ever holds material, a secret or a
//! token.

use http::StatusCode;

use super::request::RequestError;
use super::signing::AuthError;
use crate::kms::error::{Code, Rejection};
use crate::kms::response::KmsError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: KmsError,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            error: KmsError::new(code, message),
        }
    }

    /// `Forbidden.KeyNotFound`: no Key in the cluster answers to the KeyId, ARN or alias.
    pub fn key_not_found() -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            error: KmsError::key_not_found(),
        }
    }

    /// RBAC refused the caller: the message names the verb to grant, and where.
    pub fn no_permission(user: &str, verb: &str, namespace: &str, name: Option<&str>) -> Self {
        let on = match name {
            Some(name) => format!("keys.keyward.dev/{name} in namespace {namespace}"),
            None => format!("keys.keyward.dev in namespace {namespace}"),
        };
        ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden.NoPermission",
            format!(
                "This operation is forbidden by permission system: {user} may not {verb} \
                 {on}. Grant the verb \"{verb}\" on resource \"keys\" in API group \
                 \"keyward.dev\" with a Role and RoleBinding"
            ),
        )
    }

    pub fn missing(parameter: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            &format!("Missing{parameter}"),
            format!("{parameter} is mandatory for this action."),
        )
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "InvalidParameter", message)
    }

    /// An action this server does not serve (yet, or at all).
    pub fn unknown_action(action: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "InvalidApi.NotFound",
            format!("Specified api is not found: keyward does not serve the action {action:?}."),
        )
    }

    /// The replica cannot answer yet (its caches are filling) or the cluster did not answer.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableTemporary",
            message,
        )
    }

    /// A KMS error the controller reported on a resource it was asked for (a Key's or
    /// KeyVersion's Ready condition), with the status its code implies.
    pub fn reported(error: KmsError) -> Self {
        let status = match error.code.as_str() {
            crate::kms::response::KEY_NOT_FOUND => StatusCode::NOT_FOUND,
            code if code.starts_with("Forbidden.") => StatusCode::FORBIDDEN,
            code if code.starts_with("Rejected.") => StatusCode::CONFLICT,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError { status, error }
    }

    /// The key's state refuses the action: `Rejected.<state>`, as the KMS answers a Disabled
    /// key's Encrypt.
    pub fn rejected_in_state(state: &str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, &format!("Rejected.{state}"), message)
    }

    /// The API wrote the change but the controller has not answered within the wait.
    pub fn not_settled(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            crate::kms::response::TIMEOUT,
            message,
        )
    }

    /// Something failed that the caller cannot fix; the details are logged, not returned.
    pub fn internal() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailure",
            "Internal Failure.",
        )
    }
}

/// A refusal of the KMS model: the caller's to fix (400), the key's state (409), or a store
/// keyward cannot read (500, detail logged, not returned).
impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        let status = match rejection.code {
            Code::MaterialStoreMissing | Code::MaterialStoreInvalid => {
                tracing::error!(error = %rejection, "a key's material cannot be used");
                return ApiError::internal();
            }
            code if code.is_final_rejection() => StatusCode::CONFLICT,
            Code::DeletionProtected => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, rejection.code.as_str(), rejection.detail)
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        ApiError::new(error.status(), error.code().as_str(), error.message())
    }
}

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> Self {
        ApiError::new(error.status(), error.code().as_str(), error.message())
    }
}
