//! The HTTP API: the routes under `/api/v1` (README: API), the OpenAPI
//! document, Swagger UI; each route states and checks the role it needs
//! (`auth` resolves the API key), `observe` gives every request its id.

pub mod auth;
mod embed;
pub mod models;
pub mod observe;
pub mod problem;
pub mod session;
mod spec;

use std::{sync::Arc, time::Duration};

use poem::{
    EndpointExt, Request, Route,
    middleware::{NormalizePath, TrailingSlash},
};
use poem_openapi::{
    ApiResponse, OpenApi, OpenApiService,
    param::{Path, Query},
    payload::Json,
};

use crate::{
    error::AppError,
    services::{
        Services,
        actions::Actions,
        api_keys::ApiKeys,
        audit::{Audit, AuditQuery},
        expiry::Expiry,
        grants::{Grants, OAuthAppInput, not_refreshable_sentence},
        integrations::Integrations,
        oauth::{CallbackParams, OAuthFlow, browser_cookie_name},
        proxy::{Proxy, ProxyRequest},
        syncs::Syncs,
        webhooks::Webhooks,
    },
    store::{IntegrationRow, api_keys::Role},
};
use auth::ApiKey;
use models::*;
use problem::ApiError;
use session::PageCaller;

#[derive(poem_openapi::Tags)]
enum ApiTags {
    /// Server status.
    Meta,
    /// Loaded connectors and stateless verification.
    Providers,
    /// Connected accounts.
    Integrations,
    /// OAuth 2.0: applications, authorization and callback.
    #[oai(rename = "OAuth")]
    OAuth,
    /// Using a connection: typed actions (and the proxy, described in the README).
    Use,
    /// Syncs: mirrored data, the change feed and webhooks.
    Syncs,
    /// API keys and the audit log.
    Access,
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
pub enum SaveAppResponse {
    /// A new OAuth application.
    #[oai(status = 201)]
    Created(Json<OAuthApp>),
    /// The application of this provider and base URL was replaced.
    #[oai(status = 200)]
    Replaced(Json<OAuthApp>),
}

#[derive(ApiResponse)]
pub enum AuthorizeResponse {
    /// Go to the provider's authorization page. `Set-Cookie` binds the
    /// flow to this browser (unless `bind_browser=false`).
    #[oai(status = 302)]
    Redirect(
        #[oai(header = "Location")] String,
        #[oai(header = "Cache-Control")] String,
        #[oai(header = "Set-Cookie")] Option<String>,
    ),
    /// With `redirect=false`: the URL to open, for clients that cannot follow a redirect (Swagger UI, scripts).
    #[oai(status = 200)]
    Url(Json<AuthorizeResult>, #[oai(header = "Set-Cookie")] Option<String>),
}

#[derive(ApiResponse)]
pub enum CallbackResponse {
    /// Connected; back to the settings page with the integration id.
    #[oai(status = 302)]
    Connected(
        #[oai(header = "Location")] String,
        #[oai(header = "Cache-Control")] String,
        #[oai(header = "Set-Cookie")] Option<String>,
    ),
}

#[derive(ApiResponse)]
pub enum Deleted {
    /// Disconnected; the stored secret is erased.
    #[oai(status = 204)]
    NoContent,
}

#[derive(Clone)]
pub struct Api {
    integrations: Arc<Integrations>,
    grants: Arc<Grants>,
    oauth: Arc<OAuthFlow>,
    actions: Arc<Actions>,
    syncs: Arc<Syncs>,
    webhooks: Arc<Webhooks>,
    api_keys: Arc<ApiKeys>,
    audit: Arc<Audit>,
    expiry: Arc<Expiry>,
}

#[derive(ApiResponse)]
pub enum RunResponse {
    /// The run is due now; `GET …/syncs` shows its progress.
    #[oai(status = 202)]
    Accepted(Json<Sync>),
}

#[derive(ApiResponse)]
pub enum ApiKeyCreated {
    /// Created; the key is shown only here.
    #[oai(status = 201)]
    Created(Json<CreatedApiKey>),
}

#[derive(ApiResponse)]
pub enum WebhookCreated {
    /// Registered; the secret is shown only here.
    #[oai(status = 201)]
    Created(Json<CreatedWebhook>),
}

impl Api {
    /// The integration as served: a note when an OAuth connector's
    /// integration cannot be refreshed.
    fn body(&self, row: IntegrationRow) -> Result<Integration, AppError> {
        let provider = row.provider.clone();
        let plugin = self.integrations.plugin_of(&row);
        let warning = self.expiry.warning(&row);
        let mut body = Integration::try_from(row)?;
        match plugin {
            Err(e) => {
                body.status = Status::ProviderUnavailable;
                body.last_error = Some(e.problem());
            }
            Ok(plugin) => body.rotatable = plugin.can_rotate(),
        }
        if let (Some(warning), Status::Connected) = (warning, body.status) {
            body.status = Status::Expiring;
            body.expiry_warning = Some(warning);
        }
        let oauth = self.integrations.plugin(&provider).is_ok_and(|p| p.manifest.oauth.is_some());
        if oauth && !body.refreshable {
            body.refresh_note = Some(not_refreshable_sentence(&provider));
        }
        Ok(body)
    }

    fn integration(&self, row: IntegrationRow) -> ApiResult<Json<Integration>> {
        Ok(Json(self.body(row)?))
    }
}

#[OpenApi(prefix_path = "/api/v1")]
impl Api {
    /// Liveness: needs no API key and then says only that the server is
    /// up. With the API key it also gives the version and the loaded
    /// connectors.
    #[oai(path = "/health", method = "get", tag = "ApiTags::Meta")]
    async fn health(&self, req: &Request) -> Json<Health> {
        let details = auth::caller(req).is_some();
        Json(Health {
            status: "ok".into(),
            version: details.then(|| env!("CARGO_PKG_VERSION").into()),
            plugins: details.then(|| self.integrations.plugins().iter().map(|p| p.manifest.id.clone()).collect()),
        })
    }

