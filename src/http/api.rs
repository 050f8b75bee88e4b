//! The call-control API under `/api/`: live calls and what can be done to
//! them (docs/api.md).
//!
//! - `GET /api/calls`: the answered two-party calls.
//! - `POST /api/calls/{id}/recording` `{"action":"start|stop|pause|resume"}`
//! - `POST /api/calls/{id}/say` `{"leg":"caller|callee","digits":"123"}`
//!   or `{"leg":...,"number":42}`
//! - `POST /api/calls/{id}/play` `{"leg":...,"sounds":["name",...]}`
//! - `POST /api/calls/{id}/dtmf` `{"leg":...,"digits":"12#","duration_ms":100}`
//! - `POST /api/rooms/{room}/members/{member}/mute` `{"muted":true|false}`
//!
//! The routes exist only when `[http] api_token` is set, and every request
//! must carry `Authorization: Bearer <token>` (otherwise 401). Answers are
//! JSON; errors are `{"error":"..."}` with 400 (bad JSON or values), 404
//! (unknown call or member, or the call ended), 409 (recording state), 422
//! (a prompt that cannot be played) or 503 (the call is busy).
//!
//! Owns: parsing and checking requests, the token check, and turning
//! [`ControlError`]s into status codes. Must not: carry out a command
//! itself (it goes through the call's [`crate::call::CallControl`]), or
//! trust the request: bodies are parsed with serde_json into closed
//! structures, and nothing here panics on what a client sends.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::call::control::DEFAULT_KEY_MS;
use crate::call::{Calls, ControlError, LiveCall, RecordingAction};
use crate::media::relay::{Leg, MAX_DIGIT_MS, MIN_DIGIT_MS};
use crate::media::sound::SoundError;

/// What the handlers share.
#[derive(Clone)]
struct Api {
    calls: Calls,
    token: Arc<str>,
}

/// The API's routes, guarded by `token`, over the live calls in `calls`.
pub fn router(calls: Calls, token: &str) -> Router {
    let api = Api {
        calls,
        token: Arc::from(token),
    };
    Router::new()
        .route("/api/calls", get(list_calls))
        .route("/api/calls/{id}/recording", post(recording))
        .route("/api/calls/{id}/say", post(say))
        .route("/api/calls/{id}/play", post(play))
        .route("/api/calls/{id}/dtmf", post(dtmf))
        .route("/api/rooms/{room}/members/{member}/mute", post(mute))
        .route_layer(middleware::from_fn_with_state(api.clone(), authorize))
        .with_state(api)
}

/// A JSON answer.
fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    reply(status, json!({ "error": message.to_string() }))
}

