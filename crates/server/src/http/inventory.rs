//! `/api/v1/inventory`: the Inventory service over HTTP/JSON, by the same
//! rules as every other route.

use super::{HttpApi, Parts, Query, grpc, invalid, message, query, reply};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use interlock_proto::v1;
use interlock_proto::v1::inventory_server::Inventory;
use serde_json::Map;

pub fn routes() -> axum::Router<HttpApi> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/api/v1/inventory", get(list))
        .route("/api/v1/inventory/import", post(import))
        .route("/api/v1/inventory/sites/{site}/status", post(set_status))
}

async fn list(State(s): State<HttpApi>, p: Parts, axum::extract::Query(q): Query) -> Response {
    match query::<v1::ListInventoryReq>(&q) {
        Ok(m) => reply(s.inventory.list_inventory(grpc(&p, m)).await),
        Err(e) => invalid(e),
    }
}

async fn import(State(s): State<HttpApi>, p: Parts, body: Bytes) -> Response {
    match message::<v1::ImportInventoryReq>(&body, Map::new()) {
        Ok(m) => reply(s.inventory.import_inventory(grpc(&p, m)).await),
        Err(e) => invalid(e),
    }
}

async fn set_status(
    State(s): State<HttpApi>,
    p: Parts,
    Path(site): Path<String>,
    body: Bytes,
) -> Response {
    let extra = Map::from_iter([("site".to_string(), site.into())]);
    match message::<v1::SetSiteStatusReq>(&body, extra) {
        Ok(m) => reply(s.inventory.set_site_status(grpc(&p, m)).await),
        Err(e) => invalid(e),
    }
}