    /// Readiness, apart from liveness (`/health`): needs no API key; 200
    /// when the database answers, every migration of this version is
    /// applied and the connectors are loaded, else 503
    /// `database_unavailable`. Take a process out of a load balancer while
    /// it is not ready; restart it only when `/health` fails.
    #[oai(path = "/ready", method = "get", tag = "ApiTags::Meta")]
    async fn ready(&self) -> ApiResult<Json<Readiness>> {
        let (database, connectors) = self.integrations.ready().await?;
        Ok(Json(Readiness { status: "ready".into(), database: database.into(), connectors: connectors as u64 }))
    }

    /// Every loaded connector's manifest.
    ///
    /// Role: reader.
    #[oai(path = "/providers", method = "get", tag = "ApiTags::Providers")]
    async fn providers(&self, auth: PageCaller) -> ApiResult<Json<ProviderList>> {
        auth.require(Role::Reader)?;
        let access = auth.access();
        let plugins = self.integrations.plugins();
        let allowed = plugins.iter().filter(|p| access.check_provider(&p.manifest.id).is_ok());
        Ok(Json(ProviderList { providers: allowed.map(|p| p.as_ref().into()).collect() }))
    }

    /// One connector's manifest.
    ///
    /// Role: reader.
    #[oai(path = "/providers/:provider_id", method = "get", tag = "ApiTags::Providers")]
    async fn provider(&self, auth: PageCaller, provider_id: Path<String>) -> ApiResult<Json<ProviderManifest>> {
        auth.access().check_provider(&provider_id)?;
        auth.require(Role::Reader)?;
        Ok(Json(self.integrations.plugin(&provider_id)?.as_ref().into()))
    }

    /// Verify credentials without storing anything. Answers 200 whenever the
    /// provider gave a verdict on the token, valid or not.
    ///
    /// Role: operator.
    #[oai(path = "/providers/:provider_id/verify", method = "post", tag = "ApiTags::Providers")]
    async fn verify(
        &self,
        auth: PageCaller,
        provider_id: Path<String>,
        body: Json<VerifyRequest>,
    ) -> ApiResult<Json<VerificationResult>> {
        auth.require(Role::Operator)?;
        let (verdict, reach) = self.integrations.verify(&auth.access(), &provider_id, body.0.credentials.0).await?;
        let mut result = VerificationResult::from(verdict);
        result.reach = reach.map(Into::into);
        Ok(Json(result))
    }

    /// The loaded connectors and the files of the plugins directory that
    /// are refused, with the reason.
    ///
    /// Role: reader.
    #[oai(path = "/plugins", method = "get", tag = "ApiTags::Providers")]
    async fn plugins(&self, auth: ApiKey) -> ApiResult<Json<PluginsStatus>> {
        auth.require(Role::Reader)?;
        Ok(Json(PluginsStatus {
            loaded: self.integrations.plugins().iter().map(|p| p.as_ref().into()).collect(),
            refused: self
                .integrations
                .refused_plugins()
                .into_iter()
                .map(|(file, error)| RefusedPlugin { file, error })
                .collect(),
        }))
    }

    /// Re-read the plugins directory now: added, replaced and removed
    /// components take effect; a broken file is refused and the version it
    /// would replace keeps serving.
    ///
    /// Role: admin.
    #[oai(path = "/plugins/reload", method = "post", tag = "ApiTags::Providers")]
    async fn reload(&self, auth: ApiKey) -> ApiResult<Json<ReloadResult>> {
        auth.require(Role::Admin)?;
        let report = self.integrations.reload_plugins().await.map_err(|e| AppError::Validation(format!("{e}.")))?;
        Ok(Json(ReloadResult {
            plugins: self.integrations.plugins().iter().map(|p| p.manifest.id.clone()).collect(),
            loaded: report.loaded,
            unloaded: report.unloaded,
            refused: report.refused.into_iter().map(|(file, error)| RefusedPlugin { file, error }).collect(),
        }))
    }

    /// Verify and store credentials. Connecting an account that is already
    /// connected (same provider and base URL) for the same end user
    /// replaces its credentials. With a connect session the connection is
    /// the session's end user's.
    ///
    /// Role: operator.
    #[oai(path = "/integrations", method = "post", tag = "ApiTags::Integrations")]
    async fn connect(&self, auth: PageCaller, body: Json<ConnectRequest>) -> ApiResult<ConnectResponse> {
        auth.require(Role::Operator)?;
        let ConnectRequest { provider, credentials, label, end_user_id, end_user_name, end_user_email, organization } =
            body.0;
        let owner = crate::store::Owner { end_user_id, end_user_name, end_user_email, organization };
        let (row, created) = self.integrations.connect(&auth.access(), &provider, credentials.0, label, owner).await?;
        let location = format!("/api/v1/integrations/{}", row.id);
        let body = self.integration(row)?;
        Ok(if created { ConnectResponse::Created(body, location) } else { ConnectResponse::Replaced(body) })
    }

    /// All integrations, or one end user's and/or organization's. Never
    /// includes secrets. A connect session lists its own end user's.
    ///
    /// Role: reader.
    #[oai(path = "/integrations", method = "get", tag = "ApiTags::Integrations")]
    async fn list(
        &self,
        auth: PageCaller,
        /// Only this end user's connections.
        end_user_id: Query<Option<String>>,
        /// Only connections with this organization tag.
        organization: Query<Option<String>>,
    ) -> ApiResult<Json<IntegrationList>> {
        auth.require(Role::Reader)?;
        let rows = self.integrations.list(&auth.access(), end_user_id.0, organization.0).await?;
        let integrations = rows.into_iter().map(|r| self.body(r)).collect::<Result<_, AppError>>()?;
        Ok(Json(IntegrationList { integrations }))
    }

    /// One integration.
    ///
    /// Role: reader.
    #[oai(path = "/integrations/:id", method = "get", tag = "ApiTags::Integrations")]
    async fn get(&self, auth: PageCaller, id: Path<uuid::Uuid>) -> ApiResult<Json<Integration>> {
        auth.require(Role::Reader)?;
        self.integration(self.integrations.owned(&auth.access(), &id.0.to_string()).await?)
    }

