//! HTTP/1.1 to replicas, written for the proxy's one job: a request out, a response head in,
//! then the response body read from the socket by the task that sends it to the client.
//!
//! hyper's client runs each connection as a task of its own and hands messages and body
//! chunks to the request through channels; that machinery cost more instructions per
//! proxied request than everything else Wharf does (see `wharf-bench proxy-instructions`).
//! Here the request task does the I/O itself. What it implements (RFC 9112):
//! - the request head with the body framed by `Content-Length` when its size is known, else
//!   chunked; the body is written while the answer is awaited, and a replica that answers
//!   early (413, 401) stops it: the rest is not sent and the connection is closed after;
//! - interim `1xx` responses are skipped (`Expect: 100-continue` reaches the replica);
//!   `101 Switching Protocols` hands the connection over ([`ReplicaBody::into_upgraded`]);
//! - response bodies: none (`HEAD`, 204, 304), `Transfer-Encoding` (chunked, else until the
//!   connection closes), `Content-Length` (every value equal, digits only), else until close;
//! - keep-alive: HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with `keep-alive`; a
//!   connection goes back to the pool when its body ended and nothing follows it.
//!
//! Limits: a response head of at most [`MAX_HEAD`] bytes and [`MAX_HEADERS`] headers;
//! chunk-size lines and trailers are bounded too. Anything malformed is an error, never a
//! guess, and the connection is not reused.

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::chunked::{decode_chunked, Chunked, Decoded};

/// The largest response head read (status line and headers).
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// The most headers in a response head (hyper's limit too).
pub(crate) const MAX_HEADERS: usize = 100;
/// How much room is made for reading from the socket, when less than `MIN_ROOM` is left.
const READ_SIZE: usize = 16 * 1024;
const MIN_ROOM: usize = 2 * 1024;

/// Room to read into. Heads and bodies are split off the buffer and live on as shared
/// bytes, so a new allocation is made only when little room is left, not per read.
fn make_room(buffer: &mut BytesMut) {
    if buffer.capacity() - buffer.len() < MIN_ROOM {
        buffer.reserve(READ_SIZE);
    }
}

/// A connection to a replica, and what was read from it but not used yet.
pub(crate) struct Connection {
    pub(crate) stream: TcpStream,
    buffer: BytesMut,
}

impl Connection {
    pub(crate) fn new(stream: TcpStream) -> Connection {
        Connection {
            stream,
            buffer: BytesMut::new(),
        }
    }

    /// Whether an idle connection can carry a request: the replica has not closed it and
    /// sent nothing unasked. Costs a syscall only when the socket looks readable.
    pub(crate) fn is_usable(&self) -> bool {
        if !self.buffer.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(error) if error.kind() == io::ErrorKind::WouldBlock)
    }
}

async fn read_more(
    stream: &mut (impl AsyncRead + Unpin),
    buffer: &mut BytesMut,
) -> io::Result<usize> {
    make_room(buffer);
    tokio::io::AsyncReadExt::read_buf(stream, buffer).await
}

/// Why an exchange with a replica failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    /// The connection was closed or reset before any byte of a response arrived (a kept
    /// connection the replica closed just then: the request may be sent again).
    #[error("the replica closed the connection before answering")]
    ClosedBeforeAnswer,
    #[error("the connection failed: {0}")]
    Io(#[from] io::Error),
    #[error("the replica's answer is not valid HTTP/1.1: {0}")]
    Protocol(String),
    #[error("the request body failed: {0}")]
    RequestBody(String),
}

pub(crate) fn protocol(message: impl Into<String>) -> ExchangeError {
    ExchangeError::Protocol(message.into())
}

/// A request head serialised, kept so a request without a body can be sent again.
pub(crate) struct Outgoing {
    head: Vec<u8>,
    body: Option<Body>,
    framing: RequestFraming,
    is_head: bool,
}

enum RequestFraming {
    None,
    Length(u64),
    Chunked,
}

