//! Per-request plumbing that every route shares: request ids, one structured log line,
//! the guide's request metrics, security headers, and turning any error response into
//! problem+json with the request id in it.

use std::time::Instant;

use axum::body::{to_bytes, Body};
use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderName, HeaderValue, Response};
use axum::middleware::Next;

use crate::error::{problem_for_status, PROBLEM_JSON};
use crate::telemetry::{REQUEST_COUNT, REQUEST_LATENCY};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the current request, available to handlers as an extension.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// The route template that matched, carried on the response so the outer middleware can
/// label metrics without ever using the raw path.
#[derive(Clone, Debug)]
struct MatchedRoute(String);

/// The tenant a request acted for, set by authentication, for the log line.
#[derive(Clone, Debug)]
pub struct TenantTag(pub String);

/// Keeps a client's id when it is a sane token, so ids can be followed across systems.
fn accept_client_request_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
        });
    ok.then(|| s.to_string())
}

/// Inner layer (route_layer): remembers which route template matched.
pub async fn tag_matched_route(req: Request, next: Next) -> Response<Body> {
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let mut resp = next.run(req).await;
    if let Some(m) = matched {
        resp.extensions_mut().insert(MatchedRoute(m));
    }
    resp
}

/// Largest error body we are willing to re-read to add the request id.
const MAX_PROBLEM_BODY: usize = 64 * 1024;

const DEFAULT_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// Outer layer: wraps every request, matched or not.
pub async fn observe(mut req: Request, next: Next) -> Response<Body> {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(accept_client_request_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let method = req.method().clone();

    let resp = next.run(req).await;
    let mut resp = normalize_error(resp, &request_id).await;

    let endpoint = resp
        .extensions()
        .get::<MatchedRoute>()
        .map(|m| m.0.clone())
        .unwrap_or_else(|| "unmatched".to_string());
    let status = resp.status().as_u16();
    let elapsed = started.elapsed();

    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert(X_REQUEST_ID.clone(), v);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(DEFAULT_CSP));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));

    metrics::counter!(
        REQUEST_COUNT,
        "method" => method.to_string(),
        "endpoint" => endpoint.clone(),
        "status" => status.to_string()
    )
    .increment(1);
    metrics::histogram!(
        REQUEST_LATENCY,
        "method" => method.to_string(),
        "endpoint" => endpoint.clone()
    )
    .record(elapsed.as_secs_f64());

    let tenant = resp.extensions().get::<TenantTag>().map(|t| t.0.clone());
    tracing::info!(
        target: "preflight::request",
        method = %method,
        route = %endpoint,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        request_id = %request_id,
        tenant_id = tenant.as_deref().unwrap_or("-"),
        "request"
    );
    resp
}

/// Every error leaves as problem+json carrying the request id, whoever produced it.
async fn normalize_error(resp: Response<Body>, request_id: &str) -> Response<Body> {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let is_problem = content_type.starts_with(PROBLEM_JSON.as_bytes());
    if !is_problem && content_type.starts_with(b"application/json") {
        // A deliberate JSON body, e.g. `/ready`'s 503 document in the guide's shape.
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let mut value = if is_problem {
        match to_bytes(body, MAX_PROBLEM_BODY).await {
            Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes).ok(),
            Err(_) => None,
        }
    } else {
        None
    }
    .unwrap_or_else(|| serde_json::to_value(problem_for_status(status)).unwrap_or_default());
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "request_id".into(),
            serde_json::Value::String(request_id.to_string()),
        );
    }
    let body = serde_json::to_vec(&value).unwrap_or_default();
    let mut out = Response::new(Body::from(body));
    // Keep the original headers (Retry-After, WWW-Authenticate, Allow, rate-limit headers).
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    *out.status_mut() = status;
    *out.extensions_mut() = parts.extensions;
    out
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId(uuid::Uuid::new_v4().simple().to_string())))
    }
}