    /// Disconnect: the integration and its sealed secret are erased.
    ///
    /// Role: operator.
    #[oai(path = "/integrations/:id", method = "delete", tag = "ApiTags::Integrations")]
    async fn delete(&self, auth: PageCaller, id: Path<uuid::Uuid>) -> ApiResult<Deleted> {
        auth.require(Role::Operator)?;
        self.integrations.delete(&auth.access(), &id.0.to_string()).await?;
        Ok(Deleted::NoContent)
    }

    /// Re-verify the stored credentials and update the status.
    ///
    /// Role: operator.
    #[oai(path = "/integrations/:id/verify", method = "post", tag = "ApiTags::Integrations")]
    async fn reverify(&self, auth: PageCaller, id: Path<uuid::Uuid>) -> ApiResult<Json<Integration>> {
        auth.require(Role::Operator)?;
        self.integration(self.integrations.reverify(&auth.access(), &id.0.to_string()).await?)
    }

    /// Refresh the access token now with the stored refresh token (OAuth
    /// integrations). A refused refresh token marks the integration
    /// `expired` (200); 409 when there is no refresh token.
    ///
    /// Role: operator.
    #[oai(path = "/integrations/:id/refresh", method = "post", tag = "ApiTags::Integrations")]
    async fn refresh(&self, auth: ApiKey, id: Path<uuid::Uuid>) -> ApiResult<Json<Integration>> {
        auth.require(Role::Operator)?;
        self.integration(self.grants.refresh(&id.0.to_string()).await?)
    }

    /// OAuth applications (client secrets are never returned).
    ///
    /// Role: operator.
    #[oai(path = "/oauth-apps", method = "get", tag = "ApiTags::OAuth")]
    async fn oauth_apps(&self, auth: ApiKey) -> ApiResult<Json<OAuthAppList>> {
        auth.require(Role::Operator)?;
        let rows = self.grants.apps().await?;
        let oauth_apps = rows.into_iter().map(OAuthApp::try_from).collect::<Result<_, AppError>>()?;
        Ok(Json(OAuthAppList { oauth_apps }))
    }

    /// Add the OAuth application registered with a provider for one base
    /// URL; the same provider and base URL again replaces it.
    ///
    /// Role: admin.
    #[oai(path = "/oauth-apps", method = "post", tag = "ApiTags::OAuth")]
    async fn save_oauth_app(&self, auth: ApiKey, body: Json<OAuthAppRequest>) -> ApiResult<SaveAppResponse> {
        auth.require(Role::Admin)?;
        let OAuthAppRequest { provider, base_url, client_id, client_secret, redirect_uri } = body.0;
        let input = OAuthAppInput { provider, base_url, client_id, client_secret: client_secret.into(), redirect_uri };
        let (row, created) = self.grants.save_app(input, "api").await?;
        let app = Json(OAuthApp::try_from(row)?);
        Ok(if created { SaveAppResponse::Created(app) } else { SaveAppResponse::Replaced(app) })
    }

    /// One OAuth application.
    ///
    /// Role: operator.
    #[oai(path = "/oauth-apps/:id", method = "get", tag = "ApiTags::OAuth")]
    async fn oauth_app(&self, auth: ApiKey, id: Path<uuid::Uuid>) -> ApiResult<Json<OAuthApp>> {
        auth.require(Role::Operator)?;
        Ok(Json(OAuthApp::try_from(self.grants.app(&id.0.to_string()).await?)?))
    }

    /// Remove an OAuth application; its secret is erased. Integrations made
    /// with it stay but cannot be refreshed until it is added again.
    ///
    /// Role: admin.
    #[oai(path = "/oauth-apps/:id", method = "delete", tag = "ApiTags::OAuth")]
    async fn delete_oauth_app(&self, auth: ApiKey, id: Path<uuid::Uuid>) -> ApiResult<Deleted> {
        auth.require(Role::Admin)?;
        self.grants.delete_app(&id.0.to_string()).await?;
        Ok(Deleted::NoContent)
    }

    /// Start connecting through OAuth: answers 302 to the provider's
    /// authorization page (state and PKCE S256 challenge included). The
    /// state is single-use and expires after 10 minutes by default.
    ///
    /// Role: operator.
    #[oai(path = "/oauth/:provider_id/authorize", method = "get", tag = "ApiTags::OAuth")]
    async fn authorize(
        &self,
        auth: PageCaller,
        provider_id: Path<String>,
        /// The provider instance; default: the provider's default base URL.
        base_url: Query<Option<String>>,
        /// A name for the integration to be created.
        label: Query<Option<String>>,
        /// `false` answers 200 with the URL instead of redirecting.
        redirect: Query<Option<bool>>,
        /// `false` for an API client that hands the URL to a browser it
        /// does not control: the callback then needs no cookie, and the
        /// single-use state is the only proof (README: OAuth).
        bind_browser: Query<Option<bool>>,
    ) -> ApiResult<AuthorizeResponse> {
        auth.require(Role::Operator)?;
        // A session's flow is always bound to the browser: its end user
        // must not be able to hand an approval link to someone else.
        let bind = bind_browser.0.unwrap_or(true) || matches!(auth, PageCaller::Session(_));
        let auth = self.oauth.authorize(&auth.access(), &provider_id, base_url.0.as_deref(), label.0, bind).await?;
        let secure = self.grants.public_url_is_https();
        let cookie = auth.browser_cookie.map(|c| {
            let ttl = auth.expires_at.unix() - crate::clock::Timestamp::now().unix();
            browser_cookie(&c.name, secrecy::ExposeSecret::expose_secret(&c.value), ttl.max(0), secure)
        });
        Ok(if redirect.0.unwrap_or(true) {
            AuthorizeResponse::Redirect(auth.url, "no-store".into(), cookie)
        } else {
            AuthorizeResponse::Url(
                Json(AuthorizeResult { authorize_url: auth.url, expires_at: auth.expires_at.to_string() }),
                cookie,
            )
        })
    }

