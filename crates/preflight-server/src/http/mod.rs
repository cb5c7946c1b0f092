//! The HTTP surface: routes, and the layers every request passes through.

pub mod docs;
pub mod observe;
pub mod ops;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::routing::get;
use axum::{middleware, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;

use crate::app::AppState;

/// Builds the full application router for a given state.
pub fn router(state: AppState) -> Router {
    let config = state.config().clone();

    let mut app = Router::new()
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics));
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
