use super::*;
use http::Request;

use crate::chunked::{MAX_CHUNK_LINE, MAX_TRAILERS};

fn check_chunked(input: &[u8], expect: Result<&[u8], &str>) {
    // Fed whole, and one byte at a time: the decoder must not depend on how reads split.
    for step in [input.len().max(1), 1] {
        let mut state = Chunked::Size {
            value: 0,
            digits: 0,
        };
        let mut buffer = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        let outcome = loop {
            match decode_chunked(&mut state, &mut buffer) {
                Ok(Decoded::Data(data)) => body.extend_from_slice(&data),
                Ok(Decoded::End) => break Ok(()),
                Ok(Decoded::NeedMore) if fed < input.len() => {
                    let end = (fed + step).min(input.len());
                    buffer.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
                Ok(Decoded::NeedMore) => break Err("incomplete".to_owned()),
                Err(error) => break Err(error.to_string()),
            }
        };
        match (&outcome, expect) {
            (Ok(()), Ok(expected)) => {
                assert_eq!(body, expected, "{:?}", String::from_utf8_lossy(input));
                assert!(buffer.is_empty() && fed == input.len(), "bytes left over");
            }
            (Err(error), Err(expected)) => assert!(
                error.contains(expected),
                "{:?}: {error:?} does not name {expected:?}",
                String::from_utf8_lossy(input)
            ),
            _ => panic!(
                "{:?}: got {outcome:?} and {body:?}, expected {expect:?}",
                String::from_utf8_lossy(input)
            ),
        }
    }
}

#[test]
fn chunked_bodies_are_decoded_and_bad_framing_is_refused() {
    check_chunked(b"0\r\n\r\n", Ok(b""));
    check_chunked(b"5\r\nhello\r\n0\r\n\r\n", Ok(b"hello"));
    check_chunked(
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        Ok(b"hello world"),
    );
    check_chunked(b"A\r\n0123456789\r\n0\r\n\r\n", Ok(b"0123456789"));
    check_chunked(
        b"a;name=value\r\n0123456789\r\n0\r\n\r\n",
        Ok(b"0123456789"),
    );
    check_chunked(b"3 \r\nabc\r\n0\r\n\r\n", Ok(b"abc"));
    check_chunked(
        b"3\r\nabc\r\n0\r\nExpires: never\r\nX-A: b\r\n\r\n",
        Ok(b"abc"),
    );
    check_chunked(b"\r\nabc\r\n", Err("chunk size is missing"));
    check_chunked(b"zz\r\nabc\r\n", Err("not hexadecimal"));
    check_chunked(b"11111111111111111\r\n", Err("too large"));
    check_chunked(b"3\nabc\r\n0\r\n\r\n", Err("does not end in CRLF"));
    check_chunked(b"3\r\nabcd\r\n0\r\n\r\n", Err("does not end in CRLF"));
    check_chunked(b"3\r\nabc\r\n0\r\nX: y\n\r\n", Err("does not end in CRLF"));
    check_chunked(b"3\r\nabc\r\n", Err("incomplete"));
    let long_extension = format!("3;{}\r\nabc\r\n0\r\n\r\n", "x".repeat(MAX_CHUNK_LINE));
    check_chunked(long_extension.as_bytes(), Err("too long"));
    let long_trailer = format!("0\r\nX: {}\r\n\r\n", "y".repeat(MAX_TRAILERS));
    check_chunked(long_trailer.as_bytes(), Err("too long"));
}

fn head(text: &str, request_was_head: bool) -> Result<(Incoming, usize), String> {
    let mut buffer = BytesMut::from(text.as_bytes());
    let mut incoming = take_head(&mut buffer)
        .map_err(|error| error.to_string())?
        .ok_or("partial")?;
    incoming.framing = framing(&incoming, request_was_head).map_err(|error| error.to_string())?;
    incoming.keep_alive &= !matches!(incoming.framing, Framing::UntilClose);
    Ok((incoming, text.len() - buffer.len()))
}

#[test]
fn response_heads_decide_framing_and_keep_alive() {
    let check = |text: &str, was_head: bool, expect: Result<(Framing, bool), &str>| {
        let outcome =
            head(text, was_head).map(|(incoming, _)| (incoming.framing, incoming.keep_alive));
        match (outcome, expect) {
            (Ok(got), Ok(expected)) => assert_eq!(got, expected, "{text:?}"),
            (Err(error), Err(expected)) => {
                assert!(
                    error.contains(expected),
                    "{text:?}: {error:?} does not name {expected:?}"
                )
            }
            (got, expected) => panic!("{text:?}: got {got:?}, expected {expected:?}"),
        }
    };
    let chunked = Framing::Chunked(Chunked::Size {
        value: 0,
        digits: 0,
    });
    check(
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
        false,
        Ok((Framing::Length(5), true)),
    );
    check(
        "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
        false,
        Ok((Framing::Length(5), true)),
    );
    check(
        "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        false,
        Ok((Framing::Empty, true)),
    );
    check(
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
        true,
        Ok((Framing::Empty, true)),
    );
    check(
        "HTTP/1.1 204 No Content\r\n\r\n",
        false,
        Ok((Framing::Empty, true)),
    );
    check(
        "HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n",
        false,
        Ok((Framing::Empty, true)),
    );
    check(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        false,
        Ok((chunked, true)),
    );
    check(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\ncontent-length: 3\r\n\r\n",
        false,
        Ok((chunked, true)),
    );
    check(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
        false,
        Ok((Framing::UntilClose, false)),
    );
    check(
        "HTTP/1.1 200 OK\r\n\r\n",
        false,
        Ok((Framing::UntilClose, false)),
    );
    check(
        "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n",
        false,
        Ok((Framing::Length(1), false)),
    );
    check(
        "HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n",
        false,
        Ok((Framing::Length(1), false)),
    );
    check(
        "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\ncontent-length: 1\r\n\r\n",
        false,
        Ok((Framing::Length(1), true)),
    );
    check(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
        false,
        Ok((Framing::Upgrade, true)),
    );
    check(
        "HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\n",
        false,
        Err("different Content-Length"),
    );
    check(
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
        false,
        Err("different Content-Length"),
    );
    check(
        "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        false,
        Err("not a number"),
    );
    check(
        "HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n",
        false,
        Err("not a number"),
    );
    check(
        "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999999\r\n\r\n",
        false,
        Err("not a number"),
    );
    check("HTTP/1.1 2000 OK\r\n\r\n", false, Err("bad response head"));
    check(
        "HTTP/1.1 099 Odd\r\n\r\n",
        false,
        Err("status code 99 is not valid"),
    );
    check("HTTP/2 200 OK\r\n\r\n", false, Err("bad response head"));
    check(
        "HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        false,
        Err("bad response head"),
    );
    check(
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n",
        false,
        Err("partial"),
    );
    let many: String = (0..=MAX_HEADERS)
        .map(|index| format!("x-{index}: y\r\n"))
        .collect();
    check(
        &format!("HTTP/1.1 200 OK\r\n{many}\r\n"),
        false,
        Err("more than 100 headers"),
    );

    let (incoming, used) = head(
        "HTTP/1.1 200 OK\r\nx-a: 1\r\nX-A: 2\r\nserver: r\r\n\r\nbody",
        false,
    )
    .unwrap();
    assert_eq!(used, 46);
    let values: Vec<_> = incoming.response.headers().get_all("x-a").iter().collect();
    assert_eq!(values, ["1", "2"]);
    assert_eq!(incoming.response.headers()["server"], "r");
}

#[test]
fn request_heads_frame_their_bodies() {
    let check = |request: Request<Body>, expect: &str, resend: bool| {
        let outgoing = Outgoing::from_request(request);
        assert_eq!(String::from_utf8(outgoing.head.clone()).unwrap(), expect);
        assert_eq!(outgoing.can_resend(), resend);
    };
    let build = |method: &str, uri: &str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "app")
            .header("content-length", "999")
            .header("transfer-encoding", "chunked")
    };
    check(
        build("GET", "/a?b=c").body(Body::empty()).unwrap(),
        "GET /a?b=c HTTP/1.1\r\nhost: app\r\n\r\n",
        true,
    );
    check(
        build("POST", "/").body(Body::empty()).unwrap(),
        "POST / HTTP/1.1\r\nhost: app\r\ncontent-length: 0\r\n\r\n",
        true,
    );
    check(
        build("POST", "/").body(Body::from("hello")).unwrap(),
        "POST / HTTP/1.1\r\nhost: app\r\ncontent-length: 5\r\n\r\n",
        false,
    );
    let stream = Body::from_stream(futures::stream::iter([Ok::<_, std::io::Error>(
        Bytes::from_static(b"abc"),
    )]));
    check(
        build("PUT", "/x").body(stream).unwrap(),
        "PUT /x HTTP/1.1\r\nhost: app\r\ntransfer-encoding: chunked\r\n\r\n",
        false,
    );
}

