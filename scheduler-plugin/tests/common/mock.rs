//! Request-by-request API mocks (kube's tower-test pattern), for tests that
//! check each exact request. Tests that need API state use the stateful
//! fake in `railyard-test-util` instead.
#![allow(dead_code)]

use std::borrow::Borrow;

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
pub type Reply = tower_test::mock::SendResponse<Response<Body>>;

/// A kube client whose every request the test answers through the handle.
pub fn mock() -> (kube::Client, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(svc, "default"), handle)
}

/// A JSON response.
pub fn respond(status: StatusCode, body: impl Borrow<Value>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body.borrow()).expect("json")))
        .expect("response")
}

/// A `Status` failure body, as the API server writes it.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
           "message": message, "code": code})
}

/// The request's JSON body.
pub async fn body_json(req: Request<Body>) -> Value {
    let bytes = req.into_body().collect_bytes().await.expect("body");
    serde_json::from_slice(&bytes).expect("json body")
}
