//! Health probes of replicas: one `GET` of the health path on a fresh connection.

use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;

/// Why a probe got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("nothing listens on {0} yet")]
    Connect(SocketAddr),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the answer was not HTTP: {0}")]
    Http(String),
}

/// Sends `GET path` to `addr` and returns the status. A replica counts as ready when it
/// answers at all with a status below 500 (a Plumber API without a `/` endpoint answers
/// 404 there, and is up).
pub async fn probe(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<StatusCode, ProbeError> {
    tokio::time::timeout(timeout, probe_once(addr, path))
        .await
        .map_err(|_| ProbeError::Timeout(timeout))?
}

async fn probe_once(addr: SocketAddr, path: &str) -> Result<StatusCode, ProbeError> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|_| ProbeError::Connect(addr))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| ProbeError::Http(error.to_string()))?;
    let connection = tokio::spawn(connection);
    let request = Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .header(http::header::USER_AGENT, "wharf-health-check")
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|error| ProbeError::Http(error.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| ProbeError::Http(error.to_string()))?;
    connection.abort();
    Ok(response.status())
}