impl Outgoing {
    /// Serialises a request's head, with `added` (lower-case names, valid values) in place
    /// of any headers of those names the request has. The proxy's own headers go in here
    /// rather than into the request's map: inserting into a full `HeaderMap` rehashes it,
    /// which cost more than writing the whole head.
    pub(crate) fn new(
        parts: &http::request::Parts,
        body: Body,
        added: &[(&str, &[u8])],
    ) -> Outgoing {
        let hint = body.size_hint();
        let (framing, body) = if body.is_end_stream() {
            (RequestFraming::None, None)
        } else {
            match hint.exact() {
                Some(0) => (RequestFraming::None, None),
                Some(length) => (RequestFraming::Length(length), Some(body)),
                None => (RequestFraming::Chunked, Some(body)),
            }
        };
        let mut head = Vec::with_capacity(512);
        head.extend_from_slice(parts.method.as_str().as_bytes());
        head.push(b' ');
        let target = parts
            .uri
            .path_and_query()
            .map(|path| path.as_str())
            .filter(|path| !path.is_empty())
            .unwrap_or("/");
        head.extend_from_slice(target.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in &parts.headers {
            // The body's framing is this connection's own (the client's was hop-by-hop).
            if name == header::CONTENT_LENGTH
                || name == header::TRANSFER_ENCODING
                || added.iter().any(|(replaced, _)| *replaced == name.as_str())
            {
                continue;
            }
            write_header(&mut head, name.as_str(), value.as_bytes());
        }
        for (name, value) in added {
            write_header(&mut head, name, value);
        }
        match framing {
            RequestFraming::Length(length) => {
                head.extend_from_slice(format!("content-length: {length}\r\n").as_bytes());
            }
            RequestFraming::Chunked => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
            // A method whose request usually has a body says that this one is empty.
            RequestFraming::None
                if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) =>
            {
                head.extend_from_slice(b"content-length: 0\r\n");
            }
            RequestFraming::None => {}
        }
        head.extend_from_slice(b"\r\n");
        Outgoing {
            head,
            body,
            framing,
            is_head: parts.method == Method::HEAD,
        }
    }

    /// `request` as it is, nothing added.
    #[cfg(test)]
    pub(crate) fn from_request(request: http::Request<Body>) -> Outgoing {
        let (parts, body) = request.into_parts();
        Outgoing::new(&parts, body, &[])
    }

    #[cfg(test)]
    pub(crate) fn head(&self) -> &[u8] {
        &self.head
    }

    /// Whether the request can be sent again after a failed attempt (its body is empty).
    pub(crate) fn can_resend(&self) -> bool {
        matches!(self.framing, RequestFraming::None)
    }
}

