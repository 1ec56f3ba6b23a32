//! The WebSocket handshake of `/v1/ws` (RFC 6455 section 4.2), done here rather than by
//! warp's `ws()` filter so that the socket's buffers are ours to size: warp offers no read
//! buffer setting, and tungstenite's default (128 KiB, zero-filled before every read) made
//! the server spend more time clearing memory than parsing subscribe messages once
//! thousands of subscriptions arrived at once.
//!
//! The HTTP server ([`crate::http`]) moves each request's upgrade handle into an
//! [`Upgrade`] extension; the [`handshake`] filter checks the request's headers and takes
//! it; [`Handshake::accept`] answers `101 Switching Protocols` and, once hyper hands the
//! connection over, runs the caller's task on the [`Socket`].

use std::future::Future;
use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use warp::Filter;
use warp::http::{HeaderMap, StatusCode, header};
use warp::reply::{Reply, Response};

/// A server's end of an upgraded `/v1/ws` connection.
pub type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Bytes read from the socket at a time: a few dozen client messages. Each read clears this
/// much of the buffer first, and each connection holds one.
pub const READ_BUFFER_BYTES: usize = 8 << 10;

/// A request's upgrade handle, as a request extension (extensions a warp filter reads must
/// be `Clone`; the handle is taken once).
#[derive(Clone, Default)]
pub struct Upgrade(Arc<Mutex<Option<hyper::upgrade::OnUpgrade>>>);

impl Upgrade {
    pub fn new(on: hyper::upgrade::OnUpgrade) -> Upgrade {
        Upgrade(Arc::new(Mutex::new(Some(on))))
    }

    fn take(&self) -> Option<hyper::upgrade::OnUpgrade> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// A valid WebSocket upgrade request, ready to be accepted.
pub struct Handshake {
    accept_key: String,
    upgrade: Option<Upgrade>,
}

impl Handshake {
    /// The handshake `headers` ask for: a GET's `Connection: upgrade`, `Upgrade: websocket`,
    /// `Sec-WebSocket-Version: 13` and a `Sec-WebSocket-Key`; none otherwise.
    fn of(headers: &HeaderMap, upgrade: Option<Upgrade>) -> Option<Handshake> {
        let value = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let connection_upgrades = value(header::CONNECTION).is_some_and(|v| {
            v.split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
        });
        let to_websocket =
            value(header::UPGRADE).is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
        let version_13 = value(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v.trim() == "13");
        let key = value(header::SEC_WEBSOCKET_KEY)?.trim();
        (connection_upgrades && to_websocket && version_13 && !key.is_empty()).then(|| Handshake {
            accept_key: derive_accept_key(key.as_bytes()),
            upgrade,
        })
    }

    /// Answers `101 Switching Protocols` and spawns `serve` on the socket once the
    /// connection is handed over, with messages of at most `max_message_bytes`. A request
    /// that cannot be upgraded (no upgrade handle: not HTTP/1.1) gets 400.
    pub fn accept<F, U>(self, max_message_bytes: usize, serve: F) -> Response
    where
        F: FnOnce(Socket) -> U + Send + 'static,
        U: Future<Output = ()> + Send + 'static,
    {
        let Some(on) = self.upgrade.as_ref().and_then(Upgrade::take) else {
            return warp::reply::with_status(
                "This connection cannot be upgraded to a WebSocket",
                StatusCode::BAD_REQUEST,
            )
            .into_response();
        };
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES)
            .max_message_size(Some(max_message_bytes));
        tokio::spawn(async move {
            match on.await {
                Ok(upgraded) => {
                    let io = TokioIo::new(upgraded);
                    serve(WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await)
                        .await;
                }
                Err(e) => tracing::debug!(error = %e, "a WebSocket upgrade did not complete"),
            }
        });
        let reply = warp::reply::with_status(warp::reply(), StatusCode::SWITCHING_PROTOCOLS);
        let reply = warp::reply::with_header(reply, header::CONNECTION, "upgrade");
        let reply = warp::reply::with_header(reply, header::UPGRADE, "websocket");
        warp::reply::with_header(reply, header::SEC_WEBSOCKET_ACCEPT, self.accept_key)
            .into_response()
    }
}

/// Matches a WebSocket upgrade request (see [`Handshake::of`]); any other request is left to
/// the routes after it (a 404, as for any path without a handler).
pub fn handshake() -> impl Filter<Extract = (Handshake,), Error = warp::Rejection> + Clone {
    warp::get()
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<Upgrade>())
        .and_then(|headers: HeaderMap, upgrade: Option<Upgrade>| async move {
            Handshake::of(&headers, upgrade).ok_or_else(warp::reject::not_found)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    header::HeaderName::from_static(k),
                    v.parse().expect("a header value"),
                )
            })
            .collect()
    }

    const VALID: [(&str, &str); 4] = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn a_valid_request_is_answered_with_the_rfcs_accept_key() {
        let h = Handshake::of(&headers(&VALID), None).expect("a handshake");
        // RFC 6455 section 1.3's example.
        assert_eq!(h.accept_key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn a_request_missing_any_part_of_the_handshake_is_not_one() {
        for drop in 0..VALID.len() {
            let some: Vec<_> = VALID
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != drop)
                .map(|(_, p)| *p)
                .collect();
            assert!(Handshake::of(&headers(&some), None).is_none(), "{some:?}");
        }
        let mut wrong = VALID;
        wrong[2] = ("sec-websocket-version", "8");
        assert!(Handshake::of(&headers(&wrong), None).is_none());
        wrong = VALID;
        wrong[1] = ("upgrade", "h2c");
        assert!(Handshake::of(&headers(&wrong), None).is_none());
    }

    #[test]
    fn without_an_upgrade_handle_the_request_is_refused() {
        let h = Handshake::of(&headers(&VALID), None).expect("a handshake");
        let r = h.accept(1 << 20, |_socket| async {});
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
}