    /// Where the provider sends the browser back. Needs no API key: the
    /// single-use state is the proof. Connects (or reconnects) the account
    /// and redirects to the settings page with `?connected=<id>`; a flow
    /// started from a connect session goes back to the session's page
    /// (`/settings`), also when it failed (`?failed=<code>`).
    #[oai(path = "/oauth/:provider_id/callback", method = "get", tag = "ApiTags::OAuth")]
    async fn callback(
        &self,
        req: &Request,
        provider_id: Path<String>,
        code: Query<Option<String>>,
        state: Query<Option<String>>,
        error: Query<Option<String>>,
        error_description: Query<Option<String>>,
    ) -> ApiResult<CallbackResponse> {
        let cookie_name = state.0.as_deref().map(browser_cookie_name);
        let browser = cookie_name.as_deref().and_then(|name| cookie(req, name)).map(Into::into);
        let params = CallbackParams {
            code: code.0.map(Into::into),
            state: state.0.map(Into::into),
            error: error.0,
            error_description: error_description.0,
            browser,
        };
        let outcome = self.oauth.callback(&provider_id, params).await;
        // The binding is spent with the state: the browser forgets it.
        let clear = cookie_name.map(|name| browser_cookie(&name, "", 0, self.grants.public_url_is_https()));
        let location = match (outcome.result, outcome.session_id.is_some()) {
            (Ok((row, _)), false) => format!("/?connected={}", row.id),
            (Ok((row, _)), true) => format!("/settings?connected={}", row.id),
            (Err(e), true) => format!("/settings?failed={}", e.code()),
            (Err(e), false) => return Err(e.into()),
        };
        Ok(CallbackResponse::Connected(location, "no-store".into(), clear))
    }

    /// Run a typed action of the integration's connector. The body is the
    /// action's input, validated against its JSON Schema (400
    /// `validation_error` with `pointer` naming the failing value); the
    /// answer is its output, validated against its schema. The connector
    /// never receives the stored credential: Gatehouse adds it to the
    /// connector's requests. `GET /api/v1/providers/{provider_id}` lists
    /// the actions and their schemas.
    ///
    /// Role: operator.
    #[oai(path = "/integrations/:id/actions/:name", method = "post", tag = "ApiTags::Use")]
    async fn action(
        &self,
        auth: ApiKey,
        id: Path<uuid::Uuid>,
        name: Path<String>,
        body: Json<serde_json::Value>,
    ) -> ApiResult<Json<serde_json::Value>> {
        auth.require(Role::Operator)?;
        Ok(Json(self.actions.run(&id.0.to_string(), &name.0, body.0).await?))
    }

    /// Sync state per model: enabled, interval, state (idle, running,
    /// failed, paused for a rate limit), last start and finish, what the
    /// last run added, updated and deleted, the last error, the next run.
    ///
    /// Role: reader.
    #[oai(path = "/integrations/:id/syncs", method = "get", tag = "ApiTags::Syncs")]
    async fn syncs(&self, auth: ApiKey, id: Path<uuid::Uuid>) -> ApiResult<Json<SyncList>> {
        auth.require(Role::Reader)?;
        let syncs = self.syncs.list(&id.0.to_string()).await?;
        Ok(Json(SyncList { syncs: syncs.into_iter().map(Sync::try_from).collect::<Result<_, AppError>>()? }))
    }

    /// Enable or disable one model's sync, or change its interval.
    ///
    /// Role: operator.
    #[oai(path = "/integrations/:id/syncs/:model", method = "patch", tag = "ApiTags::Syncs")]
    async fn configure_sync(
        &self,
        auth: ApiKey,
        id: Path<uuid::Uuid>,
        model: Path<String>,
        body: Json<SyncSettingsRequest>,
    ) -> ApiResult<Json<Sync>> {
        auth.require(Role::Operator)?;
        use poem_openapi::types::MaybeUndefined;
        let interval = match body.0.interval_seconds {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(v) => Some(Some(v)),
        };
        let status = self.syncs.configure(&id.0.to_string(), &model.0, body.0.enabled, interval).await?;
        Ok(Json(Sync::try_from(status)?))
    }

    /// Run one model's sync now (202); a run in progress or a rate-limit
    /// pause is not interrupted.
    ///
    /// Role: operator.
    #[oai(path = "/integrations/:id/syncs/:model/run", method = "post", tag = "ApiTags::Syncs")]
    async fn run_sync(&self, auth: ApiKey, id: Path<uuid::Uuid>, model: Path<String>) -> ApiResult<RunResponse> {
        auth.require(Role::Operator)?;
        let status = self.syncs.run_now(&id.0.to_string(), &model.0).await?;
        Ok(RunResponse::Accepted(Json(Sync::try_from(status)?)))
    }

    /// Start one model's sync over: its checkpoint and any interrupted run
    /// are forgotten and it runs now, reading everything again. Records
    /// stay; only those that differ are emitted again.
    ///
    /// Role: operator.
    #[oai(path = "/integrations/:id/syncs/:model/reset", method = "post", tag = "ApiTags::Syncs")]
    async fn reset_sync(&self, auth: ApiKey, id: Path<uuid::Uuid>, model: Path<String>) -> ApiResult<Json<Sync>> {
        auth.require(Role::Operator)?;
        let status = self.syncs.reset(&id.0.to_string(), &model.0).await?;
        Ok(Json(Sync::try_from(status)?))
    }

    /// Let the provider's webhooks trigger this connection's syncs: answers
    /// the URL and a new secret token to register at the provider (shown
    /// only here; asking again replaces the token). Deliveries go to
    /// `POST /api/v1/hooks/{id}`, which needs no API key: the token is the
    /// proof.
    ///
    /// Role: operator.
    #[oai(path = "/integrations/:id/inbound-webhook", method = "put", tag = "ApiTags::Syncs")]
    async fn enable_inbound(&self, auth: ApiKey, id: Path<uuid::Uuid>) -> ApiResult<Json<InboundWebhookSetup>> {
        auth.require(Role::Operator)?;
        let setup = self.syncs.enable_inbound(&id.0.to_string()).await?;
        Ok(Json(InboundWebhookSetup {
            url: setup.url,
            secret_token: secrecy::ExposeSecret::expose_secret(&setup.token).to_string(),
            token_header: setup.webhook.token_header,
            setup: setup.webhook.setup,
            events: setup.webhook.events.into_iter().map(|(event, model)| InboundEvent { event, model }).collect(),
        }))
    }

