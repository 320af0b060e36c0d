//! `/api/v1/schedules`: the Schedules service over HTTP/JSON, by the same
//! rules as every other route.

use super::{HttpApi, Parts, grpc, invalid, message, refusal, reply};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use interlock_proto::v1;
use interlock_proto::v1::schedules_server::Schedules;
use serde_json::Map;

pub fn routes() -> axum::Router<HttpApi> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/api/v1/schedules", get(list).post(create))
        .route("/api/v1/schedules/{name}", get(show))
        .route("/api/v1/schedules/{name}/{action}", post(act))
}

async fn list(State(s): State<HttpApi>, p: Parts) -> Response {
    reply(
        s.schedules
            .list_schedules(grpc(&p, v1::ListSchedulesReq {}))
            .await,
    )
}

async fn create(State(s): State<HttpApi>, p: Parts, body: Bytes) -> Response {
    match message::<v1::CreateScheduleReq>(&body, Map::new()) {
        Ok(m) => reply(s.schedules.create_schedule(grpc(&p, m)).await),
        Err(e) => invalid(e),
    }
}

async fn show(State(s): State<HttpApi>, p: Parts, Path(name): Path<String>) -> Response {
    reply(
        s.schedules
            .get_schedule(grpc(&p, v1::GetScheduleReq { name }))
            .await,
    )
}

/// `POST /api/v1/schedules/{name}/{pause|resume|delete}`.
async fn act(
    State(s): State<HttpApi>,
    p: Parts,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    match action.as_str() {
        "pause" | "resume" => {
            let m = v1::PauseScheduleReq {
                name,
                paused: action == "pause",
            };
            reply(s.schedules.pause_schedule(grpc(&p, m)).await)
        }
        "delete" => reply(
            s.schedules
                .delete_schedule(grpc(&p, v1::DeleteScheduleReq { name }))
                .await,
        ),
        other => refusal(tonic::Status::not_found(format!(
            "no schedule action {other:?}: pause, resume or delete"
        ))),
    }
}
