//! The OpenAPI 3.1 document of the JSON API, made from the code: the paths are
//! [`crate::routes::ENDPOINTS`] (method, path, access), each with what [`describe`] says of it
//! (summary, query, request and response types, whose schemas `utoipa` derives from the
//! `shared` types the handlers encode and decode, feature `openapi` of `kokushi-shared`). This
//! module builds the document from the two: operations, parameters, bodies, the error answers
//! and the security schemes. Served at `GET /api/openapi.json`, printed by `kokushi openapi`,
//! and committed as `docs/openapi.json`; a test fails when that file is stale, and another when
//! an endpoint has no description.

mod describe;

use std::collections::BTreeMap;

use kokushi_shared::api;
use utoipa::PartialSchema;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem, PathsBuilder,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, LicenseBuilder, OpenApi, OpenApiBuilder, Ref,
    RefOr, Required, ResponseBuilder,
};

use crate::auth::{Access, CSRF_HEADER, SESSION_COOKIE};
use crate::routes::ENDPOINTS;
use describe::{Answer, Body, Schemas, collect, describe};

fn http_method(method: &str) -> HttpMethod {
    match method {
        "get" => HttpMethod::Get,
        "post" => HttpMethod::Post,
        "patch" => HttpMethod::Patch,
        "delete" => HttpMethod::Delete,
        "put" => HttpMethod::Put,
        other => unreachable!("ENDPOINTS has no method {other}"),
    }
}

fn who(access: Access) -> &'static str {
    match access {
        Access::Public => "Anyone.",
        Access::Member => "Any signed-in account.",
        Access::Researcher => "Role `researcher` (or `admin`).",
        Access::Admin => "Role `admin`.",
    }
}

/// The endpoints [`describe`] does not know.
pub fn undescribed() -> Vec<String> {
    ENDPOINTS
        .iter()
        .filter(|e| describe(e.method, e.path).is_none())
        .map(|e| format!("{} {}", e.method.to_uppercase(), e.path))
        .collect()
}

/// The document. Endpoints missing from [`describe`] are left out ([`undescribed`] names them).
pub fn document() -> OpenApi {
    let mut schemas: Schemas = Vec::new();
    collect::<api::ApiErrorBody>(&mut schemas);
    let error = |what: &str| {
        ResponseBuilder::new()
            .description(what)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ApiErrorBody")))
                    .build(),
            )
            .build()
    };
    let mut paths = PathsBuilder::new();
    for endpoint in ENDPOINTS {
        let Some(doc) = describe(endpoint.method, endpoint.path) else {
            continue;
        };
        let tag = endpoint
            .path
            .trim_start_matches("/api/")
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default();
        let mut description = String::from(doc.description);
        if !description.is_empty() {
            description.push_str("\n\n");
        }
        description.push_str("Access: ");
        description.push_str(who(endpoint.access));
        let mut op = OperationBuilder::new()
            .summary(Some(doc.summary))
            .description(Some(description))
            .tag(tag)
            .operation_id(Some(format!(
                "{}_{}",
                endpoint.method,
                endpoint
                    .path
                    .trim_start_matches('/')
                    .replace(['/', '-', '.'], "_")
                    .replace(['{', '}'], "")
            )));
        if endpoint.path.contains("{id}") {
            op = op.parameter(
                ParameterBuilder::new()
                    .name("id")
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(i64::schema())),
            );
        }
        if endpoint.path.contains("{problem_id}") {
            op = op.parameter(
                ParameterBuilder::new()
                    .name("problem_id")
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .description(Some("The exam's question id, e.g. 116A13"))
                    .schema(Some(String::schema())),
            );
        }
        for (name, what) in doc.query {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(*name)
                    .parameter_in(ParameterIn::Query)
                    .required(if what.ends_with("(required)") {
                        Required::True
                    } else {
                        Required::False
                    })
                    .description(Some(*what))
                    .schema(Some(String::schema())),
            );
        }
        match &doc.body {
            Body::None => {}
            Body::Json(json) => {
                (json.collect)(&mut schemas);
                op = op.request_body(Some(
                    RequestBodyBuilder::new()
                        .required(Some(Required::True))
                        .content(
                            "application/json",
                            ContentBuilder::new().schema(Some((json.schema)())).build(),
                        )
                        .build(),
                ));
            }
            Body::File => {
                let binary = || {
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .content_media_type("application/octet-stream")
                        .build()
                };
                op = op.request_body(Some(
                    RequestBodyBuilder::new()
                        .required(Some(Required::True))
                        .description(Some(
                            "The file as the body, or as the field `file` of a multipart form",
                        ))
                        .content(
                            "application/octet-stream",
                            ContentBuilder::new().schema(Some(binary())).build(),
                        )
                        .content(
                            "multipart/form-data",
                            ContentBuilder::new()
                                .schema(Some(
                                    ObjectBuilder::new()
                                        .property("file", binary())
                                        .required("file"),
                                ))
                                .build(),
                        )
                        .build(),
                ));
            }
        }
        let ok = match &doc.answer {
            Answer::Json(json) => {
                (json.collect)(&mut schemas);
                let schema = match &doc.or {
                    None => (json.schema)(),
                    Some(other) => {
                        (other.collect)(&mut schemas);
                        utoipa::openapi::schema::Schema::OneOf(
                            utoipa::openapi::schema::OneOfBuilder::new()
                                .item((json.schema)())
                                .item((other.schema)())
                                .build(),
                        )
                        .into()
                    }
                };
                ResponseBuilder::new()
                    .description(doc.summary)
                    .content(
                        "application/json",
                        ContentBuilder::new().schema(Some(schema)).build(),
                    )
                    .build()
            }
            Answer::Other(media, what) => ResponseBuilder::new()
                .description(*what)
                .content(
                    *media,
                    ContentBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                        .build(),
                )
                .build(),
            Answer::Empty => ResponseBuilder::new().description("Done").build(),
        };
        let status = if matches!(doc.answer, Answer::Empty) {
            204
        } else {
            doc.status
        };
        op = op.response(status.to_string(), ok);
        if endpoint.access != Access::Public {
            op = op
                .response(
                    "401",
                    error("Not signed in, or the credential is not valid"),
                )
                .response(
                    "403",
                    error("The account lacks the role, or the CSRF token is missing"),
                )
                .security(SecurityRequirement::new("session", Vec::<String>::new()))
                .security(SecurityRequirement::new("token", Vec::<String>::new()));
        }
        op = op.response(
            "default",
            error("An error: its `code`, and a `message` naming what is at fault"),
        );
        paths = paths.path(
            endpoint.path,
            PathItem::new(http_method(endpoint.method), op.build()),
        );
    }
    // One entry per name; two different schemas under one name would make the document lie.
    let mut named: BTreeMap<String, RefOr<Schema>> = BTreeMap::new();
    for (name, schema) in schemas {
        if let Some(before) = named.get(&name) {
            assert!(
                before == &schema,
                "two API types are both named {name}: rename one for the OpenAPI document"
            );
        }
        named.insert(name, schema);
    }
    let mut components = ComponentsBuilder::new()
        .security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                SESSION_COOKIE,
                &format!(
                    "The cookie `POST /api/auth/login` sets. State-changing requests also send \
                     the session's CSRF token in `{CSRF_HEADER}`."
                ),
            ))),
        )
        .security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A personal API token (`POST /api/tokens` or `kokushi admin token`), \
                         sent as `Authorization: Bearer <token>`",
                    ))
                    .build(),
            ),
        );
    for (name, schema) in named {
        components = components.schema(name, schema);
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Kokushi")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The JSON API of Kokushi, the evaluation portal for Japanese medical language \
                     models. Errors are JSON `{code, message, details?}` (ApiErrorBody).",
                ))
                .license(Some(
                    LicenseBuilder::new()
                        .name(env!("CARGO_PKG_LICENSE"))
                        .build(),
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components.build()))
        .build()
}

