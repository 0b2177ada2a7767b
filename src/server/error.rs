//! API errors: every 4xx and 5xx is JSON with a stable `code` and a message
//! that says what is wrong, including axum's own extractor rejections.

use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::config::{ConfigError, Problem};
use crate::engine::{AssignError, CheckError};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    problems: Vec<Problem>,
}

/// Longest error message sent, in bytes: messages quote what the client
/// sent (a policy or tier name, escaped), and an error reply must never be
/// much larger than its request.
pub const MAX_MESSAGE: usize = 512;

/// `message` cut to [`MAX_MESSAGE`] bytes on a character boundary, with
/// `…` where it was cut.
pub fn capped(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE - '…'.len_utf8();
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

impl ApiError {
    /// An error with `status`, a machine-readable `code`, and a message
    /// (capped at [`MAX_MESSAGE`] bytes).
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: capped(message.into()),
            problems: Vec::new(),
        }
    }

    /// The machine-readable code, which the binary protocol's error reply
    /// carries too.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "code": self.code, "error": self.message });
        if !self.problems.is_empty() {
            body["problems"] = json!(self.problems);
        }
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<CheckError> for ApiError {
    fn from(error: CheckError) -> Self {
        Self::bad_request(error.code(), error.to_string())
    }
}

impl From<ConfigError> for ApiError {
    fn from(error: ConfigError) -> Self {
        let mut api = Self::bad_request("invalid_config", error.to_string());
        api.problems = error.problems;
        api
    }
}

impl From<AssignError> for ApiError {
    fn from(error: AssignError) -> Self {
        let (status, code) = match error {
            AssignError::BadId => (StatusCode::BAD_REQUEST, "bad_id"),
            AssignError::UnknownTier(_) => (StatusCode::BAD_REQUEST, "unknown_tier"),
            AssignError::Full => (StatusCode::INSUFFICIENT_STORAGE, "assignments_full"),
        };
        Self::new(status, code, error.to_string())
    }
}

fn rejection_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        _ => "malformed_body",
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        Self::new(status, rejection_code(status), rejection.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        Self::new(status, rejection_code(status), rejection.body_text())
    }
}

/// `Json<T>` whose rejections are [`ApiError`]s.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(request, state).await?;
        Ok(Self(value))
    }
}

/// 404 for every unknown route.
pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see docs/http-api.md",
    )
}

/// 405 for a known route with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}
