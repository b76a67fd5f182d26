//! The HTTP API: routes of DESIGN.md §3 under `/api/v1`, the OpenAPI
//! document, Swagger UI and the bearer API key check.

pub mod models;
pub mod problem;

use std::sync::Arc;

use poem::{
    EndpointExt, Request, Route,
    middleware::{NormalizePath, TrailingSlash},
};
use poem_openapi::{ApiResponse, OpenApi, OpenApiService, SecurityScheme, auth::Bearer, param::Path, payload::Json};

use crate::{crypto, error::AppError, integrations::Integrations};
use models::*;
use problem::ApiError;

/// SHA-256 of the API key; the key itself is never kept.
pub struct ApiKeyHash(pub String);

/// `Authorization: Bearer <api key>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check_api_key")]
pub struct ApiKey(());

async fn check_api_key(req: &Request, bearer: Bearer) -> Option<()> {
    let expected = req.data::<Arc<ApiKeyHash>>()?;
    crypto::constant_time_eq(&crypto::hash_api_key(&bearer.token), &expected.0).then_some(())
}

#[derive(poem_openapi::Tags)]
enum ApiTags {
    /// Server status.
    Meta,
    /// Loaded connectors and stateless verification.
    Providers,
    /// Connected accounts.
    Integrations,
}

type ApiResult<T> = Result<T, ApiError>;

#[derive(ApiResponse)]
pub enum ConnectResponse {
    /// A new integration.
    #[oai(status = 201)]
    Created(Json<Integration>, #[oai(header = "Location")] String),
    /// The account was already connected; its credentials were replaced.
    #[oai(status = 200)]
    Replaced(Json<Integration>),
}

#[derive(ApiResponse)]
pub enum Deleted {
    /// Disconnected; the stored secret is erased.
    #[oai(status = 204)]
    NoContent,
}

pub struct Api {
    integrations: Arc<Integrations>,
}

fn integration(row: crate::store::IntegrationRow) -> ApiResult<Json<Integration>> {
    Ok(Json(Integration::try_from(row)?))
}

#[OpenApi(prefix_path = "/api/v1")]
impl Api {
    /// Liveness and the loaded connectors. No API key needed.
    #[oai(path = "/health", method = "get", tag = "ApiTags::Meta")]
    async fn health(&self) -> Json<Health> {
        Json(Health {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            plugins: self.integrations.plugins().iter().map(|p| p.manifest.id.clone()).collect(),
        })
    }

    /// Every loaded connector's manifest.
    #[oai(path = "/providers", method = "get", tag = "ApiTags::Providers")]
    async fn providers(&self, _auth: ApiKey) -> Json<ProviderList> {
        Json(ProviderList { providers: self.integrations.plugins().iter().map(|p| p.as_ref().into()).collect() })
    }

    /// One connector's manifest.
    #[oai(path = "/providers/:provider_id", method = "get", tag = "ApiTags::Providers")]
    async fn provider(&self, _auth: ApiKey, provider_id: Path<String>) -> ApiResult<Json<ProviderManifest>> {
        Ok(Json(self.integrations.plugin(&provider_id)?.as_ref().into()))
    }

    /// Verify credentials without storing anything. Answers 200 whenever the
    /// provider gave a verdict on the token, valid or not.
    #[oai(path = "/providers/:provider_id/verify", method = "post", tag = "ApiTags::Providers")]
    async fn verify(
        &self,
        _auth: ApiKey,
        provider_id: Path<String>,
        body: Json<VerifyRequest>,
    ) -> ApiResult<Json<VerificationResult>> {
        let verdict = self.integrations.verify(&provider_id, credential_strings(body.0.credentials)?).await?;
        Ok(Json(verdict.into()))
    }

    /// Re-read the plugins directory now: added, replaced and removed
    /// components take effect; a broken file is refused and the version it
    /// would replace keeps serving.
    #[oai(path = "/plugins/reload", method = "post", tag = "ApiTags::Providers")]
    async fn reload(&self, _auth: ApiKey) -> ApiResult<Json<ReloadResult>> {
        let report = self.integrations.reload_plugins().await.map_err(|e| AppError::Validation(format!("{e}.")))?;
        Ok(Json(ReloadResult {
            plugins: self.integrations.plugins().iter().map(|p| p.manifest.id.clone()).collect(),
            loaded: report.loaded,
            unloaded: report.unloaded,
            refused: report.refused.into_iter().map(|(file, error)| RefusedPlugin { file, error }).collect(),
        }))
    }

    /// Verify and store credentials. Connecting an account that is already
    /// connected (same provider and base URL) replaces its credentials.
    #[oai(path = "/integrations", method = "post", tag = "ApiTags::Integrations")]
    async fn connect(&self, _auth: ApiKey, body: Json<ConnectRequest>) -> ApiResult<ConnectResponse> {
        let ConnectRequest { provider, credentials, label } = body.0;
        let (row, created) = self.integrations.connect(&provider, credential_strings(credentials)?, label).await?;
        let location = format!("/api/v1/integrations/{}", row.id);
        let body = integration(row)?;
        Ok(if created { ConnectResponse::Created(body, location) } else { ConnectResponse::Replaced(body) })
    }

