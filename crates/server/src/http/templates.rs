//! `/api/v1/templates`: the Templates service over HTTP/JSON, by the same
//! rules as every other route (the gRPC method is called with the caller's
//! identity, so authorization, audit and errors are the gRPC ones).

use super::{HttpApi, Parts, Query, grpc, invalid, message, query, refusal, reply};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use interlock_proto::v1;
use interlock_proto::v1::templates_server::Templates;
use serde_json::{Map, Value};

pub fn routes() -> axum::Router<HttpApi> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/api/v1/templates", get(list).post(apply))
        .route("/api/v1/templates/{name}", get(show))
        .route("/api/v1/templates/{name}/revisions", get(revisions))
        .route("/api/v1/templates/{name}/{action}", post(act))
}

async fn list(State(s): State<HttpApi>, p: Parts) -> Response {
    reply(
        s.templates
            .list_templates(grpc(&p, v1::ListTemplatesReq {}))
            .await,
    )
}

async fn apply(State(s): State<HttpApi>, p: Parts, body: Bytes) -> Response {
    match message::<v1::ApplyTemplateReq>(&body, Map::new()) {
        Ok(m) => reply(s.templates.apply_template(grpc(&p, m)).await),
        Err(e) => invalid(e),
    }
}

async fn show(
    State(s): State<HttpApi>,
    p: Parts,
    Path(name): Path<String>,
    axum::extract::Query(q): Query,
) -> Response {
    match query::<v1::GetTemplateReq>(&q) {
        Ok(mut m) => {
            m.name = name;
            reply(s.templates.get_template(grpc(&p, m)).await)
        }
        Err(e) => invalid(e),
    }
}

async fn revisions(State(s): State<HttpApi>, p: Parts, Path(name): Path<String>) -> Response {
    let m = v1::TemplateRevisionsReq { name };
    reply(s.templates.template_revisions(grpc(&p, m)).await)
}

/// `POST /api/v1/templates/{name}/{instantiate|disable|enable}`: the body
/// holds the request's other fields.
async fn act(
    State(s): State<HttpApi>,
    p: Parts,
    Path((name, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let field = |k: &str, v: Value| Map::from_iter([(k.to_string(), v)]);
    match action.as_str() {
        "instantiate" => match message::<v1::InstantiateReq>(&body, field("template", name.into()))
        {
            Ok(m) => reply(s.templates.instantiate(grpc(&p, m)).await),
            Err(e) => invalid(e),
        },
        "disable" | "enable" => {
            let mut extra = field("name", name.into());
            extra.insert("disabled".into(), (action == "disable").into());
            match message::<v1::SetTemplateDisabledReq>(&body, extra) {
                Ok(m) => reply(s.templates.set_template_disabled(grpc(&p, m)).await),
                Err(e) => invalid(e),
            }
        }
        other => refusal(tonic::Status::not_found(format!(
            "no template action {other:?}: instantiate, disable or enable"
        ))),
    }
}
