//! The settings page and its assets, embedded in the binary (no CDN, no
//! external network), and what lets a consuming system embed the page in
//! its own: the `frame-ancestors` of its Content-Security-Policy (the
//! operator's `--frame-ancestors`, else none), and those same origins
//! handed to the page, which posts its events to them only.

use std::sync::Arc;

use poem::{EndpointExt, Route, web::Data};

/// The origins allowed to frame the page, as CSP and the page use them.
struct Embedding {
    csp: String,
    html: String,
}

impl Embedding {
    fn new(frame_ancestors: &[String]) -> Self {
        let ancestors = if frame_ancestors.is_empty() { "'none'".to_string() } else { frame_ancestors.join(" ") };
        let csp = format!("default-src 'self'; img-src 'self' https: data:; frame-ancestors {ancestors}");
        // The origins are validated origins (scheme://host[:port]): no quote
        // or markup can be in them.
        let html = include_str!("page/index.html").replace(
            r#"<meta name="gatehouse-parent-origins" content="">"#,
            &format!(r#"<meta name="gatehouse-parent-origins" content="{}">"#, frame_ancestors.join(" ")),
        );
        Self { csp, html }
    }

    fn page(&self, content_type: &'static str, body: String) -> poem::Response {
        poem::Response::builder()
            .content_type(content_type)
            .header("Content-Security-Policy", self.csp.as_str())
            .header("Referrer-Policy", "no-referrer")
            .body(body)
    }
}

/// `/` (with the API key) and `/settings` (a connect session's URL) serve
/// the same page; the assets and the favicon beside them.
pub(super) fn page_routes(route: Route, frame_ancestors: Vec<String>) -> Route {
    let embedding = Arc::new(Embedding::new(&frame_ancestors));
    route
        .at("/", poem::get(index).data(embedding.clone()))
        .at("/settings", poem::get(index).data(embedding.clone()))
        .at("/assets/settings.js", poem::get(script).data(embedding.clone()))
        .at("/assets/settings.css", poem::get(stylesheet).data(embedding))
        .at("/favicon.ico", poem::get(favicon))
}

#[poem::handler]
fn index(embedding: Data<&Arc<Embedding>>) -> poem::Response {
    embedding.page("text/html; charset=utf-8", embedding.html.clone())
}

#[poem::handler]
fn script(embedding: Data<&Arc<Embedding>>) -> poem::Response {
    embedding.page("text/javascript; charset=utf-8", include_str!("page/settings.js").into())
}

#[poem::handler]
fn stylesheet(embedding: Data<&Arc<Embedding>>) -> poem::Response {
    embedding.page("text/css; charset=utf-8", include_str!("page/settings.css").into())
}

/// Browsers ask for it on every page; without it each visit logs a 404.
#[poem::handler]
fn favicon() -> poem::Response {
    poem::Response::builder()
        .content_type("image/x-icon")
        .header("Cache-Control", "public, max-age=86400")
        .body(include_bytes!("page/favicon.ico").as_slice())
}