/// A replica that takes one connection, reads until the request ends with `request_end`,
/// answers with `parts` (written apart, so reads split them), then closes if `close`.
/// Resolves to the request bytes it got.
async fn scripted_replica(
    request_end: &'static [u8],
    parts: Vec<&'static [u8]>,
    close: bool,
) -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while !got.ends_with(request_end) {
            let read = stream.read(&mut chunk).await.unwrap();
            assert!(read > 0, "the request ended early: {got:?}");
            got.extend_from_slice(&chunk[..read]);
        }
        for part in parts {
            stream.write_all(part).await.unwrap();
            stream.flush().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        if !close {
            // Hold the connection open until the client closes it (the test does not wait).
            tokio::spawn(async move {
                let _ = stream.read(&mut [0u8; 1]).await;
            });
        }
        got
    });
    (addr, task)
}

/// Sends `request` to `addr` on a new connection and collects the whole response.
async fn round_trip(
    addr: SocketAddr,
    request: Request<Body>,
) -> Result<(StatusCode, HeaderMapSnapshot, Vec<u8>), String> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut connection = Connection::new(stream);
    let mut outgoing = Outgoing::from_request(request);
    let incoming = exchange(&mut connection, &mut outgoing)
        .await
        .map_err(|error| error.to_string())?;
    let status = incoming.response.status();
    let headers = incoming
        .response
        .headers()
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect();
    let body = ReplicaBody::new(connection, addr, &incoming);
    let bytes = body
        .collect()
        .await
        .map_err(|error| error.to_string())?
        .to_bytes();
    Ok((status, headers, bytes.to_vec()))
}