    /// Stop taking the provider's webhooks for this connection; its token
    /// is erased.
    ///
    /// Role: operator.
    #[oai(path = "/integrations/:id/inbound-webhook", method = "delete", tag = "ApiTags::Syncs")]
    async fn disable_inbound(&self, auth: ApiKey, id: Path<uuid::Uuid>) -> ApiResult<Deleted> {
        auth.require(Role::Operator)?;
        self.syncs.disable_inbound(&id.0.to_string()).await?;
        Ok(Deleted::NoContent)
    }

    /// The change feed: mirrored records in commit order, each with its
    /// last change (`added`, `updated`, `deleted`). Start without a cursor,
    /// then pass `next_cursor`; every change appears once.
    ///
    /// Role: reader.
    #[oai(path = "/integrations/:id/records", method = "get", tag = "ApiTags::Syncs")]
    async fn records(
        &self,
        auth: ApiKey,
        id: Path<uuid::Uuid>,
        /// One model; all models when left out.
        model: Query<Option<String>>,
        /// Where to continue: a `next_cursor` (or a record's `cursor`) from an earlier page.
        #[oai(validator(pattern = "^[0-9]{0,18}$"))]
        cursor: Query<Option<String>>,
        /// Records per page, 1 to 1000 (default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<u32>>,
        /// Only records changed after this RFC 3339 time.
        modified_after: Query<Option<time::OffsetDateTime>>,
    ) -> ApiResult<Json<RecordPage>> {
        auth.require(Role::Reader)?;
        let page = self
            .syncs
            .feed(&id.0.to_string(), model.0.as_deref(), cursor.0.as_deref(), limit.0, modified_after.0)
            .await?;
        let records = page.records.into_iter().map(RecordItem::try_from).collect::<Result<_, AppError>>()?;
        Ok(Json(RecordPage { records, next_cursor: page.next_cursor.to_string() }))
    }

    /// Register a webhook: a signed POST (Standard Webhooks) when a sync
    /// changes something or fails. The signing secret is in this answer only.
    ///
    /// Role: admin.
    #[oai(path = "/webhooks", method = "post", tag = "ApiTags::Syncs")]
    async fn create_webhook(&self, auth: ApiKey, body: Json<WebhookRequest>) -> ApiResult<WebhookCreated> {
        auth.require(Role::Admin)?;
        let (row, secret) = self.webhooks.create(&body.0.url).await?;
        let w = Webhook::try_from(row)?;
        Ok(WebhookCreated::Created(Json(CreatedWebhook {
            id: w.id,
            url: w.url,
            created_at: w.created_at,
            secret: secrecy::ExposeSecret::expose_secret(&secret).to_string(),
        })))
    }

    /// The registered webhooks (never their secrets).
    ///
    /// Role: operator.
    #[oai(path = "/webhooks", method = "get", tag = "ApiTags::Syncs")]
    async fn webhooks(&self, auth: ApiKey) -> ApiResult<Json<WebhookList>> {
        auth.require(Role::Operator)?;
        let rows = self.webhooks.list().await?;
        Ok(Json(WebhookList { webhooks: rows.into_iter().map(Webhook::try_from).collect::<Result<_, AppError>>()? }))
    }

    /// Remove a webhook; its secret and delivery log are erased.
    ///
    /// Role: admin.
    #[oai(path = "/webhooks/:id", method = "delete", tag = "ApiTags::Syncs")]
    async fn delete_webhook(&self, auth: ApiKey, id: Path<uuid::Uuid>) -> ApiResult<Deleted> {
        auth.require(Role::Admin)?;
        self.webhooks.delete(&id.0.to_string()).await?;
        Ok(Deleted::NoContent)
    }

    /// The delivery log of a webhook, newest first: every event, its
    /// attempts, the receiver's last status and when it is tried next.
    ///
    /// Role: operator.
    #[oai(path = "/webhooks/:id/deliveries", method = "get", tag = "ApiTags::Syncs")]
    async fn deliveries(&self, auth: ApiKey, id: Path<uuid::Uuid>) -> ApiResult<Json<DeliveryList>> {
        auth.require(Role::Operator)?;
        let rows = self.webhooks.deliveries(&id.0.to_string(), 200).await?;
        Ok(Json(DeliveryList {
            deliveries: rows.into_iter().map(Delivery::try_from).collect::<Result<_, AppError>>()?,
        }))
    }

    /// Regenerate the token at the provider: the connector asks the
    /// provider for a new token in place of the stored one (GitLab: the
    /// token rotates itself and the old one is revoked at once); the new
    /// one is sealed and stored, then verified. 409 `rotation_unsupported`
    /// when the connector cannot; 422 `insufficient_scope` when the token
    /// lacks the scope for it. To replace the token with one you paste,
    /// use `PUT /integrations/{id}/credentials`.
    ///
    /// Role: operator.
    #[oai(path = "/integrations/:id/rotate", method = "post", tag = "ApiTags::Integrations")]
    async fn regenerate(&self, auth: PageCaller, id: Path<uuid::Uuid>) -> ApiResult<Json<Integration>> {
        auth.require(Role::Operator)?;
        self.integration(self.integrations.regenerate(&auth.access(), &id.0.to_string()).await?)
    }

