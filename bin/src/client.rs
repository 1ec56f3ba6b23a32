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
