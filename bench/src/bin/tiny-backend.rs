//! `tiny-backend`: the fixed HTTP backend the proxy benchmarks put behind each proxy
//! (`wharf-bench proxy`, `wharf-bench websockets`).
//!
//! It listens on `127.0.0.1:$PORT`, answers every plain request (any method, any path) with
//! the same 100-byte `text/plain` body, and accepts a WebSocket upgrade on any path, echoing
//! text and binary messages back and otherwise keeping the connection open and idle. It is
//! written in Rust on hyper so that the backend is never what limits a proxy's numbers, and
//! it runs as a Wharf service app unchanged (Wharf sets `PORT`).
//!
//! `TINY_BACKEND_THREADS` sets the number of tokio worker threads (default 1).

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_KEY, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

/// Exactly 100 bytes.
const BODY: &[u8; 100] =
    b"tiny-backend: a fixed 100-byte answer for the Wharf proxy benchmarks (wharf-bench proxy).......end.\n";

fn text_response(status: StatusCode, body: &'static [u8]) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

fn is_websocket_upgrade(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get(UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"))
}

/// Small buffers: the WebSocket benchmark holds 10,000 idle connections.
fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(1 << 20)
}

/// Echoes text and binary messages until the peer closes.
async fn echo(upgraded: hyper::upgrade::Upgraded) {
    let socket = WebSocketStream::from_raw_socket(
        TokioIo::new(upgraded),
        Role::Server,
        Some(websocket_config()),
    )
    .await;
    let (mut sink, mut stream) = socket.split();
    while let Some(Ok(message)) = stream.next().await {
        if (message.is_text() || message.is_binary()) && sink.send(message).await.is_err() {
            break;
        }
    }
}

fn accept_websocket(mut request: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(key) = request.headers().get(SEC_WEBSOCKET_KEY) else {
        return text_response(
            StatusCode::BAD_REQUEST,
            b"a WebSocket upgrade needs a Sec-WebSocket-Key header\n",
        );
    };
    let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) else {
        return text_response(StatusCode::INTERNAL_SERVER_ERROR, b"bad accept key\n");
    };
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        if let Ok(upgraded) = upgrade.await {
            echo(upgraded).await;
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert("sec-websocket-accept", accept);
    response
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if is_websocket_upgrade(&request) {
        return Ok(accept_websocket(request));
    }
    Ok(text_response(StatusCode::OK, BODY))
}

async fn serve(address: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    println!("tiny-backend listening on http://{address}");
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: wait a moment rather than spin.
                eprintln!("tiny-backend: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(answer))
                .with_upgrades();
            let _ = connection.await;
        });
    }
}

fn main() -> ExitCode {
    let port = match std::env::var("PORT").map(|text| text.trim().parse::<u16>()) {
        Ok(Ok(port)) => port,
        Ok(Err(error)) => {
            eprintln!("tiny-backend: PORT is not a port number ({error}); set PORT=8080, say");
            return ExitCode::from(2);
        }
        Err(_) => {
            eprintln!("tiny-backend: set PORT to the loopback port to listen on, e.g. PORT=8080");
            return ExitCode::from(2);
        }
    };
    let threads = match std::env::var("TINY_BACKEND_THREADS") {
        Err(_) => 1,
        Ok(text) => match text.trim().parse::<usize>() {
            Ok(threads) if threads >= 1 => threads,
            _ => {
                eprintln!("tiny-backend: TINY_BACKEND_THREADS={text:?} is not a positive number");
                return ExitCode::from(2);
            }
        },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tiny-backend: cannot start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match runtime.block_on(serve(address)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tiny-backend: cannot listen on {address}: {error}");
            ExitCode::FAILURE
        }
    }
}