    /// Limit the connection to one scope its token reaches (`{"scope":
    /// "acme"}`, an id or path of `reach.top_level`), or lift the limit
    /// (`{"scope": null}`). The proxy then refuses requests outside it
    /// (403 `outside_scope`), and actions and syncs stay inside it.
    ///
    /// Role: operator.
    #[oai(path = "/integrations/:id/scope", method = "put", tag = "ApiTags::Integrations")]
    async fn set_scope(
        &self,
        auth: PageCaller,
        id: Path<uuid::Uuid>,
        body: Json<ScopeRequest>,
    ) -> ApiResult<Json<Integration>> {
        auth.require(Role::Operator)?;
        use poem_openapi::types::MaybeUndefined;
        let scope = match &body.0.scope {
            MaybeUndefined::Value(v) if !v.trim().is_empty() => Some(v.as_str()),
            MaybeUndefined::Null => None,
            _ => {
                return Err(AppError::Validation(
                    "Give scope: the id or path of a group the token reaches, or null to lift the limit.".into(),
                )
                .into());
            }
        };
        self.integration(self.integrations.set_scope(&auth.access(), &id.0.to_string(), scope).await?)
    }

    /// Replace the token with a new one you paste: it is verified and must
    /// belong to the same account (409 `account_mismatch` otherwise).
    ///
    /// Role: operator.
    #[oai(path = "/integrations/:id/credentials", method = "put", tag = "ApiTags::Integrations")]
    async fn rotate(
        &self,
        auth: PageCaller,
        id: Path<uuid::Uuid>,
        body: Json<RotateRequest>,
    ) -> ApiResult<Json<Integration>> {
        auth.require(Role::Operator)?;
        self.integration(self.integrations.rotate(&auth.access(), &id.0.to_string(), body.0.credentials.0).await?)
    }

    /// Create a named API key with a role. The key is in this answer only;
    /// Gatehouse keeps its SHA-256.
    ///
    /// Role: admin.
    #[oai(path = "/api-keys", method = "post", tag = "ApiTags::Access")]
    async fn create_api_key(&self, auth: ApiKey, body: Json<ApiKeyRequest>) -> ApiResult<ApiKeyCreated> {
        auth.require(Role::Admin)?;
        let (row, key) = self.api_keys.create(&body.0.name.0, body.0.role).await?;
        let info = ApiKeyInfo::from(row);
        Ok(ApiKeyCreated::Created(Json(CreatedApiKey {
            id: info.id,
            name: info.name,
            role: info.role,
            created_at: info.created_at,
            key: secrecy::ExposeSecret::expose_secret(&key).to_string(),
        })))
    }

    /// Every API key, revoked ones included (never the keys). The
    /// `GATEHOUSE_API_KEY` key, when set, is not stored and not listed.
    ///
    /// Role: admin.
    #[oai(path = "/api-keys", method = "get", tag = "ApiTags::Access")]
    async fn api_keys(&self, auth: ApiKey) -> ApiResult<Json<ApiKeyList>> {
        auth.require(Role::Admin)?;
        let api_keys = self.api_keys.list().await?.into_iter().map(ApiKeyInfo::from).collect();
        Ok(Json(ApiKeyList { api_keys }))
    }

    /// Revoke an API key: it is refused (401) from the next request on.
    ///
    /// Role: admin.
    #[oai(path = "/api-keys/:id", method = "delete", tag = "ApiTags::Access")]
    async fn revoke_api_key(&self, auth: ApiKey, id: Path<String>) -> ApiResult<Json<ApiKeyInfo>> {
        auth.require(Role::Admin)?;
        Ok(Json(self.api_keys.revoke(&id.0).await?.into()))
    }

