//! Outbound HTTP through the host. The host reaches only the credentials'
//! base URL host, enforces timeouts and size caps, and does not follow
//! redirects; transport failures arrive here as [`VerifyError`]s ready to
//! return.

use serde::de::DeserializeOwned;

use crate::{
    VerifyError,
    bindings::gatehouse::plugin::http::{self as host, Error as HostError, Request},
};

/// An upstream answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Lowercase names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn json<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&self.body).ok()
    }

    /// `Retry-After` in seconds (the delay form; an HTTP date yields None).
    pub fn retry_after(&self) -> Option<u32> {
        self.header("retry-after")?.trim().parse().ok()
    }
}

/// `GET url` with `headers`.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Result<Response, VerifyError> {
    send("GET", url, headers, Vec::new())
}

/// `POST url` with a JSON body.
pub fn post_json(url: &str, headers: &[(&str, &str)], body: &serde_json::Value) -> Result<Response, VerifyError> {
    let mut all = headers.to_vec();
    all.push(("content-type", "application/json"));
    send("POST", url, &all, serde_json::to_vec(body).unwrap_or_default())
}

pub fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Result<Response, VerifyError> {
    send_raw(method, url, headers, body).map_err(transport_error)
}

/// Like [`send`], with the host's transport error as is.
pub fn send_raw(method: &str, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Result<Response, HostError> {
    let request = Request {
        method: method.into(),
        url: url.into(),
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        body,
    };
    raw_send(&request).map(|r| Response { status: r.status, headers: r.headers, body: r.body })
}

#[cfg(target_arch = "wasm32")]
fn raw_send(request: &Request) -> Result<host::Response, HostError> {
    host::send(request)
}

#[cfg(not(target_arch = "wasm32"))]
fn raw_send(request: &Request) -> Result<host::Response, HostError> {
    native::send(request)
}

/// On native targets there is no host: a test or a benchmark installs a
/// transport, so the same connector source runs outside the sandbox.
#[cfg(not(target_arch = "wasm32"))]
pub mod native {
    use std::sync::OnceLock;

    pub use crate::bindings::gatehouse::plugin::http::{Error, Request, Response};

    type Transport = dyn Fn(&Request) -> Result<Response, Error> + Send + Sync;
    static TRANSPORT: OnceLock<Box<Transport>> = OnceLock::new();

    /// Sets the process-wide transport; the first call wins.
    pub fn set_transport(transport: impl Fn(&Request) -> Result<Response, Error> + Send + Sync + 'static) {
        let _ = TRANSPORT.set(Box::new(transport));
    }

    pub(super) fn send(request: &Request) -> Result<Response, Error> {
        match TRANSPORT.get() {
            Some(transport) => transport(request),
            None => Err(Error::InvalidRequest("no native transport installed (gatehouse_plugin::http::native)".into())),
        }
    }
}

/// How a transport failure is reported to the user.
pub fn transport_error(e: HostError) -> VerifyError {
    match e {
        HostError::Denied(why) => VerifyError::EgressDenied(why),
        HostError::Timeout => VerifyError::UpstreamTimeout,
        HostError::Unreachable(why) => {
            VerifyError::UpstreamUnreachable(format!("The provider could not be reached: {why}"))
        }
        HostError::TooLarge => VerifyError::UpstreamError(
            "The provider's answer is larger than the host's response size limit (--max-response-bytes); check the base URL"
                .into(),
        ),
        HostError::InvalidRequest(why) => VerifyError::InvalidInput(format!("The request could not be built: {why}")),
    }
}
