//! The HTTP listener (API.md 1.2): accepts connections, serves the warp filter on each with
//! hyper, and protects the node from any one address before a request reaches a handler.
//!
//! - A connection must send its request head within the header timeout, and an idle
//!   keep-alive connection is closed after the same time (hyper times the wait for the next
//!   head from the moment the previous response went out).
//! - At most `max_connections_per_ip` connections per address: the next one is answered
//!   `503 TOO_MANY_CONNECTIONS` and closed.
//! - At most `requests_per_ip_per_sec` requests per address and second: the rest are
//!   answered `429 RATE_LIMIT_EXCEEDED` with `Retry-After: 1`.
//!
//! warp's own server sets no timer (so no timeout at all) and keeps the peer address in a
//! private type; this listener puts it in the request as [`Peer`], read with
//! `warp::ext::optional`. warp's body type cannot be built from a stream outside warp either:
//! a handler that streams its body puts it in the response as [`Streamed`], and this
//! listener sends that instead.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use warp::filters::BoxedFilter;
use warp::http::{Response, StatusCode};
use warp::reply::Reply;

/// The peer address of the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// A response body produced as it is sent. A stream that ends in an error aborts the
/// response: the client sees the body cut short (chunked encoding never terminated), never a
/// complete one.
pub type BodyStream = std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// The body of a response that carries it in its extensions: taken out and sent in place of
/// the (empty) body warp has.
#[derive(Clone)]
pub struct Streamed(Arc<Mutex<Option<BodyStream>>>);

impl Streamed {
    pub fn new(body: BodyStream) -> Streamed {
        Streamed(Arc::new(Mutex::new(Some(body))))
    }

    fn take(&self) -> Option<BodyStream> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl std::fmt::Debug for Streamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streamed").finish_non_exhaustive()
    }
}

type Body = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// `response` with its body ready for hyper: the [`Streamed`] one if it carries one.
fn send(mut response: warp::reply::Response) -> Response<Body> {
    match response
        .extensions_mut()
        .remove::<Streamed>()
        .and_then(|s| s.take())
    {
        Some(stream) => response.map(|_| {
            let body = http_body_util::StreamBody::new(stream.map_ok(hyper::body::Frame::data));
            BodyExt::map_err(body, Into::into).boxed_unsync()
        }),
        None => response.map(|b| b.map_err(Into::into).boxed_unsync()),
    }
}

/// Limits of the listener; see README's configuration table.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub header_read_timeout: Duration,
    pub max_connections_per_ip: usize,
    /// 0: unlimited.
    pub requests_per_ip_per_sec: u32,
}

/// Per-address bookkeeping: open connections, and requests in the current second.
#[derive(Debug, Default)]
struct PerIp {
    connections: usize,
    second: u64,
    requests: u32,
}

/// Entries kept before addresses with nothing open and no recent request are swept.
const SWEEP_AT: usize = 10_000;

#[derive(Debug, Default)]
struct Addresses {
    map: Mutex<HashMap<IpAddr, PerIp>>,
}

impl Addresses {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, PerIp>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One more connection from `ip`, or `Err(open)` when it has `max` open already.
    fn connect(&self, ip: IpAddr, max: usize) -> Result<(), usize> {
        let mut map = self.lock();
        if map.len() > SWEEP_AT {
            let now = now_s();
            map.retain(|_, e| e.connections > 0 || e.second >= now);
        }
        let e = map.entry(ip).or_default();
        if e.connections >= max {
            return Err(e.connections);
        }
        e.connections += 1;
        Ok(())
    }

    fn disconnect(&self, ip: IpAddr) {
        if let Some(e) = self.lock().get_mut(&ip) {
            e.connections = e.connections.saturating_sub(1);
        }
    }