    /// All integrations. Never includes secrets.
    #[oai(path = "/integrations", method = "get", tag = "ApiTags::Integrations")]
    async fn list(&self, _auth: ApiKey) -> ApiResult<Json<IntegrationList>> {
        let rows = self.integrations.list().await?;
        let integrations = rows.into_iter().map(Integration::try_from).collect::<Result<_, AppError>>()?;
        Ok(Json(IntegrationList { integrations }))
    }

    /// One integration.
    #[oai(path = "/integrations/:id", method = "get", tag = "ApiTags::Integrations")]
    async fn get(&self, _auth: ApiKey, id: Path<uuid::Uuid>) -> ApiResult<Json<Integration>> {
        integration(self.integrations.get(&id.0.to_string()).await?)
    }

    /// Disconnect: the integration and its sealed secret are erased.
    #[oai(path = "/integrations/:id", method = "delete", tag = "ApiTags::Integrations")]
    async fn delete(&self, _auth: ApiKey, id: Path<uuid::Uuid>) -> ApiResult<Deleted> {
        self.integrations.delete(&id.0.to_string()).await?;
        Ok(Deleted::NoContent)
    }

    /// Re-verify the stored credentials and update the status.
    #[oai(path = "/integrations/:id/verify", method = "post", tag = "ApiTags::Integrations")]
    async fn reverify(&self, _auth: ApiKey, id: Path<uuid::Uuid>) -> ApiResult<Json<Integration>> {
        integration(self.integrations.reverify(&id.0.to_string()).await?)
    }

    /// Rotate: verify a new token for the same account and replace the old one.
    #[oai(path = "/integrations/:id/credentials", method = "put", tag = "ApiTags::Integrations")]
    async fn rotate(
        &self,
        _auth: ApiKey,
        id: Path<uuid::Uuid>,
        body: Json<RotateRequest>,
    ) -> ApiResult<Json<Integration>> {
        integration(self.integrations.rotate(&id.0.to_string(), credential_strings(body.0.credentials)?).await?)
    }
}

/// The settings page and its assets, embedded: no CDN, no external network.
fn page(content_type: &'static str, body: &'static str) -> poem::Response {
    poem::Response::builder()
        .content_type(content_type)
        .header("Content-Security-Policy", "default-src 'self'; img-src 'self' https: data:; frame-ancestors 'none'")
        .header("X-Content-Type-Options", "nosniff")
        .header("Referrer-Policy", "no-referrer")
        .body(body)
}

#[poem::handler]
fn index() -> poem::Response {
    page("text/html; charset=utf-8", include_str!("page/index.html"))
}

#[poem::handler]
fn script() -> poem::Response {
    page("text/javascript; charset=utf-8", include_str!("page/settings.js"))
}

#[poem::handler]
fn stylesheet() -> poem::Response {
    page("text/css; charset=utf-8", include_str!("page/settings.css"))
}

/// Reads at most `max` bytes of any body (with or without Content-Length)
/// before a handler sees it, so an oversized request cannot tie up memory.
async fn limit_body<E: poem::Endpoint>(ep: Arc<E>, mut req: Request, max: usize) -> poem::Result<poem::Response> {
    let body = req.take_body();
    if !body.is_empty() {
        let bytes = body.into_bytes_limit(max).await?;
        req.set_body(bytes);
    }
    ep.call(req).await.map(poem::IntoResponse::into_response)
}

pub fn routes(integrations: Arc<Integrations>, api_key_hash: String, max_body_bytes: usize) -> impl poem::Endpoint {
    let service = OpenApiService::new(Api { integrations }, "Gatehouse", env!("CARGO_PKG_VERSION"))
        .description("Connect provider accounts (GitLab first) through sandboxed WebAssembly connectors.");
    let spec = service.spec_endpoint();
    let docs = service.swagger_ui();
    Route::new()
        .at("/", poem::get(index))
        .at("/assets/settings.js", poem::get(script))
        .at("/assets/settings.css", poem::get(stylesheet))
        .at("/api/openapi.json", spec)
        .nest("/docs", docs)
        .nest_no_strip("/api/v1", service.around(move |ep, req| limit_body(ep, req, max_body_bytes)))
        .data(Arc::new(ApiKeyHash(api_key_hash)))
        .with(NormalizePath::new(TrailingSlash::Trim))
        .catch_all_error(problem::render)
        .around(log_request)
}

/// One log line per request: method, path, status, duration. Never bodies,
/// queries, headers or error texts, which may hold credentials.
async fn log_request<E: poem::Endpoint>(ep: Arc<E>, req: Request) -> poem::Result<poem::Response> {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let started = std::time::Instant::now();
    let response = ep.call(req).await.map(poem::IntoResponse::into_response)?;
    tracing::info!(%method, %path, status = response.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    Ok(response)
}
