//! The HTTP surface: routes, and the layers every request passes through.

pub mod api_keys;
pub mod audit_logs;
pub mod auth;
pub mod docs;
pub mod evaluate;
pub mod extract;
pub mod identity;
pub mod observe;
pub mod ops;
pub mod status;
pub mod templates;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::routing::{get, post};
use axum::{middleware, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;

use crate::state::AppState;

/// Builds the full application router for a given state.
pub fn router(state: AppState) -> Router {
    let config = state.config().clone();

    // Everything under /v1 is authenticated (or IP-limited when anonymous) by one layer.
    let v1 = Router::new()
        .route("/v1/status", get(status::status))
        .route("/v1/auth/signup", post(identity::signup))
        .route("/v1/auth/login", post(identity::login))
        .route("/v1/auth/refresh", post(identity::refresh))
        .route("/v1/auth/logout", post(identity::logout))
        .route("/v1/auth/me", get(identity::me))
        .route("/v1/auth/change-password", post(identity::change_password))
        .route("/v1/api-keys", post(api_keys::create).get(api_keys::list))
        .route("/v1/api-keys/{id}", axum::routing::delete(api_keys::revoke))
        .route("/v1/api-keys/{id}/rotate", post(api_keys::rotate))
        .route("/v1/audit-logs", get(audit_logs::list))
        .route("/v1/evaluate", post(evaluate::evaluate))
        .route("/v1/evaluate/batch", post(evaluate::evaluate_batch))
        .route("/v1/evaluations", get(evaluate::list))
        .route("/v1/evaluations/{id}", get(evaluate::get))
        .route("/v1/evaluations/{id}/feedback", post(evaluate::feedback))
        .merge(templates::routes())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::middleware,
        ));

    // Probes and metrics are never authenticated nor limited.
    let mut app = Router::new()
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .merge(v1);
    if config.enable_docs {
        app = app.merge(docs::routes());
    }

    let mut app = app
        .fallback(|| async { StatusCode::NOT_FOUND })
        .route_layer(middleware::from_fn(observe::tag_matched_route))
        .with_state(state)
        // Enforced on bytes actually read, so chunked bodies without Content-Length are
        // bounded too; a declared Content-Length over the limit is refused before reading.
        .layer(DefaultBodyLimit::max(config.max_request_body_size))
        .layer(axum::Extension(extract::BodyLimit(
            config.max_request_body_size,
        )))
        .layer(RequestBodyLimitLayer::new(config.max_request_body_size))
        .layer(CatchPanicLayer::new());
    if let Some(cors) = cors_layer(&config.allowed_origins) {
        app = app.layer(cors);
    }
    app.layer(middleware::from_fn(observe::observe))
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                HeaderName::from_static("x-api-key"),
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("x-ratelimit-limit"),
                HeaderName::from_static("x-ratelimit-remaining"),
                HeaderName::from_static("x-ratelimit-reset"),
                header::RETRY_AFTER,
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}