fn write_header(head: &mut Vec<u8>, name: &str, value: &[u8]) {
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// A response head, and how its body is framed.
pub(crate) struct Incoming {
    pub(crate) response: Response<()>,
    framing: Framing,
    keep_alive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked(Chunked),
    UntilClose,
    Upgrade,
}

/// Sends `outgoing` on `connection` and reads the response head. `Err(ClosedBeforeAnswer)`
/// leaves `outgoing` usable for another attempt when [`Outgoing::can_resend`].
///
/// A request body is written while the answer is awaited: a replica may answer before it
/// has read the whole body (413 for an upload too large, 401), and then no more of the body
/// is sent and the connection is not kept (RFC 9112 §9.5).
pub(crate) async fn exchange(
    connection: &mut Connection,
    outgoing: &mut Outgoing,
) -> Result<Incoming, ExchangeError> {
    if let Err(error) = connection.stream.write_all(&outgoing.head).await {
        return Err(closed_or(error));
    }
    let Some(body) = outgoing.body.take() else {
        return read_head(
            &mut connection.stream,
            &mut connection.buffer,
            outgoing.is_head,
        )
        .await;
    };
    let (mut reader, mut writer) = connection.stream.split();
    let write = write_body(&mut writer, body, &outgoing.framing);
    let read = read_head(&mut reader, &mut connection.buffer, outgoing.is_head);
    tokio::pin!(write, read);
    tokio::select! {
        biased;
        written = &mut write => match written {
            Ok(()) => read.await,
            // The client's own body failed: there is nothing to wait for.
            Err(error @ ExchangeError::RequestBody(_)) => Err(error),
            // The replica stopped reading; an answer it sent first says why.
            Err(error) => match read.await {
                Ok(mut incoming) => {
                    incoming.keep_alive = false;
                    Ok(incoming)
                }
                Err(_) => Err(error),
            },
        },
        answered = &mut read => {
            let mut incoming = answered?;
            incoming.keep_alive = false; // the rest of the body was not sent
            Ok(incoming)
        }
    }
}

/// A write or read error that means the replica had closed the connection.
fn closed_or(error: io::Error) -> ExchangeError {
    match error.kind() {
        io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::UnexpectedEof => ExchangeError::ClosedBeforeAnswer,
        _ => ExchangeError::Io(error),
    }
}

async fn write_body(
    stream: &mut (impl AsyncWrite + Unpin),
    mut body: Body,
    framing: &RequestFraming,
) -> Result<(), ExchangeError> {
    let mut sent: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| ExchangeError::RequestBody(error.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers are not forwarded
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        match framing {
            RequestFraming::Length(length) if sent > *length => {
                return Err(ExchangeError::RequestBody(format!(
                    "longer than its Content-Length of {length} bytes"
                )));
            }
            RequestFraming::Chunked => {
                let size = format!("{:x}\r\n", data.len());
                stream.write_all(size.as_bytes()).await?;
                stream.write_all(&data).await?;
                stream.write_all(b"\r\n").await?;
            }
            _ => stream.write_all(&data).await?,
        }
    }
    match framing {
        RequestFraming::Length(length) if sent != *length => Err(ExchangeError::RequestBody(
            format!("{sent} bytes where its Content-Length said {length}"),
        )),
        RequestFraming::Chunked => Ok(stream.write_all(b"0\r\n\r\n").await?),
        _ => Ok(()),
    }
}

async fn read_head(
    stream: &mut (impl AsyncRead + Unpin),
    buffer: &mut BytesMut,
    request_was_head: bool,
) -> Result<Incoming, ExchangeError> {
    let mut answered = false;
    loop {
        if let Some(incoming) = take_head(buffer)? {
            let status = incoming.response.status();
            if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
                answered = true;
                continue; // 100 Continue, 103 Early Hints: the final answer follows
            }
            let mut incoming = incoming;
            incoming.framing = framing(&incoming, request_was_head)?;
            incoming.keep_alive &= !matches!(incoming.framing, Framing::UntilClose);
            return Ok(incoming);
        }
        if buffer.len() > MAX_HEAD {
            return Err(protocol(format!(
                "its response head is longer than {} KiB",
                MAX_HEAD / 1024
            )));
        }
        match read_more(stream, buffer).await {
            Ok(0) if buffer.is_empty() && !answered => {
                return Err(ExchangeError::ClosedBeforeAnswer)
            }
            Ok(0) => {
                return Err(protocol(
                    "the connection closed in the middle of a response head",
                ))
            }
            Ok(_) => {}
            Err(error) if buffer.is_empty() && !answered => return Err(closed_or(error)),
            Err(error) => return Err(ExchangeError::Io(error)),
        }
    }
}

/// Where a header's name and value are in the head's bytes.
#[derive(Clone, Copy, Default)]
struct HeaderSpan {
    name: (u32, u32),
    value: (u32, u32),
}