    /// Counts a request from `ip`; false when over `limit` this second.
    fn admit(&self, ip: IpAddr, limit: u32) -> bool {
        if limit == 0 {
            return true;
        }
        let now = now_s();
        let mut map = self.lock();
        let e = map.entry(ip).or_default();
        if e.second != now {
            e.second = now;
            e.requests = 0;
        }
        e.requests = e.requests.saturating_add(1);
        e.requests <= limit
    }
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Gives the connection slot back however the connection ends.
struct Slot {
    addresses: Arc<Addresses>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.addresses.disconnect(self.ip);
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> warp::reply::Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

fn too_many_requests() -> warp::reply::Response {
    let mut r = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        &json!({"error": "RATE_LIMIT_EXCEEDED",
                "message": "Too many requests from this address; retry shortly",
                "retry_after_seconds": 1}),
    );
    r.headers_mut()
        .insert("retry-after", warp::http::HeaderValue::from_static("1"));
    r
}

/// Answers a connection over the per-address limit with a 503 and closes it.
async fn refuse(mut stream: tokio::net::TcpStream, open: usize, max: usize) {
    let body = json!({"error": "TOO_MANY_CONNECTIONS",
                      "message": "Too many connections from this address",
                      "current": open, "max": max})
    .to_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// Serves `filter` on `listener` until `shutdown` resolves; then every connection finishes
/// the request it is answering and closes (idle ones at once), for at most `drain`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    filter: BoxedFilter<(warp::reply::Response,)>,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let addresses = Arc::new(Addresses::default());
    // Open connections, and the signal that asks them to close.
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let ip = peer.ip();
        if let Err(open) = addresses.connect(ip, limits.max_connections_per_ip) {
            tokio::spawn(refuse(stream, open, limits.max_connections_per_ip));
            continue;
        }
        let slot = Slot {
            addresses: addresses.clone(),
            ip,
        };
        let service = warp::service(filter.clone());
        let per_ip = limits.requests_per_ip_per_sec;
        let admit = addresses.clone();
        let handler = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            let mut service = service.clone();
            // Peers' raft RPCs (authenticated by the cluster secret) are not a client's
            // requests: heartbeats alone would use up a loopback cluster's allowance.
            let admitted = req.uri().path().starts_with("/v1/raft/") || admit.admit(ip, per_ip);
            req.extensions_mut().insert(Peer(peer));
            // The WebSocket handshake (`crate::ws`) takes the upgrade handle from here.
            if let Some(on) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() {
                req.extensions_mut().insert(crate::ws::Upgrade::new(on));
            }
            async move {
                if !admitted {
                    return Ok::<_, Infallible>(send(too_many_requests()));
                }
                tower_service::Service::call(&mut service, req)
                    .await
                    .map(send)
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        let conn = builder
            .serve_connection(TokioIo::new(QuickAck(stream)), handler)
            .with_upgrades();
        let counted = Counted::new(open.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _counted = counted;
            let mut conn = std::pin::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + drain;
    while open.load(std::sync::atomic::Ordering::Relaxed) > 0 {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("connections still open at shutdown");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Counts one open connection while it lives.
struct Counted(Arc<std::sync::atomic::AtomicUsize>);

impl Counted {
    fn new(count: Arc<std::sync::atomic::AtomicUsize>) -> Counted {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Counted(count)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The response of a request that did not come in time (a body sent too slowly).
pub fn request_timeout() -> Response<Vec<u8>> {
    let body = json!({"error": "REQUEST_TIMEOUT",
                      "message": "The request body did not arrive in time"});
    let mut r = Response::new(serde_json::to_vec(&body).unwrap_or_default());
    *r.status_mut() = StatusCode::REQUEST_TIMEOUT;
    r.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_and_requests_are_counted_per_address() {
        let a = Addresses::default();
        let (x, y): (IpAddr, IpAddr) = ([127, 0, 0, 1].into(), [127, 0, 0, 2].into());
        assert!(a.connect(x, 2).is_ok());
        assert!(a.connect(x, 2).is_ok());
        assert_eq!(a.connect(x, 2), Err(2));
        assert!(
            a.connect(y, 2).is_ok(),
            "another address has its own budget"
        );
        a.disconnect(x);
        assert!(a.connect(x, 2).is_ok());
        assert!((0..3).all(|_| a.admit(x, 3)));
        assert!(!a.admit(x, 3));
        assert!(a.admit(y, 3));
        assert!(a.admit(x, 0), "0 is unlimited");
    }
}

/// An accepted connection that acknowledges what it reads at once (`TCP_QUICKACK`, set
/// again after every read: Linux clears it as a connection turns interactive). A client
/// that leaves Nagle's algorithm on (KalamDB's SDK does, on its WebSocket) holds a small
/// frame until its previous one is acknowledged; with the kernel's delayed ACK that is up
/// to 40 ms whenever the server has nothing to answer it with (an unsubscribe, the body of
/// a request whose head went first).
#[derive(Debug)]
pub struct QuickAck(pub tokio::net::TcpStream);

impl QuickAck {
    fn ack_now(&self) {
        // A failure only costs the delay it avoids.
        let _ = rustix::net::sockopt::set_tcp_quickack(&self.0, true);
    }
}

impl tokio::io::AsyncRead for QuickAck {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(polled, std::task::Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.ack_now();
        }
        polled
    }
}

impl tokio::io::AsyncWrite for QuickAck {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
