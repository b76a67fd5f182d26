//! The one place errors become HTTP responses: `AppError` and every error
//! poem raises itself (bad JSON, bad path, missing key, unknown route) leave
//! as RFC 9457 problem details with a stable `code`.

use poem::{IntoResponse, Response, http::StatusCode};
use poem_openapi::{ApiResponse, payload::Json};

use crate::error::{AppError, Problem};

#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// `validation_error`, `invalid_base_url`
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// `unauthorized`, `session_expired`, `session_revoked`
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
    /// `forbidden`, `egress_denied`, `provider_forbidden`
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    /// `not_found`
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// `account_mismatch`, `account_in_use`, `not_refreshable`, `proxy_unsupported`
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    /// `invalid_token`, `token_expired`, `token_revoked`, `insufficient_scope`
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// `payload_too_large`: the body is over the server's limit
    #[oai(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Json<Problem>),
    /// `validation_error`: the body is not sent as `application/json`
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Json<Problem>),
    /// `rate_limited`
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Json<Problem>, #[oai(header = "Retry-After")] Option<String>),
    /// `internal_error`
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
    /// `upstream_error`, `upstream_unreachable`, `plugin_failed`
    #[oai(status = 502, content_type = "application/problem+json")]
    BadGateway(Json<Problem>),
    /// `secret_unavailable`, `host_busy` (with `Retry-After`)
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>, #[oai(header = "Retry-After")] Option<String>),
    /// `upstream_timeout`, `plugin_timeout`
    #[oai(status = 504, content_type = "application/problem+json")]
    GatewayTimeout(Json<Problem>),
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match &e {
            AppError::Store(inner) => tracing::error!(error = %inner, "store failure"),
            AppError::Crypto(inner) => {
                tracing::error!(error = %inner, "stored secret cannot be opened")
            }
            AppError::Connector(inner) => tracing::warn!(error = %inner, "connector call failed"),
            _ => {}
        }
        let mut problem = e.problem();
        problem.request_id = crate::context::request_id();
        let retry_after = problem.retry_after.map(|s| s.to_string());
        let body = Json(problem);
        match e.status() {
            400 => Self::BadRequest(body),
            401 => Self::Unauthorized(body, "Bearer".into()),
            403 => Self::Forbidden(body),
            404 => Self::NotFound(body),
            409 => Self::Conflict(body),
            413 => Self::PayloadTooLarge(body),
            415 => Self::UnsupportedMediaType(body),
            422 => Self::Unprocessable(body),
            429 => Self::TooManyRequests(body, retry_after),
            502 => Self::BadGateway(body),
            503 => Self::Unavailable(body, retry_after),
            504 => Self::GatewayTimeout(body),
            _ => Self::Internal(body),
        }
    }
}

/// Turns errors poem and poem-openapi raise before a handler runs into
/// problem details.
pub async fn render(err: poem::Error) -> Response {
    if err.is_from_response() {
        return err.into_response();
    }
    let status = err.status();
    let (code, title, detail) = match status {
        StatusCode::BAD_REQUEST => (
            "validation_error",
            "The request is not valid",
            format!(
                "{}. Fix the request and send it again; /api/openapi.json describes every body.",
                without_values(&err.to_string())
            ),
        ),
        StatusCode::UNAUTHORIZED => {
            return ApiError::from(AppError::Unauthorized).into_response();
        }
        StatusCode::NOT_FOUND => ("not_found", "Not found", "No such route; see /docs for the API.".to_string()),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "Method not allowed", "This route does not take that method; see /docs.".to_string())
        }
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "The request body is too large",
            "Send a smaller body; credentials are short strings.".to_string(),
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "request_timeout",
            "The request body came too slowly",
            "The body did not arrive within the server's --client-body-timeout; send it at once, or ask the operator to raise the timeout.".to_string(),
        ),
        StatusCode::LENGTH_REQUIRED => {
            ("validation_error", "The request is not valid", "Send the body with a Content-Length header.".to_string())
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "validation_error",
            "The request is not valid",
            "Send the body as JSON with `Content-Type: application/json`.".to_string(),
        ),
        _ => {
            tracing::error!(status = %status, error = %err, "unhandled error");
            ("internal_error", "Internal error", "The server failed; see its log.".to_string())
        }
    };
    let problem = Problem {
        kind: format!("https://gatehouse.invalid/problems/{code}"),
        title: title.into(),
        status: status.as_u16(),
        detail,
        code: code.into(),
        advice: None,
        missing_scopes: None,
        retry_after: None,
        pointer: None,
        request_id: crate::context::request_id(),
    };
    let body = serde_json::to_vec(&problem).expect("a problem serialises");
    let response = Response::builder().status(status).content_type("application/problem+json");
    // The rest of a trickled body is not waited for: the connection ends.
    let response =
        if status == StatusCode::REQUEST_TIMEOUT { response.header("Connection", "close") } else { response };
    response.body(body)
}

/// Parse errors quote the offending JSON value, which may be a secret
/// pasted into the wrong place: keep the message, drop quoted values.
fn without_values(message: &str) -> String {
    if message.contains("string_uuid") {
        return "The id in the path is not a valid UUID".into();
    }
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    let next = |s: &str| ["string \"", "found \""].iter().filter_map(|p| s.find(p).map(|at| (at, p.len()))).min();
    while let Some((at, len)) = next(rest) {
        out.push_str(&rest[..at + len - 1]);
        let after = &rest[at + len..];
        match after.find('"') {
            Some(end) => {
                out.push_str("(value hidden)");
                rest = &after[end + 1..];
            }
            None => {
                out.push_str("(value hidden)");
                rest = "";
            }
        }
    }
    out.push_str(rest);
    let mut out: String = out.chars().take(400).collect();
    while out.ends_with(['.', ' ']) {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_do_not_echo_string_values() {
        let msg = r#"parse request payload error: invalid type: string "glpat-abcdefgh", expected a map at line 1"#;
        let shown = without_values(msg);
        assert!(!shown.contains("glpat"), "{shown}");
        assert!(shown.contains("expected a map"));
        let msg =
            r#"Expected input type "map_string", found "glpat-secret12345". (occurred while parsing "ConnectRequest")"#;
        let shown = without_values(msg);
        assert!(!shown.contains("glpat") && shown.contains("ConnectRequest"), "{shown}");
    }
}