/// Takes a complete response head off the front of `buffer` (`None`: not complete yet).
/// Header values share the head's bytes; keep-alive is decided from `Connection` and the
/// version.
fn take_head(buffer: &mut BytesMut) -> Result<Option<Incoming>, ExchangeError> {
    if buffer.is_empty() {
        return Ok(None); // the usual case before the first read: nothing to parse
    }
    let mut spans = [HeaderSpan::default(); MAX_HEADERS];
    let (used, code, http_10, count) = {
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let used = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut parsed,
            buffer,
            &mut headers,
        ) {
            Ok(httparse::Status::Complete(used)) => used,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(protocol(format!("more than {MAX_HEADERS} headers")))
            }
            Err(error) => return Err(protocol(format!("bad response head ({error})"))),
        };
        let base = buffer.as_ptr() as usize;
        let span = |bytes: &[u8]| ((bytes.as_ptr() as usize - base) as u32, bytes.len() as u32);
        for (slot, entry) in spans.iter_mut().zip(parsed.headers.iter()) {
            *slot = HeaderSpan {
                name: span(entry.name.as_bytes()),
                value: span(entry.value),
            };
        }
        (
            used,
            parsed.code.unwrap_or(0),
            parsed.version == Some(0),
            parsed.headers.len(),
        )
    };
    let head = buffer.split_to(used).freeze();
    let status = StatusCode::from_u16(code)
        .map_err(|_| protocol(format!("status code {code} is not valid")))?;
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = if http_10 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let map = response.headers_mut();
    map.reserve(count);
    let (mut close, mut keep_alive) = (false, false);
    for span in &spans[..count] {
        let (start, length) = (span.name.0 as usize, span.name.1 as usize);
        let name = HeaderName::from_bytes(&head[start..start + length]).map_err(|_| {
            protocol(format!(
                "header name {:?} is not valid",
                String::from_utf8_lossy(&head[start..start + length])
            ))
        })?;
        let (start, length) = (span.value.0 as usize, span.value.1 as usize);
        let value = HeaderValue::from_maybe_shared(head.slice(start..start + length))
            .map_err(|_| protocol(format!("the value of header {name} is not valid")))?;
        if name == header::CONNECTION {
            for token in value.as_bytes().split(|&byte| byte == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        map.append(name, value);
    }
    Ok(Some(Incoming {
        response,
        framing: Framing::Empty,
        keep_alive: !close && (!http_10 || keep_alive),
    }))
}

/// How the body of a final response is delimited (RFC 9112, section 6.3).
fn framing(incoming: &Incoming, request_was_head: bool) -> Result<Framing, ExchangeError> {
    let status = incoming.response.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Ok(Framing::Upgrade);
    }
    if request_was_head || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok(Framing::Empty);
    }
    let headers = incoming.response.headers();
    if headers.contains_key(header::TRANSFER_ENCODING) {
        let last = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .flat_map(|value| value.as_bytes().split(|&byte| byte == b','))
            .map(<[u8]>::trim_ascii)
            .rfind(|coding| !coding.is_empty());
        return Ok(match last {
            Some(coding) if coding.eq_ignore_ascii_case(b"chunked") => {
                Framing::Chunked(Chunked::Size {
                    value: 0,
                    digits: 0,
                })
            }
            _ => Framing::UntilClose,
        });
    }
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&byte| byte == b',') {
            let part = part.trim_ascii();
            let parsed = std::str::from_utf8(part)
                .ok()
                .filter(|text| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()))
                .and_then(|text| text.parse::<u64>().ok())
                .ok_or_else(|| protocol("its Content-Length is not a number"))?;
            if length.is_some_and(|known| known != parsed) {
                return Err(protocol("it sent different Content-Length values"));
            }
            length = Some(parsed);
        }
    }
    Ok(match length {
        Some(0) => Framing::Empty,
        Some(length) => Framing::Length(length),
        None => Framing::UntilClose,
    })
}

/// A response body read from the replica's connection as the client takes it. At its end
/// the connection goes back to this thread's pool if it can carry another request;
/// dropped early, the connection is closed.
pub(crate) struct ReplicaBody {
    connection: Option<Connection>,
    addr: SocketAddr,
    framing: Framing,
    keep_alive: bool,
}

impl ReplicaBody {
    pub(crate) fn new(connection: Connection, addr: SocketAddr, incoming: &Incoming) -> Self {
        let mut body = ReplicaBody {
            connection: Some(connection),
            addr,
            framing: incoming.framing,
            keep_alive: incoming.keep_alive,
        };
        if body.framing == Framing::Empty {
            body.finish();
        }
        body
    }

