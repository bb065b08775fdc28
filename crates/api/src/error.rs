//! `ApiError`: every failure becomes `{"code": "...", "message": "..."}` with the right status.

use std::borrow::Cow;

use axum::{
    Json,
    extract::rejection::{JsonRejection, PathRejection, QueryRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use domain::{
    ErrorKind, auth::AuthError, error::DomainError, models::ModelError, users::UserError,
    workflows::WorkflowError,
};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable snake_case code, e.g. `user_not_found`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// For `invalid_workflow`: every problem found in the graph.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<crate::routes::workflows::ProblemResponse>>,
    /// For `stale_version`: the version's current revision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<i64>,
}

/// An error on its way to becoming an HTTP response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
    retry_after_secs: Option<u64>,
    problems: Option<Vec<crate::routes::workflows::ProblemResponse>>,
    current_revision: Option<i64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            retry_after_secs: None,
            problems: None,
            current_revision: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    /// Builds the response for any domain error. Internal errors are logged here, inside
    /// the request's span (so with its request id), and answered without details.
    /// Adds a `Retry-After` header.
    pub fn with_retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after_secs = Some(secs);
        self
    }

    /// Attaches a list of problems (shown as `problems`).
    pub fn with_problems(
        mut self,
        problems: Option<Vec<crate::routes::workflows::ProblemResponse>>,
    ) -> ApiError {
        self.problems = problems;
        self
    }

    pub fn from_domain(err: &dyn DomainError) -> ApiError {
        let status = status_of(err.kind());
        if err.kind() == ErrorKind::Internal {
            tracing::error!(code = err.code(), error = %err, "internal error");
            return ApiError::new(
                status,
                "internal_error",
                "an internal error occurred; see the server log for this request id",
            );
        }
        if err.kind() == ErrorKind::Unavailable {
            tracing::warn!(code = err.code(), error = %err, "dependency unavailable");
            return ApiError::new(
                status,
                err.code(),
                "a dependency is unavailable; retry shortly",
            );
        }
        ApiError::new(status, err.code(), err.to_string())
    }
}

/// The one mapping from error kinds to statuses. No wildcard arm: a new kind must be placed.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> ApiError {
        let mut api = ApiError::from_domain(&err);
        if let AuthError::RateLimited { retry_after_secs } = err {
            api.retry_after_secs = Some(retry_after_secs);
        }
        api
    }
}

impl From<WorkflowError> for ApiError {
    fn from(err: WorkflowError) -> ApiError {
        let mut api = ApiError::from_domain(&err);
        match err {
            WorkflowError::Invalid(problems) => {
                api.problems = Some(problems.into_iter().map(Into::into).collect());
            }
            WorkflowError::Stale { current } => api.current_revision = Some(current),
            _ => {}
        }
        api
    }
}

impl From<domain::runs::RunError> for ApiError {
    fn from(err: domain::runs::RunError) -> ApiError {
        match err {
            domain::runs::RunError::Workflow(inner) => inner.into(),
            other => ApiError::from_domain(&other),
        }
    }
}

impl From<ModelError> for ApiError {
    fn from(err: ModelError) -> ApiError {
        ApiError::from_domain(&err)
    }
}

impl From<domain::storage::StorageError> for ApiError {
    fn from(err: domain::storage::StorageError) -> ApiError {
        ApiError::from_domain(&err)
    }
}

impl From<UserError> for ApiError {
    fn from(err: UserError) -> ApiError {
        ApiError::from_domain(&err)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        let (code, status) = match &rejection {
            JsonRejection::JsonDataError(_) => ("invalid_body", StatusCode::UNPROCESSABLE_ENTITY),
            JsonRejection::JsonSyntaxError(_) => ("malformed_json", StatusCode::BAD_REQUEST),
            JsonRejection::MissingJsonContentType(_) => {
                ("unsupported_media_type", StatusCode::UNSUPPORTED_MEDIA_TYPE)
            }
            _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ("body_too_large", StatusCode::PAYLOAD_TOO_LARGE)
            }
            _ => ("unreadable_body", rejection.status()),
        };
        let message = match code {
            "unsupported_media_type" => {
                "expected a JSON body with `Content-Type: application/json`".to_string()
            }
            "body_too_large" => "the request body is larger than the server accepts".to_string(),
            _ => rejection.body_text(),
        };
        ApiError::new(status, code, message)
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            rejection.body_text(),
        )
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            rejection.body_text(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code.into_owned(),
            message: self.message,
            problems: self.problems,
            current_revision: self.current_revision,
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
