//! Request extractors whose rejections are our problem+json errors: malformed JSON is 400,
//! a wrong content type 415, an oversized body 413, and fields that fail validation 422 with
//! every bad field listed.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use crate::domain::idempotency::{self, Begin, IdempotencyKey, Replay};
use crate::error::{ApiError, FieldError};
use crate::state::AppState;

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

pub use crate::error::Violations;

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

/// A JSON body that may be left out: no body at all reads as `T::default()` (e.g. a claim
/// with the default lease); a body present is parsed as [`parse_json_body`] does.
pub fn optional_json_body<T: DeserializeOwned + Default>(
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_json_body(headers, body)
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

/// A resource id from a path. A malformed one cannot name anything, so it is the same 404
/// as a missing or another tenant's `what`.
pub fn resource_id(raw: &str, what: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw).map_err(|_| ApiError::NotFound(what.to_string()))
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

/// Where a keyed POST stands before it does anything.
pub enum Keyed {
    /// Do the work (and store the answer under the key, if one was sent).
    Proceed(Option<IdempotencyKey>),
    /// Already answered: this is the earlier answer again.
    Replay(Response),
}

/// Reads the `Idempotency-Key` header and replays an earlier answer for it, if any.
pub async fn idempotent(
    state: &AppState,
    tenant_id: Uuid,
    headers: &HeaderMap,
    route: &str,
    body: &[u8],
) -> Result<Keyed, ApiError> {
    let key = key_of(tenant_id, headers, route, body)?;
    Ok(match idempotency::begin(state, key).await? {
        Begin::Proceed(key) => Keyed::Proceed(key),
        Begin::Replay(r) => Keyed::Replay(replayed(r)),
    })
}

/// The `Idempotency-Key` of a request, parsed but not looked up.
pub fn key_of(
    tenant_id: Uuid,
    headers: &HeaderMap,
    route: &str,
    body: &[u8],
) -> Result<Option<IdempotencyKey>, ApiError> {
    IdempotencyKey::parse(
        tenant_id,
        headers.get(idempotency::HEADER).map(|v| v.as_bytes()),
        route,
        body,
    )
}

/// An earlier answer sent again, marked as such.
pub fn replayed(r: Replay) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    let mut resp = (status, axum::Json(r.body)).into_response();
    resp.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    resp
}
