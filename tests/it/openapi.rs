//! The OpenAPI document: served without a token, a well-formed OpenAPI 3.1 document whose
//! references resolve, and every operation it lists is routed by the real application.

use std::collections::BTreeSet;

use actix_web::dev::Service as _;
use actix_web::http::header::{HeaderName, HeaderValue};
use flagstaff::build_app;
use flagstaff::store::audit::Actor;
use flagstaff::store::projects::{self, NewProject};
use flagstaff::store::users::Role;
use serde_json::{Value, json};

use crate::helpers::TestApp;

async fn document(app: &TestApp) -> (String, Value) {
    let reply = app.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(reply.status, 200, "served without a token");
    assert!(
        reply
            .header("content-type")
            .unwrap_or_default()
            .starts_with("application/json")
    );
    (String::from_utf8(reply.bytes).unwrap(), reply.body)
}

/// Every `$ref` in `value`, as JSON pointers.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// A parameter object, following a `$ref` into `components.parameters`.
fn resolve<'a>(doc: &'a Value, param: &'a Value) -> &'a Value {
    match param["$ref"].as_str() {
        Some(r) => doc.pointer(r.trim_start_matches('#')).expect("resolvable"),
        None => param,
    }
}

#[actix_web::test]
async fn the_document_is_valid_openapi_3_1() {
    let app = TestApp::new();
    let (text, doc) = document(&app).await;
    let spec = oas3::from_json(&text).expect("parses as an OpenAPI 3.1 document");
    let version = spec.validate_version().expect("an OpenAPI 3.1.x version");
    assert_eq!((version.major, version.minor), (3, 1));
    assert_eq!(doc["servers"][0]["url"], "/api/v1");

    let mut pointers = Vec::new();
    refs(&doc, &mut pointers);
    assert!(!pointers.is_empty());
    for pointer in &pointers {
        let target = pointer
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{pointer} is not local"));
        assert!(doc.pointer(target).is_some(), "{pointer} does not resolve");
    }

    let mut ids = BTreeSet::new();
    let mut operations = 0;
    for (path, method, op) in spec.operations() {
        operations += 1;
        let id = op
            .operation_id
            .clone()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(ids.insert(id.clone()), "operationId {id} is used twice");
        assert!(
            op.responses.as_ref().is_some_and(|r| !r.is_empty()),
            "{method} {path} has no responses"
        );

        // Each `{name}` in the path is declared as a required path parameter, and nothing else is.
        let item = &doc["paths"][&path];
        let op_json = &item[method.as_str().to_ascii_lowercase()];
        let declared: BTreeSet<String> = item["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(op_json["parameters"].as_array().into_iter().flatten())
            .map(|p| resolve(&doc, p))
            .filter(|p| p["in"] == "path")
            .inspect(|p| {
                assert_eq!(
                    p["required"], true,
                    "{method} {path}: path parameters are required"
                );
            })
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        let named: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_owned)
            .collect();
        assert_eq!(declared, named, "{method} {path}");
    }
    assert!(
        operations >= 38,
        "the whole /api/v1 surface is described ({operations} operations)"
    );
    for fixed in [
        ("post", "/import"),
        ("get", "/projects/{project}/export"),
        ("post", "/projects/{project}/environments/{env}/keys"),
        ("delete", "/projects/{project}/environments/{env}/keys/{id}"),
        ("patch", "/projects/{project}/flags/{flag}/environments/{env}"),
        ("put", "/projects/{project}/flags/{flag}"),
        ("post", "/users"),
        ("post", "/tokens"),
    ] {
        assert!(
            doc["paths"][fixed.1][fixed.0].is_object(),
            "{fixed:?} is documented"
        );
    }
}