/// Lets a request through only with the right bearer token.
async fn authorize(State(api): State<Api>, request: Request, next: Next) -> Response {
    if bearer_matches(request.headers(), &api.token) {
        return next.run(request).await;
    }
    let mut response = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

/// `Authorization: Bearer <token>`, compared in constant time.
fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (given, token) = (given.trim().as_bytes(), token.as_bytes());
    given.len() == token.len() && given.iter().zip(token).fold(0, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The body as `T`, or what is wrong with it.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}

fn bad_request(message: impl std::fmt::Display) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

fn status_of(e: &ControlError) -> StatusCode {
    match e {
        ControlError::Ended => StatusCode::NOT_FOUND,
        ControlError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        ControlError::NotRecording | ControlError::AlreadyRecording => StatusCode::CONFLICT,
        ControlError::Recorder(_) => StatusCode::INTERNAL_SERVER_ERROR,
        ControlError::Sound(SoundError::BadName { .. }) => StatusCode::BAD_REQUEST,
        ControlError::Sound(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ControlError::Key(_) | ControlError::Empty | ControlError::TooMany { .. } => {
            StatusCode::BAD_REQUEST
        }
    }
}

fn control_error(e: ControlError) -> Response {
    error(status_of(&e), e)
}

fn unknown_call() -> Response {
    error(StatusCode::NOT_FOUND, "no such call")
}

fn call_json(call: &LiveCall) -> Value {
    json!({
        "id": call.call_id,
        "caller": call.caller,
        "callee": call.callee,
        "answered_at_ms": call.answered_at_ms,
        "recording": call.recording.as_str(),
    })
}

async fn list_calls(State(api): State<Api>) -> Response {
    let calls: Vec<Value> = api.calls.list().iter().map(call_json).collect();
    reply(StatusCode::OK, json!({ "calls": calls }))
}

/// Which party of a call.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Party {
    Caller,
    Callee,
}

impl Party {
    fn leg(self) -> Leg {
        match self {
            Party::Caller => Leg::A,
            Party::Callee => Leg::B,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Action {
    Start,
    Stop,
    Pause,
    Resume,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordingBody {
    action: Action,
}

async fn recording(State(api): State<Api>, Path(id): Path<String>, body: Bytes) -> Response {
    let body: RecordingBody = match parse(&body) {
        Ok(b) => b,
        Err(m) => return bad_request(m),
    };
    let Some(control) = api.calls.control(&id) else {
        return unknown_call();
    };
    let action = match body.action {
        Action::Start => RecordingAction::Start,
        Action::Stop => RecordingAction::Stop,
        Action::Pause => RecordingAction::Pause,
        Action::Resume => RecordingAction::Resume,
    };
    match control.recording(action).await {
        Ok(state) => reply(
            StatusCode::OK,
            json!({ "id": id, "recording": state.as_str() }),
        ),
        Err(e) => control_error(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SayBody {
    leg: Party,
    digits: Option<String>,
    number: Option<u64>,
}

async fn say(State(api): State<Api>, Path(id): Path<String>, body: Bytes) -> Response {
    let body: SayBody = match parse(&body) {
        Ok(b) => b,
        Err(m) => return bad_request(m),
    };
    let Some(control) = api.calls.control(&id) else {
        return unknown_call();
    };
    let leg = body.leg.leg();
    let done = match (body.digits, body.number) {
        (Some(digits), None) => control.say_digits(leg, &digits).await,
        (None, Some(n)) => control.say_number(leg, n).await,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "give either \"digits\" or \"number\"",
            )
        }
    };
    match done {
        Ok(()) => reply(StatusCode::OK, json!({ "id": id, "playing": true })),
        Err(e) => control_error(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlayBody {
    leg: Party,
    sounds: Vec<String>,
}

async fn play(State(api): State<Api>, Path(id): Path<String>, body: Bytes) -> Response {
    let body: PlayBody = match parse(&body) {
        Ok(b) => b,
        Err(m) => return bad_request(m),
    };
    let Some(control) = api.calls.control(&id) else {
        return unknown_call();
    };
    match control.play(body.leg.leg(), &body.sounds).await {
        Ok(()) => reply(StatusCode::OK, json!({ "id": id, "playing": true })),
        Err(e) => control_error(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DtmfBody {
    leg: Party,
    digits: String,
    duration_ms: Option<u32>,
}

async fn dtmf(State(api): State<Api>, Path(id): Path<String>, body: Bytes) -> Response {
    let body: DtmfBody = match parse(&body) {
        Ok(b) => b,
        Err(m) => return bad_request(m),
    };
    let ms = body.duration_ms.unwrap_or(DEFAULT_KEY_MS);
    if !(MIN_DIGIT_MS..=MAX_DIGIT_MS).contains(&ms) {
        let message = format!("duration_ms must be between {MIN_DIGIT_MS} and {MAX_DIGIT_MS}");
        return error(StatusCode::BAD_REQUEST, message);
    }
    let Some(control) = api.calls.control(&id) else {
        return unknown_call();
    };
    let duration = Duration::from_millis(u64::from(ms));
    match control
        .send_dtmf(body.leg.leg(), &body.digits, duration)
        .await
    {
        Ok(()) => reply(StatusCode::OK, json!({ "id": id, "sent": body.digits })),
        Err(e) => control_error(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MuteBody {
    muted: bool,
}

async fn mute(
    State(api): State<Api>,
    Path((room, member)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let muted = if body.is_empty() {
        true
    } else {
        match parse::<MuteBody>(&body) {
            Ok(b) => b.muted,
            Err(m) => return bad_request(m),
        }
    };
    let Some(switch) = api.calls.member(&room, &member) else {
        return error(StatusCode::NOT_FOUND, "no such member in that room");
    };
    switch.set(muted);
    reply(
        StatusCode::OK,
        json!({ "room": room, "member": member, "muted": muted }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::control::{self, Control};
    use crate::call::RecordingState;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const TOKEN: &str = "0123456789abcdef";

    /// Serves the API over `calls` on a free port until the test ends.
    async fn serve(calls: Calls) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(calls, TOKEN);
        tokio::spawn(crate::http::serve_router(
            listener,
            app,
            std::future::pending(),
        ));
        addr
    }

    /// One request; the status and the JSON body.
    async fn request(
        addr: std::net::SocketAddr,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (u16, Value) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let text = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(text.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let status = raw.split(' ').nth(1).unwrap().parse().unwrap();
        let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    fn live(id: &str) -> LiveCall {
        LiveCall {
            call_id: id.into(),
            caller: "1001".into(),
            callee: "1002".into(),
            answered_at_ms: 5,
            recording: RecordingState::Recording,
        }
    }

    /// A call whose actor answers every recording command with `Paused`
    /// and refuses DTMF as ended.
    fn fake_call(calls: &Calls, id: &str) {
        let prompts = Arc::new(crate::media::sound::SoundLibrary::new(Vec::new()));
        let (handle, mut queue) = control::channel(prompts);
        calls.add(live(id), handle);
        tokio::spawn(async move {
            while let Some(command) = queue.recv().await {
                match command {
                    Control::Recording(_, reply) => drop(reply.send(Ok(RecordingState::Paused))),
                    Control::Dtmf(.., reply) => drop(reply.send(Err(ControlError::Ended))),
                    Control::Play(.., reply) => drop(reply.send(Ok(()))),
                }
            }
        });
    }

    #[tokio::test]
    async fn every_request_needs_the_token() {
        let addr = serve(Calls::new()).await;
        let (status, body) = request(addr, "GET", "/api/calls", None, "").await;
        assert_eq!(status, 401);
        assert_eq!(body["error"], "a valid bearer token is required");
        let wrong = Some("0123456789abcdeX");
        assert_eq!(request(addr, "GET", "/api/calls", wrong, "").await.0, 401);
        let post = request(addr, "POST", "/api/calls/x/recording", None, "{}").await;
        assert_eq!(post.0, 401, "checked before the body");
        let (status, body) = request(addr, "GET", "/api/calls", Some(TOKEN), "").await;
        assert_eq!((status, body), (200, json!({ "calls": [] })));
    }

    #[tokio::test]
    async fn calls_are_listed_and_commanded() {
        let calls = Calls::new();
        fake_call(&calls, "c1@host");
        let addr = serve(calls).await;
        let (status, body) = request(addr, "GET", "/api/calls", Some(TOKEN), "").await;
        assert_eq!(status, 200);
        assert_eq!(
            body["calls"],
            json!([{ "id": "c1@host", "caller": "1001", "callee": "1002",
                     "answered_at_ms": 5, "recording": "recording" }])
        );
        let path = "/api/calls/c1%40host/recording";
        let pause = r#"{"action":"pause"}"#;
        let (status, body) = request(addr, "POST", path, Some(TOKEN), pause).await;
        assert_eq!(
            (status, body),
            (200, json!({ "id": "c1@host", "recording": "paused" }))
        );
        let dtmf = r#"{"leg":"callee","digits":"12"}"#;
        let path = "/api/calls/c1%40host/dtmf";
        let (status, body) = request(addr, "POST", path, Some(TOKEN), dtmf).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (404, Some("the call has ended"))
        );
    }

    #[tokio::test]
    async fn bad_requests_get_a_reason() {
        let calls = Calls::new();
        fake_call(&calls, "c1");
        let addr = serve(calls).await;
        let t = Some(TOKEN);
        let cases = [
            (
                "/api/calls/c1/recording",
                "not json",
                400,
                "invalid JSON body",
            ),
            (
                "/api/calls/c1/recording",
                r#"{"action":"rewind"}"#,
                400,
                "unknown variant",
            ),
            (
                "/api/calls/nope/recording",
                r#"{"action":"stop"}"#,
                404,
                "no such call",
            ),
            ("/api/calls/c1/say", r#"{"leg":"caller"}"#, 400, "either"),
            (
                "/api/calls/c1/say",
                r#"{"leg":"boss","number":1}"#,
                400,
                "unknown variant",
            ),
            (
                "/api/calls/c1/say",
                r#"{"leg":"caller","digits":"1x"}"#,
                400,
                "not a DTMF key",
            ),
            (
                "/api/calls/c1/say",
                r#"{"leg":"caller","number":7}"#,
                422,
                "prompt",
            ),
            (
                "/api/calls/c1/dtmf",
                r#"{"leg":"caller","digits":"1","duration_ms":5}"#,
                400,
                "between",
            ),
            (
                "/api/calls/c1/dtmf",
                r#"{"leg":"caller","digits":""}"#,
                400,
                "nothing",
            ),
            (
                "/api/calls/c1/play",
                r#"{"leg":"caller","sounds":["../x"]}"#,
                400,
                "relative path",
            ),
            (
                "/api/rooms/9201/members/1001/mute",
                r#"{"muted":true}"#,
                404,
                "no such member",
            ),
            (
                "/api/rooms/9201/members/1001/mute",
                r#"{"muted":"yes"}"#,
                400,
                "invalid JSON",
            ),
        ];
        for (path, body, want, says) in cases {
            let (status, reply) = request(addr, "POST", path, t, body).await;
            let message = reply["error"].as_str().unwrap_or_default().to_owned();
            assert_eq!(status, want, "{path} {body}: {message}");
            assert!(message.contains(says), "{path} {body}: {message}");
        }
        let (status, _) = request(addr, "GET", "/api/calls/c1/recording", t, "").await;
        assert_eq!(status, 405);
    }

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let mut headers = HeaderMap::new();
        assert!(!bearer_matches(&headers, TOKEN));
        for (value, ok) in [
            ("Bearer 0123456789abcdef", true),
            ("Bearer 0123456789abcdeg", false),
            ("Bearer 0123456789abcde", false),
            ("bearer 0123456789abcdef", false),
            ("Basic 0123456789abcdef", false),
            ("Bearer ", false),
        ] {
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            assert_eq!(bearer_matches(&headers, TOKEN), ok, "{value}");
        }
    }
}
