//! The OpenAPI document as served, and what the HTTP layer learns from it.
//! poem-openapi's document is patched where it cannot state the truth by
//! itself: request bodies refuse unknown fields, so their schemas say
//! `additionalProperties: false`, or a generated client would send fields
//! the server rejects; and their optional fields take `null` (read as left
//! out), so they say `nullable`. The methods each path takes (the `Allow` header of a
//! 405) come from the same document, so they cannot drift from the routes.

use poem::http::{HeaderValue, Method, StatusCode, header};
use serde_json::Value;

/// The served document and the path table derived from it.
pub struct Spec {
    json: Vec<u8>,
    paths: Vec<PathMethods>,
}

struct PathMethods {
    /// The template's segments; `None` is a `{parameter}`.
    segments: Vec<Option<String>>,
    allow: HeaderValue,
}

impl Spec {
    /// `document` is poem-openapi's; `other_routes` are the routes outside
    /// it (the page, the proxy's neighbours) with the methods they take.
    pub fn new(mut document: Value, other_routes: &[(&str, &[Method])]) -> Self {
        close_request_bodies(&mut document);
        let mut paths: Vec<PathMethods> = Vec::new();
        if let Some(map) = document["paths"].as_object() {
            for (template, operations) in map {
                let methods = operations
                    .as_object()
                    .into_iter()
                    .flat_map(|ops| ops.keys())
                    .filter_map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
                    .collect::<Vec<_>>();
                paths.push(PathMethods::new(template, &methods));
            }
        }
        paths.extend(other_routes.iter().map(|(template, methods)| PathMethods::new(template, methods)));
        // A literal segment wins over a parameter in the same place.
        paths.sort_by_key(|p| std::cmp::Reverse(p.segments.iter().filter(|s| s.is_some()).count()));
        Self { json: serde_json::to_vec(&document).expect("a JSON value serialises"), paths }
    }

    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// The `Allow` value for a request path, if a route has this shape.
    pub fn allow(&self, path: &str) -> Option<&HeaderValue> {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        self.paths.iter().find(|p| p.matches(&segments)).map(|p| &p.allow)
    }

    /// Adds `Allow` to a 405 that lacks it (RFC 9110 requires it there).
    pub fn complete(&self, path: &str, response: &mut poem::Response) {
        if response.status() == StatusCode::METHOD_NOT_ALLOWED
            && !response.headers().contains_key(header::ALLOW)
            && let Some(allow) = self.allow(path)
        {
            response.headers_mut().insert(header::ALLOW, allow.clone());
        }
    }
}

impl PathMethods {
    fn new(template: &str, methods: &[Method]) -> Self {
        let segments = template
            .trim_end_matches('/')
            .split('/')
            .map(|s| (!(s.starts_with('{') || s.starts_with(':'))).then(|| s.to_string()))
            .collect();
        let mut names: Vec<&str> = methods.iter().map(Method::as_str).collect();
        // poem answers HEAD wherever it answers GET.
        if methods.contains(&Method::GET) {
            names.push("HEAD");
        }
        names.sort_unstable();
        names.dedup();
        let allow = HeaderValue::from_str(&names.join(", ")).expect("method names are header-safe");
        Self { segments, allow }
    }

    fn matches(&self, segments: &[&str]) -> bool {
        self.segments.len() == segments.len()
            && self.segments.iter().zip(segments).all(|(template, seg)| match template {
                Some(literal) => literal == seg,
                None => !seg.is_empty(),
            })
    }
}

/// Every schema a request body names is closed to unknown fields.
fn close_request_bodies(document: &mut Value) {
    let mut named = Vec::new();
    if let Some(paths) = document["paths"].as_object() {
        for operation in paths.values().filter_map(Value::as_object).flat_map(|ops| ops.values()) {
            let contents = operation["requestBody"]["content"].as_object().into_iter().flatten();
            for (_, content) in contents.filter(|(t, _)| t.starts_with("application/json")) {
                if let Some(name) =
                    content["schema"]["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/"))
                {
                    named.push(name.to_string());
                }
            }
        }
    }
    for name in named {
        if let Some(schema) = document["components"]["schemas"][&name].as_object_mut()
            && schema.get("type").and_then(Value::as_str) == Some("object")
        {
            schema.insert("additionalProperties".into(), Value::Bool(false));
            // An optional field takes `null` as well as leaving it out.
            let required: Vec<Value> = schema.get("required").and_then(Value::as_array).cloned().unwrap_or_default();
            if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
                for (field, property) in properties {
                    if !required.contains(&Value::String(field.clone()))
                        && let Some(property) = property.as_object_mut()
                        && !property.contains_key("$ref")
                    {
                        property.insert("nullable".into(), Value::Bool(true));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCUMENT: &str = r##"{
        "paths": {
            "/api/v1/things": {"get": {}, "post": {"requestBody": {"content": {"application/json; charset=utf-8": {"schema": {"$ref": "#/components/schemas/NewThing"}}}}}},
            "/api/v1/things/{id}": {"delete": {}},
            "/api/v1/things/special": {"put": {}}
        },
        "components": {"schemas": {"NewThing": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "note": {"type": "string"}}}, "Thing": {"type": "object"}}}
    }"##;

    #[test]
    fn allow_lists_the_methods_of_the_matching_template() {
        let spec = Spec::new(serde_json::from_str(DOCUMENT).unwrap(), &[("/", &[Method::GET])]);
        let allow = |p| spec.allow(p).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(allow("/api/v1/things").as_deref(), Some("GET, HEAD, POST"));
        assert_eq!(allow("/api/v1/things/42").as_deref(), Some("DELETE"));
        assert_eq!(allow("/api/v1/things/special").as_deref(), Some("PUT"));
        assert_eq!(allow("/").as_deref(), Some("GET, HEAD"));
        assert_eq!(allow("/api/v1/things/42/more"), None);
    }

    #[test]
    fn request_bodies_are_closed_and_answers_are_not() {
        let spec = Spec::new(serde_json::from_str(DOCUMENT).unwrap(), &[]);
        let document: Value = serde_json::from_slice(spec.json()).unwrap();
        let new_thing = &document["components"]["schemas"]["NewThing"];
        assert_eq!(new_thing["additionalProperties"], false);
        assert_eq!(new_thing["properties"]["note"]["nullable"], true);
        assert!(new_thing["properties"]["name"].get("nullable").is_none());
        assert!(document["components"]["schemas"]["Thing"].get("additionalProperties").is_none());
    }
}