/// `/a/{x}/b` → `/a/{}/b`, so patterns compare whatever their parameters are named.
fn shape(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|s| {
            if s.starts_with('{') && s.ends_with('}') {
                "{}"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[actix_web::test]
async fn every_documented_operation_is_routed() {
    let app = TestApp::new();
    let admin = app.token(Role::Admin);
    app.state
        .write_blocking(|tx| {
            let new = NewProject {
                key: "shop".into(),
                name: "Shop".into(),
                environments: None,
            };
            projects::create(tx, &Actor::cli(), new)
        })
        .unwrap();
    let flag = json!({"key": "new-checkout", "type": "boolean",
                      "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]});
    assert_eq!(
        app.call("POST", "/api/v1/projects/shop/flags", Some(&admin), Some(flag))
            .await
            .status,
        201
    );
    let segment = json!({"key": "beta", "included": ["u-1"]});
    assert_eq!(
        app.call(
            "POST",
            "/api/v1/projects/shop/segments",
            Some(&admin),
            Some(segment)
        )
        .await
        .status,
        201
    );
    let key = app
        .call(
            "POST",
            "/api/v1/projects/shop/environments/production/keys",
            Some(&admin),
            Some(json!({"kind": "server", "name": "k"})),
        )
        .await;
    let relay_key = app
        .call(
            "POST",
            "/api/v1/projects/shop/keys",
            Some(&admin),
            Some(json!({"kind": "relay", "name": "r"})),
        )
        .await;
    let user = app
        .call(
            "POST",
            "/api/v1/users",
            Some(&admin),
            Some(json!({"email": "u@example.com", "role": "viewer", "password": "long enough password"})),
        )
        .await;
    let spare_token = app
        .call(
            "POST",
            "/api/v1/tokens",
            Some(&admin),
            Some(json!({"name": "spare"})),
        )
        .await;
    let schedule = app
        .call(
            "POST",
            "/api/v1/projects/shop/flags/new-checkout/environments/production/schedules",
            Some(&admin),
            Some(json!({"at": "2099-01-01T00:00:00Z", "patch": {"enabled": true}})),
        )
        .await;
    let ids = [
        // Before "/keys/{id}", which it also ends with.
        ("/projects/{project}/keys/{id}", relay_key.body["id"].to_string()),
        ("/schedules/{id}", schedule.body["id"].to_string()),
        ("/keys/{id}", key.body["id"].to_string()),
        ("/users/{id}", user.body["id"].to_string()),
        ("/tokens/{id}", spare_token.body["id"].to_string()),
    ];

    let (_, doc) = document(&app).await;
    let mut operations: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                operations.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    // Reads and changes first; deletions last, deepest first, so each finds what it deletes.
    operations.sort_by_key(|(method, path)| (method == "DELETE", usize::MAX - path.matches('/').count()));

    let service = actix_web::test::init_service(build_app(app.state.clone()).wrap_fn(|req, srv| {
        let fut = srv.call(req);
        async move {
            let mut res = fut.await?;
            let pattern = res.request().match_pattern().unwrap_or_default();
            res.headers_mut().insert(
                HeaderName::from_static("x-test-pattern"),
                HeaderValue::from_str(&pattern).expect("a pattern is a valid header value"),
            );
            Ok(res)
        }
    }))
    .await;

    for (method, path) in operations {
        let mut uri = format!("/api/v1{path}");
        for (suffix, id) in &ids {
            if path.ends_with(suffix) {
                uri = uri.replace("{id}", id);
            }
        }
        for (param, value) in [
            ("{project}", "shop"),
            ("{env}", "production"),
            ("{flag}", "new-checkout"),
            ("{segment}", "beta"),
            ("{other}", "staging"),
        ] {
            uri = uri.replace(param, value);
        }
        assert!(!uri.contains('{'), "no value for a parameter of {path}");
        let mut req = actix_web::test::TestRequest::default()
            .method(method.parse().unwrap())
            .uri(&uri)
            .insert_header(("Authorization", format!("Bearer {admin}")));
        if matches!(method.as_str(), "POST" | "PUT" | "PATCH") {
            req = req.set_json(json!({}));
        }
        let res = actix_web::test::call_service(&service, req.to_request()).await;
        let status = res.status();
        let pattern = res
            .headers()
            .get("x-test-pattern")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = actix_web::test::read_body(res).await;
        assert!(
            status != 404 && status != 405,
            "{method} {uri} ({path}) answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(
            shape(&pattern),
            shape(&format!("/api/v1{path}")),
            "{method} {uri} is routed to {pattern:?}"
        );
    }
}

/// A link parameter's value: `$request.path.NAME`, `$response.body#/POINTER`, or a constant.
fn link_value(expression: &str, request_path: &[(&str, String)], body: &Value) -> String {
    if let Some(name) = expression.strip_prefix("$request.path.") {
        return request_path
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{expression}: no such path parameter in the request"))
            .1
            .clone();
    }
    if let Some(pointer) = expression.strip_prefix("$response.body#") {
        return match body.pointer(pointer) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            other => panic!("{expression} resolves to {other:?} in {body}"),
        };
    }
    assert!(
        !expression.starts_with('$'),
        "unsupported expression {expression}"
    );
    expression.to_owned()
}

/// A create to follow the links of: its path, the values of its path parameters, its body.
type Create = (&'static str, Vec<(&'static str, String)>, Value);

/// A link's `requestBody`: `$response.body`, or an object whose string values are expressions.
fn link_body(template: &Value, request_path: &[(&str, String)], body: &Value) -> Value {
    match template {
        Value::String(s) if s == "$response.body" => body.clone(),
        Value::String(s) if s.starts_with("$response.body#") => body
            .pointer(&s["$response.body#".len()..])
            .cloned()
            .unwrap_or(Value::Null),
        Value::String(s) => Value::String(link_value(s, request_path, body)),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.clone(), link_body(v, request_path, body)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        other => other.clone(),
    }
}

#[actix_web::test]
async fn every_create_response_links_to_what_it_created_and_each_link_reaches_it() {
    let app = TestApp::new();
    let admin = app.token(Role::Admin);
    let (_, doc) = document(&app).await;
    let mut by_id = std::collections::BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if let Some(id) = op.get("operationId").and_then(Value::as_str) {
                by_id.insert(id.to_owned(), (method.to_uppercase(), path.clone()));
            }
        }
    }

    // Each create, with the values of its own path parameters and a body a user would send
    // (hostile strings where the API takes free text).
    let flag = json!({"key": "checkout.v2", "name": "Checkout, \"v2\" <script>", "type": "boolean",
                      "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]});
    let creates: Vec<Create> = vec![
        (
            "/projects",
            vec![],
            json!({"key": "links", "name": "Links, \"quoted\"\t✓"}),
        ),
        (
            "/projects/{project}/environments",
            vec![("project", "links".into())],
            json!({"key": "qa", "name": "QA"}),
        ),
        (
            "/projects/{project}/flags",
            vec![("project", "links".into())],
            flag,
        ),
        (
            "/projects/{project}/segments",
            vec![("project", "links".into())],
            json!({"key": "beta", "included": ["Doe, Jane"]}),
        ),
        (
            "/projects/{project}/environments/{env}/keys",
            vec![("project", "links".into()), ("env", "qa".into())],
            json!({"kind": "server", "name": "relay, <b>"}),
        ),
        (
            "/users",
            vec![],
            json!({"email": "links@example.com", "role": "viewer", "password": "long enough password"}),
        ),
        ("/tokens", vec![], json!({"name": "spare"})),
    ];
    let mut deletions = Vec::new();
    let mut followed = 0;
    for (create, params, body) in creates {
        let mut uri = format!("/api/v1{create}");
        for (name, value) in &params {
            uri = uri.replace(&format!("{{{name}}}"), value);
        }
        let created = app.call("POST", &uri, Some(&admin), Some(body)).await;
        assert_eq!(created.status, 201, "POST {uri}: {}", created.body);
        let links = doc["paths"][create]["post"]["responses"]["201"]["links"]
            .as_object()
            .unwrap_or_else(|| {
                panic!("POST {create}: its 201 has no links, so fuzzers never reach what it creates")
            });
        for (name, link) in links {
            let target = link["operationId"].as_str().expect("links name an operationId");
            let (method, path) = by_id
                .get(target)
                .unwrap_or_else(|| panic!("{create} link {name}: no operation {target}"));
            let mut uri = format!("/api/v1{path}");
            let mut target_params = Vec::new();
            for (param, expression) in link["parameters"].as_object().expect("link parameters") {
                let value = link_value(expression.as_str().unwrap(), &params, &created.body);
                let placeholder = format!("{{{param}}}");
                assert!(
                    uri.contains(&placeholder),
                    "{name}: {target} has no path parameter {param}"
                );
                uri = uri.replace(&placeholder, &value);
                target_params.push((param.as_str(), value));
            }
            assert!(
                !uri.contains('{'),
                "{name}: a parameter of {path} is not given: {uri}"
            );
            if method == "DELETE" {
                deletions.push((uri, name.clone()));
                continue;
            }
            let body = match link.get("requestBody") {
                Some(template) => Some(link_body(template, &params, &created.body)),
                None => matches!(method.as_str(), "POST" | "PUT" | "PATCH").then(|| json!({})),
            };
            let reply = app.call(method, &uri, Some(&admin), body).await;
            assert!(
                reply.status != 404 && reply.status.as_u16() < 500,
                "{name}: {method} {uri} answered {}: {}",
                reply.status,
                reply.body
            );
            if link.get("requestBody").is_some() {
                assert!(
                    reply.status.is_success(),
                    "{name}: the linked body is accepted: {}",
                    reply.body
                );
            }
            followed += 1;

            // One level further: the links of what this answered (a flag's history → restore).
            let answer_links = doc["paths"][path.as_str()][method.to_lowercase()]["responses"]
                [reply.status.as_str()]["links"]
                .as_object();
            for (next_name, next) in answer_links.into_iter().flatten() {
                let (next_method, next_path) = &by_id[next["operationId"].as_str().unwrap()];
                let mut next_uri = format!("/api/v1{next_path}");
                for (param, expression) in next["parameters"].as_object().unwrap() {
                    let value = link_value(expression.as_str().unwrap(), &target_params, &reply.body);
                    next_uri = next_uri.replace(&format!("{{{param}}}"), &value);
                }
                let next_body = next
                    .get("requestBody")
                    .map(|t| link_body(t, &target_params, &reply.body));
                let next_reply = app.call(next_method, &next_uri, Some(&admin), next_body).await;
                assert!(
                    next_reply.status.is_success(),
                    "{next_name}: {next_method} {next_uri} answered {}: {}",
                    next_reply.status,
                    next_reply.body
                );
                followed += 1;
            }
        }
    }
    // Deletions last, deepest first, so each finds what it deletes.
    deletions.sort_by_key(|(uri, _)| usize::MAX - uri.matches('/').count());
    for (uri, name) in deletions {
        let reply = app.call("DELETE", &uri, Some(&admin), None).await;
        assert_eq!(reply.status, 204, "{name}: DELETE {uri}: {}", reply.body);
        followed += 1;
    }
    assert!(followed >= 30, "{followed} links followed");
}
