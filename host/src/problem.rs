//! What a failure looks like to a client: the RFC 9457 problem document
//! with a stable `code`, as served and as stored in an integration's
//! `last_error`.

/// One problem, as served and as stored in `last_error`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, poem_openapi::Object)]
#[oai(rename = "Problem")]
pub struct Problem {
    /// URI naming the problem type; stable per `code`.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What happened and what to do next.
    pub detail: String,
    /// Stable machine-readable code (see the README's error table).
    pub code: String,
    /// Scopes the token lacks (`insufficient_scope`).
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_scopes: Option<Vec<String>>,
    /// Seconds to wait before retrying: as the provider said (`rate_limited`),
    /// or until a call slot may be free (`host_busy`).
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u32>,
    /// What the host suggests doing next, when `detail` is the connector's
    /// own sentence (kept apart from it).
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
    /// JSON pointer of the value that fails its schema (`validation_error`
    /// for an action's input, `plugin_failed` for its output).
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// The id of the request this answers (also the `X-Request-Id` header):
    /// quote it when reporting a problem, it finds the server's log lines.
    /// Only in answers, never in a stored `last_error`.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}
