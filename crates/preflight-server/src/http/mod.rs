//! The HTTP surface: routes, and the layers every request passes through.

pub mod alerts;
pub mod analytics;
pub mod api_keys;
pub mod audit_logs;
pub mod auth;
pub mod docs;
pub mod evaluate;
pub mod extract;
pub mod identity;
pub mod observe;
pub mod ops;
pub mod review;
pub mod status;
pub mod suggestions;
pub mod templates;
pub mod webhooks;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::{middleware, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// Every route of the API, declared once: its path and method come from the handler's
/// `#[utoipa::path]`, which is also what the OpenAPI description shows. Returns the probes
/// (never authenticated) and the `/v1` routes (behind the auth middleware).
pub fn routes() -> (OpenApiRouter<AppState>, OpenApiRouter<AppState>) {
    let probes = OpenApiRouter::default()
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::metrics));
    let v1 = OpenApiRouter::default()
        .routes(routes!(status::status))
        .routes(routes!(identity::signup))
        .routes(routes!(identity::login))
        .routes(routes!(identity::refresh))
        .routes(routes!(identity::logout))
        .routes(routes!(identity::me))
        .routes(routes!(identity::change_password))
        .routes(routes!(api_keys::create, api_keys::list))
        .routes(routes!(api_keys::revoke))
        .routes(routes!(api_keys::rotate))
        .routes(routes!(audit_logs::list))
        .routes(routes!(evaluate::evaluate))
        .routes(routes!(evaluate::evaluate_batch))
        .routes(routes!(evaluate::list))
        .routes(routes!(evaluate::get))
        .routes(routes!(evaluate::feedback))
        .routes(routes!(templates::create, templates::list))
        .routes(routes!(templates::export))
        .routes(routes!(
            templates::get_one,
            templates::update,
            templates::deprecate
        ))
        .routes(routes!(templates::set_status))
        .routes(routes!(templates::add_exemplar))
        .routes(routes!(templates::drift))
        .routes(routes!(templates::from_evaluation))
        .routes(routes!(alerts::create_rule, alerts::list_rules))
        .routes(routes!(
            alerts::get_rule,
            alerts::update_rule,
            alerts::delete_rule
        ))
        .routes(routes!(alerts::list_alerts))
        .routes(routes!(alerts::get_alert))
        .routes(routes!(alerts::acknowledge))
        .routes(routes!(alerts::resolve))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::get, webhooks::update, webhooks::delete))
        .routes(routes!(webhooks::test))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::delivery))
        .routes(routes!(webhooks::redeliver))
        .routes(routes!(webhooks::redeliver_range))
        .routes(routes!(analytics::summary))
        .routes(routes!(analytics::timeseries))
        .routes(routes!(analytics::extractors))
        .routes(routes!(analytics::templates))
        .routes(routes!(analytics::calibration))
        .routes(routes!(analytics::usage))
        .routes(routes!(review::list))
        .routes(routes!(review::claim_next))
        .routes(routes!(review::bulk_resolve))
        .routes(routes!(review::get))
        .routes(routes!(review::claim))
        .routes(routes!(review::release))
        .routes(routes!(review::resolve))
        .routes(routes!(suggestions::list))
        .routes(routes!(suggestions::accept))
        .routes(routes!(suggestions::dismiss));
    (probes, v1)
}

/// Builds the full application router for a given state.
pub fn router(state: AppState) -> Router {
    let config = state.config().server.clone();

    let (probes, v1) = routes();
    // Everything under /v1 is authenticated (or IP-limited when anonymous) by one layer.
    let v1 = v1
        .split_for_parts()
        .0
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::middleware,
        ));

    // Probes and metrics are never authenticated nor limited.
    let mut app = probes.split_for_parts().0.merge(v1);
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