type HeaderMapSnapshot = Vec<(String, String)>;

fn get(path: &str) -> Request<Body> {
    Request::builder()
        .uri(path)
        .header("host", "app")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_chunked_answer_split_across_reads_arrives_whole_and_the_connection_is_kept() {
    let (addr, replica) = scripted_replica(
        b"\r\n\r\n",
        vec![
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-app: 1\r\n\r\n5\r\nhel",
            b"lo\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: t\r\n",
            b"\r\n",
        ],
        false,
    )
    .await;
    let (status, headers, body) = round_trip(addr, get("/chunked")).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, b"hello world");
    assert!(headers.contains(&("x-app".into(), "1".into())));
    assert_eq!(
        crate::pool::idle_count(addr),
        1,
        "kept for the next request"
    );
    let request = String::from_utf8(replica.await.unwrap()).unwrap();
    assert!(
        request.starts_with("GET /chunked HTTP/1.1\r\nhost: app\r\n"),
        "{request}"
    );
}

#[tokio::test]
async fn request_bodies_are_framed_by_length_or_chunked() {
    let (addr, replica) = scripted_replica(
        b"hello body",
        vec![b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok"],
        false,
    )
    .await;
    let request = Request::builder()
        .method("POST")
        .uri("/upload")
        .header("content-length", "10")
        .body(Body::from("hello body"))
        .unwrap();
    let (status, _, body) = round_trip(addr, request).await.unwrap();
    assert_eq!((status, body.as_slice()), (StatusCode::CREATED, &b"ok"[..]));
    let got = String::from_utf8(replica.await.unwrap()).unwrap();
    assert!(
        got.ends_with("content-length: 10\r\n\r\nhello body"),
        "{got:?}"
    );

    let (addr, replica) = scripted_replica(
        b"0\r\n\r\n",
        vec![b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"],
        false,
    )
    .await;
    let parts = ["abc", "", "defgh"].map(|part| Ok::<_, std::io::Error>(Bytes::from(part)));
    let request = Request::builder()
        .method("PUT")
        .uri("/stream")
        .body(Body::from_stream(futures::stream::iter(parts)))
        .unwrap();
    let (status, _, _) = round_trip(addr, request).await.unwrap();
    assert_eq!(status, 200);
    let got = String::from_utf8(replica.await.unwrap()).unwrap();
    assert!(
        got.ends_with("transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n"),
        "{got:?}"
    );
}

#[tokio::test]
async fn interim_answers_are_skipped_and_a_closing_answer_is_read_to_its_end() {
    let (addr, _replica) = scripted_replica(
        b"\r\n\r\n",
        vec![
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n",
            b"HTTP/1.0 200 OK\r\n\r\nuntil ",
            b"the end",
        ],
        true,
    )
    .await;
    let (status, headers, body) = round_trip(addr, get("/")).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, b"until the end");
    assert!(
        headers.is_empty(),
        "the interim answers' headers are not kept"
    );
    assert_eq!(
        crate::pool::idle_count(addr),
        0,
        "a closing connection is not kept"
    );
}

#[tokio::test]
async fn a_broken_answer_is_an_error_that_names_the_problem() {
    let check = |parts: Vec<&'static [u8]>, expect: &'static str| async move {
        let (addr, _replica) = scripted_replica(b"\r\n\r\n", parts, true).await;
        let error = round_trip(addr, get("/"))
            .await
            .expect_err("a broken answer");
        assert!(error.contains(expect), "{error:?} does not name {expect:?}");
        assert_eq!(crate::pool::idle_count(addr), 0);
    };
    check(vec![], "closed the connection before answering").await;
    check(
        vec![b"HTTP/1.1 200 OK\r\ncontent-"],
        "in the middle of a response head",
    )
    .await;
    check(vec![b"SSH-2.0-OpenSSH\r\n\r\n"], "bad response head").await;
    check(
        vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"],
        "5 bytes of the body still to come",
    )
    .await;
    check(
        vec![b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel"],
        "in the middle of a chunked body",
    )
    .await;
    check(
        vec![b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nxyz\r\n"],
        "not hexadecimal",
    )
    .await;
}

#[tokio::test]
async fn an_early_answer_stops_the_upload_and_is_passed_on() {
    // The replica reads only the head, answers 413, and never reads the 16 MiB body: the
    // body cannot all fit in socket buffers, so waiting for it to be sent would hang.
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let replica = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        while !got.windows(4).any(|window| window == b"\r\n\r\n") {
            let mut chunk = [0u8; 1024];
            let read = stream.read(&mut chunk).await.unwrap();
            got.extend_from_slice(&chunk[..read]);
        }
        stream
            .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\n\r\ntoo big!")
            .await
            .unwrap();
        // Holds the connection without reading more, as a replica that has answered may.
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    });
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let parts = (0..256).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
    let request = Request::builder()
        .method("POST")
        .uri("/upload")
        .header("host", "app")
        .body(Body::from_stream(futures::stream::iter(parts)))
        .unwrap();
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        round_trip(addr, request),
    )
    .await
    .expect("the early answer arrives while the body is still being sent");
    let (status, _, body) = answer.unwrap();
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::PAYLOAD_TOO_LARGE, &b"too big!"[..])
    );
    assert_eq!(
        crate::pool::idle_count(addr),
        0,
        "a connection with half a body sent is not kept"
    );
    replica.abort();
}