    /// The audit log, oldest first: every change to credentials or
    /// configuration, and every attempt at one that failed, with who (the API key's id
    /// and name), what, the outcome and the caller's address. Start without
    /// a cursor, then pass `next_cursor`.
    ///
    /// Role: admin.
    #[oai(path = "/audit", method = "get", tag = "ApiTags::Access")]
    #[allow(clippy::too_many_arguments)]
    async fn audit(
        &self,
        auth: ApiKey,
        /// Entries after this one: a `next_cursor` (or an entry's `cursor`).
        #[oai(validator(pattern = "^[0-9]{0,18}$"))]
        cursor: Query<Option<String>>,
        /// Entries per page, 1 to 1000 (default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<u32>>,
        /// Only entries about this target (an integration, key, OAuth application, webhook or connector id).
        target: Query<Option<String>>,
        /// Only entries about this kind of target (`integration`, `api_key`, `oauth_app`, `webhook`, `connector`).
        target_kind: Query<Option<String>>,
        /// Only this action, e.g. `integration.rotate`.
        action: Query<Option<String>>,
        /// Only entries at or after this RFC 3339 time.
        since: Query<Option<time::OffsetDateTime>>,
        /// Only entries before this RFC 3339 time.
        until: Query<Option<time::OffsetDateTime>>,
    ) -> ApiResult<Json<AuditLog>> {
        auth.require(Role::Admin)?;
        let rfc3339 = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).ok();
        let (since, until) = (since.0.and_then(rfc3339), until.0.and_then(rfc3339));
        let given = |q: Option<String>| q.filter(|v| !v.is_empty());
        let page = self
            .audit
            .page(AuditQuery {
                cursor: cursor.0.as_deref(),
                limit: limit.0,
                target_id: given(target.0),
                target_kind: given(target_kind.0),
                action: given(action.0),
                since: since.as_deref(),
                until: until.as_deref(),
            })
            .await?;
        Ok(Json(AuditLog {
            entries: page.entries.into_iter().map(AuditItem::from).collect(),
            next_cursor: page.next_cursor.to_string(),
        }))
    }
}

/// The cookie binding an OAuth flow to a browser: sent back only to the
/// OAuth routes, unreadable by scripts, and sent on the provider's
/// top-level redirect back (Lax) but not on cross-site subrequests.
fn browser_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/api/v1/oauth/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

/// The value of the cookie `name` in the request, if sent.
fn cookie(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get_all(poem::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
}

/// Bounds the body before a handler sees it, so an oversized request
/// cannot tie up memory.
async fn limit_body<E: poem::Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    max: usize,
    timeout: Duration,
) -> poem::Result<poem::Response> {
    let body = req.take_body();
    if !body.is_empty() {
        let bytes = read_limited(body, max, timeout).await?;
        req.set_body(bytes);
    }
    ep.call(req).await.map(poem::IntoResponse::into_response)
}

const DRAIN_AFTER_TOO_LARGE: u64 = 4 * 1024 * 1024;

/// How the routes are served (from the command line).
#[derive(Debug, Clone)]
pub struct RouteOptions {
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    pub address: observe::AddressSource,
    /// Serve `/metrics` here, to callers with an API key.
    pub metrics_behind_key: bool,
    /// Origins allowed to frame the settings page.
    pub frame_ancestors: Vec<String>,
}

pub fn routes(services: &Services, options: RouteOptions) -> impl poem::Endpoint + use<> {
    let RouteOptions { max_body_bytes, body_timeout, address, metrics_behind_key, frame_ancestors } = options;
    let hooks = services.syncs.clone();
    let api = Api {
        integrations: services.integrations.clone(),
        grants: services.grants.clone(),
        oauth: services.oauth.clone(),
        actions: services.actions.clone(),
        syncs: services.syncs.clone(),
        webhooks: services.webhooks.clone(),
        api_keys: services.api_keys.clone(),
        audit: services.audit.clone(),
        expiry: services.expiry.clone(),
    };
    let sessions = session::SessionApi { sessions: services.sessions.clone() };
    let service = OpenApiService::new((api, sessions), "Gatehouse", env!("CARGO_PKG_VERSION"))
        .description("Connect provider accounts (GitLab first) through sandboxed WebAssembly connectors, and use them: an authenticated proxy, typed actions.");
    // Writing and reading the document takes milliseconds at every start:
    // once each is enough.
    let document: serde_json::Value = serde_json::from_str(&service.spec()).expect("poem-openapi writes JSON");
    let names = observe::RouteNames::from_spec(&document, "/api/v1");
    let get: &[poem::http::Method] = &[poem::http::Method::GET];
    let spec = Arc::new(spec::Spec::new(
        document,
        &[
            ("/", get),
            ("/settings", get),
            ("/assets/settings.js", get),
            ("/assets/settings.css", get),
            ("/favicon.ico", get),
            ("/api/openapi.json", get),
            ("/api/v1/hooks/{id}", &[poem::http::Method::POST]),
        ],
    ));
    let docs = swagger_ui_when_asked(service.clone());
    let everything_else = embed::page_routes(Route::new(), frame_ancestors)
        .at(
            "/api/openapi.json",
            poem::get(poem::endpoint::make_sync({
                let spec = spec.clone();
                move |_| {
                    poem::Response::builder().content_type("application/json; charset=utf-8").body(spec.json().to_vec())
                }
            })),
        )
        .nest("/docs", docs)
        .nest_no_strip("/api/v1", service.around(move |ep, req| limit_body(ep, req, max_body_bytes, body_timeout)))
        .with(NormalizePath::new(TrailingSlash::Trim));
    // The proxy sees the path exactly as sent: normalising it (merging
    // slashes, trimming the last one) would change what reaches the provider
    // and hide a `//host` it must refuse.
    let proxy = services.proxy.clone();
    Route::new()
        .at(
            "/api/v1/integrations/:id/proxy/*path",
            poem::endpoint::make(move |req| proxy_endpoint(proxy.clone(), req, body_timeout)),
        )
        .at(
            "/api/v1/hooks/:id",
            poem::post(poem::endpoint::make(move |req| inbound_endpoint(hooks.clone(), req, body_timeout))),
        )
        .at("/metrics", poem::get(poem::endpoint::make(move |req| metrics_endpoint(req, metrics_behind_key))))
        .nest("/", everything_else)
        .around(auth::authenticate)
        .data(services.api_keys.clone())
        .data(services.sessions.clone())
        .around(move |ep, req| observe::request(ep, req, address, names.clone()))
        .catch_all_error(problem::render)
        .around(move |ep, req| response_headers(ep, req, spec.clone()))
}

/// Swagger UI, built on its first request: the page embeds the whole
/// document and a 1 MB script, which took milliseconds at every start.
fn swagger_ui_when_asked<T: poem_openapi::OpenApi + Clone + Send + std::marker::Sync + 'static>(
    service: OpenApiService<T, ()>,
) -> impl poem::Endpoint + use<T> {
    let built = Arc::new((std::sync::OnceLock::<poem::endpoint::BoxEndpoint<'static>>::new(), service));
    poem::endpoint::make(move |req: Request| {
        let built = built.clone();
        async move {
            let (page, service) = &*built;
            page.get_or_init(|| service.swagger_ui().map_to_response().boxed()).call(req).await
        }
    })
}

/// `GET /metrics` on the API's address (`--metrics key`): any API key.
async fn metrics_endpoint(req: Request, enabled: bool) -> poem::Result<poem::Response> {
    use poem::IntoResponse;
    if !enabled {
        return Err(poem::error::NotFoundError.into());
    }
    let Some(caller) = auth::caller(&req) else {
        return Ok(ApiError::from(AppError::Unauthorized).into_response());
    };
    if let Err(e) = auth::require(caller, Role::Reader) {
        return Ok(ApiError::from(e).into_response());
    }
    Ok(metrics_response())
}

/// The metrics in the text exposition format.
pub fn metrics_response() -> poem::Response {
    poem::Response::builder().content_type(crate::metrics::CONTENT_TYPE).body(crate::metrics::render())
}

/// `--metrics public`: `/metrics` alone, for a listener of its own.
pub fn public_metrics() -> impl poem::Endpoint + use<> {
    Route::new().at(
        "/metrics",
        poem::get(poem::endpoint::make(|_req: Request| async { Ok::<_, poem::Error>(metrics_response()) })),
    )
}

/// `ANY /api/v1/integrations/{id}/proxy/{path}`: authenticated by the API
/// key, forwarded to the provider with the connection's credential.
async fn proxy_endpoint(proxy: Arc<Proxy>, mut req: Request, body_timeout: Duration) -> poem::Result<poem::Response> {
    use poem::IntoResponse;
    let Some(caller) = auth::caller(&req) else {
        let refusal = if session::bearer_is_session(&req) {
            AppError::Forbidden("A connect session cannot use the proxy; it needs the API key.".into())
        } else {
            AppError::Unauthorized
        };
        return Ok(ApiError::from(refusal).into_response());
    };
    // Reading through the proxy is a reader's; anything that may change
    // something at the provider is an operator's.
    let needed = if matches!(req.method().as_str(), "GET" | "HEAD") { Role::Reader } else { Role::Operator };
    if let Err(e) = auth::require(caller, needed) {
        return Ok(ApiError::from(e).into_response());
    }
    let method = req.method().clone();
    if !["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
        return Err(poem::Error::from_status(poem::http::StatusCode::METHOD_NOT_ALLOWED));
    }
    // The raw path, still percent-encoded: `{id}` then `/proxy/` then the rest.
    let raw = req.uri().path().to_string();
    let rest = raw.strip_prefix("/api/v1/integrations/").unwrap_or_default();
    let (id, path) = rest.split_once("/proxy/").unwrap_or((rest, ""));
    let Ok(id) = id.parse::<uuid::Uuid>() else {
        return Ok(
            ApiError::from(AppError::Validation("The id in the path is not a valid UUID.".into())).into_response()
        );
    };
    let max = proxy.settings().max_body_bytes;
    let body = match read_limited(req.take_body(), max, body_timeout).await {
        Ok(body) => body,
        Err(e) => return Err(e),
    };
    let request = ProxyRequest {
        method: reqwest::Method::from_bytes(method.as_str().as_bytes()).expect("a known method"),
        path: path.to_string(),
        query: req.uri().query().map(str::to_string),
        headers: to_reqwest_headers(req.headers()),
        body,
    };
    match proxy.forward(&id.to_string(), request).await {
        Ok(answer) => {
            let mut response = poem::Response::builder()
                .status(poem::http::StatusCode::from_u16(answer.status.as_u16()).expect("a valid status"))
                .body(poem::Body::from_bytes_stream(answer.body));
            for (name, value) in &answer.headers {
                if let (Ok(name), Ok(value)) = (
                    poem::http::HeaderName::from_bytes(name.as_str().as_bytes()),
                    poem::http::HeaderValue::from_bytes(value.as_bytes()),
                ) {
                    response.headers_mut().append(name, value);
                }
            }
            Ok(response)
        }
        Err(e) => Ok(ApiError::from(e).into_response()),
    }
}

/// `POST /api/v1/hooks/{id}`: a webhook from the provider. No API key: the
/// connection's secret token, in the header the connector names, is the
/// proof. The body is not needed (the event header says what changed), so
/// it is drained, bounded, not parsed.
async fn inbound_endpoint(syncs: Arc<Syncs>, mut req: Request, body_timeout: Duration) -> poem::Result<poem::Response> {
    use poem::IntoResponse;
    if let Err(e) = read_limited(req.take_body(), DRAIN_AFTER_TOO_LARGE as usize, body_timeout).await
        && e.status() == poem::http::StatusCode::REQUEST_TIMEOUT
    {
        return Err(e);
    }
    let id = req.uri().path().trim_start_matches("/api/v1/hooks/").trim_end_matches('/').to_string();
    if id.parse::<uuid::Uuid>().is_err() {
        return Ok(ApiError::from(AppError::Unauthorized).into_response());
    }
    let headers = req.headers().clone();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    match syncs.receive(&id, header).await {
        Ok(received) => Ok(poem::Response::builder()
            .status(poem::http::StatusCode::ACCEPTED)
            .content_type("application/json")
            .body(serde_json::json!({"duplicate": received.duplicate, "syncs_due": received.models}).to_string())),
        Err(e) => Ok(ApiError::from(e).into_response()),
    }
}

fn to_reqwest_headers(headers: &poem::http::HeaderMap) -> reqwest::header::HeaderMap {
    let mut out = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()),
            reqwest::header::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            out.append(name, value);
        }
    }
    out
}