    /// The connection after `101 Switching Protocols`, with any bytes the replica already
    /// sent past the head (`None` if this response was not an upgrade). The read buffer is
    /// freed: an open WebSocket keeps no buffer while idle.
    pub(crate) fn into_upgraded(mut self) -> Option<(TcpStream, Vec<u8>)> {
        if self.framing != Framing::Upgrade {
            return None;
        }
        let connection = self.connection.take()?;
        Some((connection.stream, connection.buffer.to_vec()))
    }

    /// The body ended: a reusable connection goes back, any other is closed.
    fn finish(&mut self) {
        self.framing = Framing::Empty;
        if let Some(connection) = self.connection.take() {
            if self.keep_alive && connection.buffer.is_empty() {
                crate::pool::checkin(self.addr, connection);
            }
        }
    }

    fn poll_read(&mut self, context: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(connection) = self.connection.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        make_room(&mut connection.buffer);
        tokio_util::io::poll_read_buf(
            Pin::new(&mut connection.stream),
            context,
            &mut connection.buffer,
        )
    }

    fn buffer(&mut self) -> &mut BytesMut {
        &mut self
            .connection
            .as_mut()
            .expect("a body that has not ended holds its connection")
            .buffer
    }
}

impl http_body::Body for ReplicaBody {
    type Data = Bytes;
    type Error = ExchangeError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ExchangeError>>> {
        let this = &mut *self;
        loop {
            match this.framing {
                Framing::Empty | Framing::Upgrade => return Poll::Ready(None),
                Framing::Length(remaining) => {
                    if this.buffer().is_empty() {
                        match ready!(this.poll_read(context)) {
                            Ok(0) => {
                                return Poll::Ready(Some(Err(this.fail(protocol(format!(
                                    "the connection closed with {remaining} bytes of the body \
                                     still to come"
                                ))))));
                            }
                            Ok(_) => {}
                            Err(error) => return Poll::Ready(Some(Err(this.fail(error)))),
                        }
                    }
                    let buffer = this.buffer();
                    let take = remaining.min(buffer.len() as u64) as usize;
                    let data = buffer.split_to(take).freeze();
                    let left = remaining - take as u64;
                    this.framing = Framing::Length(left);
                    if left == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Chunked(mut state) => {
                    let decoded = decode_chunked(&mut state, this.buffer());
                    this.framing = Framing::Chunked(state);
                    match decoded {
                        Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                        Ok(Decoded::End) => {
                            this.finish();
                            return Poll::Ready(None);
                        }
                        Ok(Decoded::NeedMore) => match ready!(this.poll_read(context)) {
                            Ok(0) => {
                                return Poll::Ready(Some(Err(this.fail(protocol(
                                    "the connection closed in the middle of a chunked body",
                                )))));
                            }
                            Ok(_) => {}
                            Err(error) => return Poll::Ready(Some(Err(this.fail(error)))),
                        },
                        Err(error) => return Poll::Ready(Some(Err(this.fail(error)))),
                    }
                }
                Framing::UntilClose => {
                    if !this.buffer().is_empty() {
                        let data = this.buffer().split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    match ready!(this.poll_read(context)) {
                        Ok(0) => {
                            this.connection = None;
                            this.framing = Framing::Empty;
                            return Poll::Ready(None);
                        }
                        Ok(_) => {}
                        Err(error) => return Poll::Ready(Some(Err(this.fail(error)))),
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Empty | Framing::Upgrade)
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Empty | Framing::Upgrade => SizeHint::with_exact(0),
            Framing::Length(remaining) => SizeHint::with_exact(remaining),
            _ => SizeHint::default(),
        }
    }
}

impl ReplicaBody {
    /// Ends the body with `error`; the connection is closed, never reused.
    fn fail(&mut self, error: impl Into<ExchangeError>) -> ExchangeError {
        self.connection = None;
        self.framing = Framing::Empty;
        error.into()
    }
}

#[cfg(test)]
#[path = "h1_tests.rs"]
mod tests;
