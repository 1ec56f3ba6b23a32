//! What the binary's client commands (`folddb subscribe`, `folddb bench …`) share: logging
//! in over HTTP and opening `/v1/ws` with the token.

use anyhow::{Context, bail};
use serde_json::{Value as Json, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Which server to speak to, and as whom.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// User to log in as (the benchmarks need a dba: they create namespaces and users).
    #[arg(long, default_value = "admin")]
    pub user: String,
    /// Password of that user.
    #[arg(long, default_value = "kalamdb123")]
    pub password: String,
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Logs in at `base` (`http://host:port`): the access token.
pub async fn login(
    http: &reqwest::Client,
    base: &str,
    user: &str,
    password: &str,
) -> anyhow::Result<String> {
    let answer: Json = http
        .post(format!("{base}/v1/api/auth/login"))
        .json(&json!({"user": user, "password": password}))
        .send()
        .await
        .context("connecting to the server")?
        .json()
        .await?;
    match answer["access_token"].as_str() {
        Some(t) => Ok(t.to_owned()),
        None => bail!("login as {user} failed: {answer}"),
    }
}

/// Opens `/v1/ws` at `base` with `token` in the upgrade's `Authorization` header. The
/// server answers with `auth_success` first.
pub async fn open_ws(base: &str, token: &str) -> anyhow::Result<Ws> {
    let url = match base.strip_prefix("https://") {
        Some(rest) => format!("wss://{rest}/v1/ws"),
        None => format!("ws://{}/v1/ws", base.trim_start_matches("http://")),
    };
    let mut req = url.into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    // No Nagle: a small frame right after another would otherwise wait for a delayed ACK.
    let (ws, _) = tokio_tungstenite::connect_async_with_config(req, None, true)
        .await
        .context("opening /v1/ws")?;
    Ok(ws)
}

/// What a server frame says: `Some(Ok(json))` for a message (text, or gzip'ed JSON in a
/// binary frame, API.md 2.2), `Some(Err(..))` for a close, `None` for control frames.
pub fn server_message(frame: Message) -> Option<anyhow::Result<Json>> {
    match frame {
        Message::Text(t) => Some(serde_json::from_str(t.as_str()).map_err(Into::into)),
        Message::Binary(b) => Some(
            folddb_realtime::wire::decode_server_frame(true, &b, false)
                .map_err(|e| anyhow::anyhow!("a binary frame that is not gzip'ed JSON: {e}")),
        ),
        Message::Close(c) => Some(Err(anyhow::anyhow!(
            "the server closed the connection: {c:?}"
        ))),
        _ => None,
    }
}

/// Why a client's connection ended.
pub enum End {
    /// The server refused the request: no point in retrying.
    Refused(Json),
    /// The connection dropped: resume.
    Dropped(anyhow::Error),
}

/// Runs `session` (one connection's worth of work) again after each dropped connection,
/// backing off up to 5 s, until the server refuses it: then says so and fails.
pub async fn resuming(
    what: &str,
    mut session: impl AsyncFnMut() -> (End, String),
) -> anyhow::Result<std::process::ExitCode> {
    let mut wait = std::time::Duration::from_millis(250);
    loop {
        match session().await {
            (End::Refused(e), _) => {
                eprintln!("error: the server refused the {what}: {e}");
                return Ok(std::process::ExitCode::FAILURE);
            }
            (End::Dropped(e), from) => {
                eprintln!("{what}: {e:#}; resuming from {from} in {wait:?}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(5));
            }
        }
    }
}

/// The next server message on `ws`, pinging whenever `ping` ticks meanwhile (the server
/// closes a connection it hears nothing from); an error once the connection ends.
pub async fn next_message(ws: &mut Ws, ping: &mut tokio::time::Interval) -> anyhow::Result<Json> {
    use futures::{SinkExt, StreamExt};
    loop {
        let frame = tokio::select! {
            frame = ws.next() => frame,
            _ = ping.tick() => {
                ws.send(Message::text(r#"{"type":"ping"}"#)).await?;
                continue;
            }
        };
        match frame.map(|f| f.map(server_message)) {
            None => bail!("the connection ended"),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(None)) => continue,
            Some(Ok(Some(m))) => return m,
        }
    }
}

/// Logs in as `server` says, opens `/v1/ws` and sends `request`: the connection, or the
/// failure as a dropped connection (to retry).
pub async fn open_with(
    http: &reqwest::Client,
    base: &str,
    server: &ServerArgs,
    request: &Json,
) -> Result<Ws, End> {
    let token = login(http, base, &server.user, &server.password)
        .await
        .map_err(End::Dropped)?;
    open_and_send(base, &token, request).await
}

/// Opens `/v1/ws` with `token` and sends `request`: the connection, or the failure as a
/// dropped connection (to retry).
pub async fn open_and_send(base: &str, token: &str, request: &Json) -> Result<Ws, End> {
    use futures::SinkExt;
    let mut ws = open_ws(base, token).await.map_err(End::Dropped)?;
    ws.send(Message::text(request.to_string()))
        .await
        .map_err(|e| End::Dropped(e.into()))?;
    Ok(ws)
}

/// Runs a client command on a runtime of its own until it ends, or until Ctrl-C (a clean
/// exit).
pub fn until_ctrl_c(
    command: impl std::future::Future<Output = anyhow::Result<std::process::ExitCode>>,
) -> anyhow::Result<std::process::ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        tokio::select! {
            r = command => r,
            _ = tokio::signal::ctrl_c() => Ok(std::process::ExitCode::SUCCESS),
        }
    })
}