/// The document as the committed `docs/openapi.json` holds it: pretty JSON and a final newline.
pub fn document_json() -> String {
    let mut json = document()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"encoding the OpenAPI document: {e}\"}}"));
    json.push('\n');
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_is_described() {
        assert_eq!(
            undescribed(),
            Vec::<String>::new(),
            "describe these endpoints in backend/src/openapi/describe.rs"
        );
    }

    /// `docs/openapi.json` is the document this code makes. After changing an endpoint or an
    /// API type: `cargo run -p kokushi-backend -- openapi > docs/openapi.json`.
    #[test]
    fn the_committed_openapi_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        let current = document_json();
        if committed != current {
            let line = committed
                .lines()
                .zip(current.lines())
                .position(|(a, b)| a != b)
                .map_or_else(
                    || committed.lines().count().min(current.lines().count()) + 1,
                    |i| i + 1,
                );
            panic!(
                "docs/openapi.json is stale (first difference at line {line}); write it anew \
                 with `cargo run -p kokushi-backend -- openapi > docs/openapi.json`"
            );
        }
    }

    #[test]
    fn every_referenced_schema_is_in_the_document() {
        let json = document_json();
        let value: serde_json::Value = serde_json::from_str(&json).expect("the document is JSON");
        let names: std::collections::HashSet<&str> = value["components"]["schemas"]
            .as_object()
            .expect("schemas")
            .keys()
            .map(String::as_str)
            .collect();
        let mut missing = Vec::new();
        for (at, _) in json.match_indices("#/components/schemas/") {
            let rest = &json[at + "#/components/schemas/".len()..];
            let name = &rest[..rest.find('"').unwrap_or(rest.len())];
            if !names.contains(name) {
                missing.push(name.to_owned());
            }
        }
        assert!(
            missing.is_empty(),
            "referenced but not defined: {missing:?}"
        );
        // The API's main types are there, with their fields.
        for name in [
            "RunSummary",
            "RunDetail",
            "CreateTuning",
            "TuningDetail",
            "ScoreReport",
        ] {
            assert!(names.contains(name), "{name} missing");
        }
        assert!(
            value["paths"]["/api/runs/{id}"]["get"]["responses"]["200"].is_object(),
            "GET /api/runs/{{id}} has no 200 answer"
        );
    }
}
