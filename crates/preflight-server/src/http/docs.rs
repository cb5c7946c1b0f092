//! `/openapi.json` generated from the code, and `/docs`, an interactive page whose assets are
//! compiled into the binary (nothing is fetched at build or run time).

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use utoipa::OpenApi;

use crate::app::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "preflight",
        description = "Layout-template governance for document-extraction pipelines: \
                       MATCH / REVIEW / NEW / REJECT from layout metadata only."
    ),
    paths(super::ops::health, super::ops::ready, super::ops::metrics),
    components(schemas(crate::error::Problem, crate::error::FieldError)),
    tags((name = "operations", description = "Probes and metrics"))
)]
pub struct ApiDoc;

/// The whole OpenAPI description, as served.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

const DOCS_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, DOCS_CSP),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(|| async { axum::Json(openapi()) }))
        .route(
            "/docs",
            get(|| async {
                asset(
                    "text/html; charset=utf-8",
                    include_bytes!("../../assets/swagger-ui/index.html"),
                )
            }),
        )
        .route(
            "/docs/swagger-ui.css",
            get(|| async {
                asset(
                    "text/css; charset=utf-8",
                    include_bytes!("../../assets/swagger-ui/swagger-ui.css"),
                )
            }),
        )
        .route(
            "/docs/swagger-ui-bundle.js",
            get(|| async {
                asset(
                    "text/javascript; charset=utf-8",
                    include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js"),
                )
            }),
        )
        .route(
            "/docs/init.js",
            get(|| async {
                asset(
                    "text/javascript; charset=utf-8",
                    include_bytes!("../../assets/swagger-ui/init.js"),
                )
            }),
        )
}
