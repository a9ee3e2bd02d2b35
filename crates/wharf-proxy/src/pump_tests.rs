use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Two ends of a real loopback TCP connection.
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (connected, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (connected.unwrap(), accepted.unwrap().0)
}

/// A client and a server with the pump between them (as the proxy sits between a browser
/// and a replica), and the pump's task.
async fn pumped(
    to_client: Vec<u8>,
) -> (
    TcpStream,
    TcpStream,
    tokio::task::JoinHandle<io::Result<()>>,
) {
    let (client, proxy_front) = tcp_pair().await;
    let (proxy_back, server) = tcp_pair().await;
    let task = tokio::spawn(pump(proxy_front, proxy_back, to_client));
    (client, server, task)
}

fn pattern(seed: u8, length: usize) -> Vec<u8> {
    (0..length)
        .map(|index| (index as u32).wrapping_mul(31).wrapping_add(seed as u32) as u8)
        .collect()
}

#[tokio::test]
async fn large_streams_cross_both_ways_at_once_intact_and_in_order() {
    // 16 MiB each way, more than loopback socket buffers hold, with the server reading late:
    // the pump must keep what the server cannot take yet and not lose or reorder it.
    let up = pattern(1, 16 << 20);
    let down = pattern(7, 16 << 20);
    let (client, server, task) = pumped(b"early".to_vec()).await;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let sent_up = up.clone();
    let client_sends = tokio::spawn(async move {
        client_write.write_all(&sent_up).await.unwrap();
        client_write.shutdown().await.unwrap();
    });
    let sent_down = down.clone();
    let server_sends = tokio::spawn(async move {
        server_write.write_all(&sent_down).await.unwrap();
        server_write.shutdown().await.unwrap();
    });
    let server_reads = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let mut got = Vec::new();
        server_read.read_to_end(&mut got).await.unwrap();
        got
    });
    let mut got_down = Vec::new();
    client_read.read_to_end(&mut got_down).await.unwrap();
    let got_up = server_reads.await.unwrap();
    client_sends.await.unwrap();
    server_sends.await.unwrap();
    assert_eq!(got_up.len(), up.len());
    assert!(
        got_up == up,
        "the client's bytes reached the server changed"
    );
    assert_eq!(
        &got_down[..5],
        b"early",
        "bytes read before the hand-over go first"
    );
    assert!(
        got_down[5..] == down[..],
        "the server's bytes reached the client changed"
    );
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn one_side_ending_its_sending_leaves_the_other_direction_open() {
    let (mut client, mut server, task) = pumped(Vec::new()).await;
    client.write_all(b"last words").await.unwrap();
    client.shutdown().await.unwrap();
    let mut got = Vec::new();
    server.read_to_end(&mut got).await.unwrap();
    assert_eq!(
        got, b"last words",
        "the server sees the client's end of stream"
    );
    server.write_all(b"still here").await.unwrap();
    let mut reply = [0u8; 10];
    client.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"still here");
    assert!(!task.is_finished(), "one direction is still open");
    drop(server);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_idle_pump_waits_and_a_reset_ends_it() {
    let (client, server, task) = pumped(Vec::new()).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(!task.is_finished());
    // A reset (close with SO_LINGER 0) ends the pump, with or without an error, not a hang.
    client.set_zero_linger().unwrap();
    drop(client);
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
    assert!(ended.is_ok(), "the pump ended after the client's reset");
    drop(server);
}
