//! Request extractors whose rejections are our problem+json errors: malformed JSON is 400,
//! a wrong content type 415, an oversized body 413, and fields that fail validation 422 with
//! every bad field listed.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

/// `axum::Json` with our error mapping.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map(|l| l.0)
            .unwrap_or(crate::config::DEFAULT_BODY_LIMIT);
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(map_json_rejection(rejection, limit)),
        }
    }
}

/// The configured body limit, for the 413 message.
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

fn map_json_rejection(rejection: JsonRejection, limit: usize) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
            "send the body as JSON with Content-Type: application/json".into(),
        ),
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::MalformedJson(format!("malformed JSON: {}", inner_message(&e.body_text())))
        }
        JsonRejection::JsonDataError(e) => {
            // serde stops at the first problem; name the field path it reports.
            let text = e.body_text();
            let message = inner_message(&text);
            let field = message
                .split_once(": ")
                .map(|(path, _)| path.to_string())
                .filter(|p| !p.contains(' '))
                .unwrap_or_else(|| "body".to_string());
            ApiError::Validation(vec![FieldError {
                field,
                message: message.to_string(),
            }])
        }
        JsonRejection::BytesRejection(e) => {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::MalformedJson(format!("could not read the body: {}", e.body_text()))
            }
        }
        other => ApiError::MalformedJson(other.body_text()),
    }
}

/// axum prefixes its messages; keep what helps a client.
fn inner_message(text: &str) -> &str {
    text.strip_prefix("Failed to deserialize the JSON body into the target type: ")
        .or_else(|| text.strip_prefix("Failed to parse the request body as JSON: "))
        .unwrap_or(text)
}

/// `axum::extract::Query` with our error mapping (422 naming the parameter).
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(map_query_rejection(e)),
        }
    }
}

fn map_query_rejection(e: QueryRejection) -> ApiError {
    let text = e.body_text();
    let message = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text)
        .to_string();
    let field = message
        .split_once(':')
        .map(|(f, _)| f.trim().to_string())
        .filter(|f| !f.contains(' '))
        .unwrap_or_else(|| "query".into());
    ApiError::Validation(vec![FieldError { field, message }])
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

    pub fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}

/// Parses a JSON body already read as bytes (routes that also hash the body for
/// idempotency), with the same errors as [`ApiJson`] and the failing field's path.
pub fn parse_json_body<T: DeserializeOwned>(
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    let json_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let essence = v
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            essence == "application/json" || essence.ends_with("+json")
        })
        .unwrap_or(false);
    if !json_type {
        return Err(ApiError::UnsupportedMediaType(
            "send the body as JSON with Content-Type: application/json".into(),
        ));
    }
    parse_json_value(body)
}

/// Deserializes with the path of the first failing field in the error.
pub fn parse_json_value<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = serde_path_to_error::deserialize::<_, T>(&mut de);
    if parsed.is_ok() {
        // Trailing garbage after the JSON value is malformed, not ignorable.
        if let Err(e) = de.end() {
            return Err(ApiError::MalformedJson(format!("malformed JSON: {e}")));
        }
    }
    match parsed {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                Err(ApiError::MalformedJson(format!("malformed JSON: {inner}")))
            } else {
                Err(ApiError::Validation(vec![FieldError {
                    field: if path == "." || path.is_empty() {
                        "body".into()
                    } else {
                        path
                    },
                    message: inner.to_string(),
                }]))
            }
        }
    }
}

/// Largest page any list route returns.
pub const MAX_PAGE: i64 = 1000;
/// Page size when the client names none.
pub const DEFAULT_PAGE: i64 = 100;

/// The checked `limit` and `cursor` of a list request. Cursors are the id of the last item
/// of the previous page, so pages neither skip nor repeat rows while new ones arrive.
pub fn page<C: std::str::FromStr>(
    v: &mut Violations,
    limit: Option<i64>,
    cursor: Option<&str>,
) -> (i64, Option<C>) {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    v.check(
        (1..=MAX_PAGE).contains(&limit),
        "limit",
        "must be between 1 and 1000",
    );
    let cursor = cursor.and_then(|c| match c.parse::<C>() {
        Ok(parsed) => Some(parsed),
        Err(_) => {
            v.add("cursor", "not a cursor returned by this endpoint");
            None
        }
    });
    (limit, cursor)
}

/// The cursor of the page after `items`: present only when the page was full.
pub fn next_cursor<T, K: ToString>(
    items: &[T],
    limit: i64,
    id: impl Fn(&T) -> K,
) -> Option<String> {
    (items.len() as i64 == limit)
        .then(|| items.last().map(|last| id(last).to_string()))
        .flatten()
}
