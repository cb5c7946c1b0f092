//! The one error type of the HTTP API, rendered as RFC 9457 `application/problem+json`.
//!
//! Handlers return `ApiError`; the request middleware adds the `request_id` and turns any
//! other error response (from the router or a layer) into the same shape, so a client only
//! ever has to parse one error format.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::storage::StoreError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid field of a request (422).
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// The problem document every error response carries.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code, e.g. `INVALID_API_KEY`.
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Members particular to a problem type (e.g. a quota's `plan`, `limit`, `used`,
    /// `period_end`), at the top level as RFC 9457 extension members.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    MalformedJson(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("request validation failed")]
    Validation(Vec<FieldError>),
    #[error("{detail}")]
    Unauthorized { code: &'static str, detail: String },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("rate limit exceeded")]
    RateLimited { retry_after_secs: u64 },
    /// A query string that asks for something impossible (an analytics range backwards,
    /// too long, too many buckets): 400, every problem listed.
    #[error("the query is invalid")]
    InvalidQuery(Vec<FieldError>),
    #[error("the monthly quota of {limit} evaluations on the {plan} plan is used up")]
    QuotaExceeded {
        plan: String,
        limit: i64,
        used: i64,
        period_end: Option<chrono::DateTime<chrono::Utc>>,
    },
    #[error("{what} is unavailable")]
    Unavailable {
        what: &'static str,
        retry_after_secs: u64,
    },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// Collects every invalid field before answering, so clients fix them in one round.
#[derive(Default)]
pub struct Violations(Vec<FieldError>);

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    pub fn check(&mut self, ok: bool, field: &str, message: &str) {
        if !ok {
            self.add(field, message);
        }
    }

    /// Keeps at most `n` entries, noting how many were left out.
    pub fn truncate(&mut self, n: usize) {
        if self.0.len() > n {
            let more = self.0.len() - n;
            self.0.truncate(n);
            self.add("body", format!("... and {more} more problems"));
        }
    }

    /// Adds another collection's problems after this one's.
    pub fn append(&mut self, mut other: Violations) {
        self.0.append(&mut other.0);
    }

    pub fn into_errors(self) -> Vec<FieldError> {
        self.0
    }

    pub fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}

impl From<StoreError> for ApiError {
    /// A stale read or a duplicate is the client's conflict; an unreachable database is
    /// a 503 the client may retry; anything else is ours and is logged, never shown.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => ApiError::Unavailable {
                what: "database",
                retry_after_secs: 5,
            },
            StoreError::Duplicate(what) => ApiError::Conflict(what.to_string()),
            StoreError::Stale(what) => {
                ApiError::Conflict(format!("the {what} changed concurrently; retry"))
            }
            StoreError::Conflict(what) => ApiError::Conflict(format!(
                "the {what} does not allow this change now; read it again"
            )),
            StoreError::IdempotencyKeyTaken => ApiError::Conflict(
                "a concurrent request with the same Idempotency-Key is in progress".into(),
            ),
            other @ (StoreError::Migration(_) | StoreError::Other(_)) => ApiError::internal(other),
        }
    }
}

impl ApiError {
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(e.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::QuotaExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "MALFORMED_JSON",
            ApiError::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            ApiError::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            ApiError::Validation(_) => "VALIDATION_FAILED",
            ApiError::Unauthorized { code, .. } => code,
            ApiError::Forbidden(_) => "INSUFFICIENT_SCOPE",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::RateLimited { .. } => "RATE_LIMITED",
            ApiError::InvalidQuery(_) => "INVALID_QUERY",
            ApiError::QuotaExceeded { .. } => "QUOTA_EXCEEDED",
            ApiError::Unavailable { .. } => "SERVICE_UNAVAILABLE",
            ApiError::Internal(_) => "INTERNAL_ERROR",
        }
    }

    pub fn to_problem(&self) -> Problem {
        let status = self.status();
        let detail = match self {
            // Never leak internals to the client; the cause is logged with the request id.
            ApiError::Internal(_) => "an unexpected error occurred".to_string(),
            other => other.to_string(),
        };
        Problem {
            kind: problem_type(self.code()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail,
            code: self.code().to_string(),
            request_id: None,
            errors: match self {
                ApiError::Validation(errors) | ApiError::InvalidQuery(errors) => errors.clone(),
                _ => Vec::new(),
            },
            extensions: match self {
                ApiError::QuotaExceeded {
                    plan,
                    limit,
                    used,
                    period_end,
                } => serde_json::json!({
                    "plan": plan, "limit": limit, "used": used, "period_end": period_end,
                })
                .as_object()
                .cloned()
                .unwrap_or_default(),
                _ => serde_json::Map::new(),
            },
        }
    }
}

/// A documentation URI per code; stable so clients can switch on it.
pub fn problem_type(code: &str) -> String {
    format!(
        "https://preflight.dev/problems/{}",
        code.to_ascii_lowercase().replace('_', "-")
    )
}

/// A problem for a bare status produced outside our handlers (router, layers).
pub fn problem_for_status(status: StatusCode) -> Problem {
    let (code, detail) = match status {
        StatusCode::NOT_FOUND => ("NOT_FOUND", "no route matches this path"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "METHOD_NOT_ALLOWED",
            "this route does not accept that method",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "PAYLOAD_TOO_LARGE",
            "request body is larger than the configured limit",
        ),
        StatusCode::REQUEST_TIMEOUT => ("REQUEST_TIMEOUT", "the request took too long"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("UNSUPPORTED_MEDIA_TYPE", "send application/json"),
        StatusCode::BAD_REQUEST => ("BAD_REQUEST", "the request could not be understood"),
        StatusCode::FORBIDDEN => ("FORBIDDEN", "not allowed"),
        StatusCode::SERVICE_UNAVAILABLE => ("SERVICE_UNAVAILABLE", "try again shortly"),
        s if s.is_server_error() => ("INTERNAL_ERROR", "an unexpected error occurred"),
        _ => ("ERROR", "the request failed"),
    };
    Problem {
        kind: problem_type(code),
        title: status.canonical_reason().unwrap_or("Error").to_string(),
        status: status.as_u16(),
        detail: detail.to_string(),
        code: code.to_string(),
        request_id: None,
        errors: Vec::new(),
        extensions: serde_json::Map::new(),
    }
}

pub fn problem_response(problem: &Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = %format!("{e:#}"), "internal error");
        }
        let mut resp = problem_response(&self.to_problem());
        let headers = resp.headers_mut();
        match &self {
            ApiError::Unauthorized { .. } => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        r#"ApiKey realm="preflight", Bearer realm="preflight""#,
                    ),
                );
            }
            ApiError::RateLimited { retry_after_secs }
            | ApiError::Unavailable {
                retry_after_secs, ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            // Retrying before the period ends cannot succeed.
            ApiError::QuotaExceeded {
                period_end: Some(end),
                ..
            } => {
                let wait = (*end - chrono::Utc::now()).num_seconds().max(1);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(wait));
            }
            _ => {}
        }
        resp
    }
}