/// Reads at most `max` bytes of any body (with or without Content-Length);
/// more is a 413 after reading (and dropping) a bounded rest, so the client
/// is not reset while still sending and does see the 413; a bigger body
/// just gets the connection closed. A body that takes longer than
/// `timeout` (a client trickling it) is a 408.
async fn read_limited(body: poem::Body, max: usize, timeout: Duration) -> poem::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let late = || poem::Error::from_status(poem::http::StatusCode::REQUEST_TIMEOUT);
    let mut reader = body.into_async_read();
    let mut bytes = Vec::new();
    tokio::time::timeout_at(deadline, (&mut reader).take(max as u64 + 1).read_to_end(&mut bytes))
        .await
        .map_err(|_| late())?
        .map_err(poem::error::ReadBodyError::Io)?;
    if bytes.len() > max {
        let (mut rest, mut sink) = (reader.take(DRAIN_AFTER_TOO_LARGE), tokio::io::sink());
        let _ = tokio::time::timeout_at(deadline, tokio::io::copy(&mut rest, &mut sink)).await;
        return Err(poem::Error::from_status(poem::http::StatusCode::PAYLOAD_TOO_LARGE));
    }
    Ok(bytes)
}

/// Headers every answer carries: API answers (credentials, account data)
/// are not stored by caches, and no answer is content-sniffed. A proxied
/// provider answer keeps its own caching rules when it states them. A 405
/// says which methods the path takes.
async fn response_headers<E: poem::Endpoint>(
    ep: Arc<E>,
    req: Request,
    spec: Arc<spec::Spec>,
) -> poem::Result<poem::Response> {
    use poem::http::{HeaderValue, header};
    let path = req.uri().path().to_string();
    let mut response = ep.call(req).await.map(poem::IntoResponse::into_response)?;
    spec.complete(&path, &mut response);
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if path.starts_with("/api/") {
        let proxied = path.starts_with("/api/v1/integrations/") && path.contains("/proxy/");
        if !proxied || !headers.contains_key(header::CACHE_CONTROL) {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }
    Ok(response)
}
