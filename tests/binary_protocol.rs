//! The binary protocol server over loopback TCP: every operation, pipelining,
//! and bad input (garbage, truncated, oversized, bad bodies), which must get
//! an error where possible and never disturb other connections.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use weir::clock::{ManualClock, SECOND};
use weir::config::source::ConfigSource;
use weir::config::Config;
use weir::engine::Engine;
use weir::protocol::{
    decode, encode, Frame, Hello, HelloReply, Opcode, WireBatch, WireCheck, WireDecision, WireError, WireKey,
    WireLimit, WireTarget, MAX_FRAME, VERSION,
};
use weir::server::binary::{run, BinaryLimits};
use weir::server::{App, ServeLimits};

const CONFIG: &str = r#"
[policies.p]
key = ["user"]
default_tier = "free"
[policies.p.tiers.free]
limits = [{ name = "burst", algorithm = "token_bucket", rate = "1/m", burst = 2 }]

[policies.trial]
key = ["user"]
default_tier = "free"
[policies.trial.tiers.free]
limits = [
  { name = "burst", algorithm = "token_bucket", rate = "1/m", burst = 2 },
  { name = "strict", algorithm = "token_bucket", rate = "1/m", burst = 1, mode = "shadow" },
]

[policies.jobs]
key = ["user"]
default_tier = "free"
[policies.jobs.tiers.free]
limits = [
  { name = "running", algorithm = "concurrency", max = 1, lease = "30s" },
  { name = "monthly", algorithm = "quota", limit = 100, period = "month" },
]
"#;

struct Server {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// The shared state the binary server runs on, around a fresh engine.
fn app() -> Arc<App> {
    let clock = Arc::new(ManualClock::new(1_800_000_000 * SECOND));
    let config = Config::parse(CONFIG).unwrap();
    let source = Arc::new(ConfigSource::none(&config));
    App::new(Arc::new(Engine::new(config, clock)), source, None, None)
}

async fn start(limits: BinaryLimits) -> Server {
    let app = app();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(listener, app, limits, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        stop: Some(stop),
        task,
    }
}

fn check(user: &str) -> WireCheck {
    WireCheck {
        target: WireTarget::Policy("p".into()),
        key: WireKey {
            user: Some(user.into()),
            ..WireKey::default()
        },
        tier: None,
        cost: None,
    }
}

async fn send(stream: &mut TcpStream, opcode: Opcode, id: u64, body: Vec<u8>) {
    send_version(stream, 1, opcode, id, body).await;
}

async fn send_version(stream: &mut TcpStream, version: u8, opcode: Opcode, id: u64, body: Vec<u8>) {
    let frame = Frame {
        version,
        opcode,
        request_id: id,
        body,
    };
    stream.write_all(&frame.to_bytes()).await.unwrap();
}

/// The next frame, or `None` when the server closed the connection.
async fn receive(stream: &mut TcpStream) -> Option<Frame> {
    let mut prefix = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut prefix))
        .await
        .ok()?
        .ok()?;
    let mut bytes = vec![0u8; u32::from_le_bytes(prefix) as usize];
    stream.read_exact(&mut bytes).await.ok()?;
    Some(Frame::parse(&bytes).unwrap())
}

async fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

async fn ask(stream: &mut TcpStream, opcode: Opcode, id: u64, body: Vec<u8>) -> Frame {
    send(stream, opcode, id, body).await;
    receive(stream).await.expect("a reply")
}

#[tokio::test]
async fn hello_ping_check_peek_refund_and_check_many() {
    let server = start(BinaryLimits::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();

    let hello = Hello {
        version: 3,
        client: "test".into(),
    };
    let reply = ask(&mut stream, Opcode::Hello, 1, encode(&hello)).await;
    assert_eq!((reply.opcode, reply.request_id), (Opcode::HelloReply, 1));
    let hello: HelloReply = decode(&reply.body).unwrap();
    assert_eq!((hello.version, hello.max_frame), (VERSION, MAX_FRAME as u32));

    assert_eq!(
        ask(&mut stream, Opcode::Ping, 2, vec![]).await.opcode,
        Opcode::Pong
    );

    let reply = ask(&mut stream, Opcode::Check, 3, encode(&check("a"))).await;
    let decision: WireDecision = decode(&reply.body).unwrap();
    assert_eq!(
        (reply.opcode, decision.allowed, decision.remaining),
        (Opcode::Decision, true, Some(1))
    );
    assert_eq!(decision.limits[0].name, "burst");

    let reply = ask(&mut stream, Opcode::Peek, 4, encode(&check("a"))).await;
    let peek: WireDecision = decode(&reply.body).unwrap();
    assert_eq!((reply.opcode, peek.remaining), (Opcode::PeekReply, Some(1)));

    ask(&mut stream, Opcode::Check, 5, encode(&check("a"))).await;
    let denied: WireDecision =
        decode(&ask(&mut stream, Opcode::Check, 6, encode(&check("a"))).await.body).unwrap();
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after_ms, Some(60_000));

    let mut refund = check("a");
    refund.cost = Some(2);
    let refunded: WireDecision =
        decode(&ask(&mut stream, Opcode::Refund, 7, encode(&refund)).await.body).unwrap();
    assert_eq!(refunded.remaining, Some(2));

    let many = vec![check("b"), check("b"), check("b")];
    let reply = ask(&mut stream, Opcode::CheckMany, 8, encode(&many)).await;
    let batch: WireBatch = decode(&reply.body).unwrap();
    assert_eq!(
        (reply.opcode, batch.allowed, batch.decisions.len()),
        (Opcode::Batch, false, 3)
    );
}

#[tokio::test]
async fn shadow_limits_are_left_out_of_binary_answers() {
    let server = start(BinaryLimits::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut trial = check("t");
    trial.target = WireTarget::Policy("trial".into());
    for (id, allowed) in [(1, true), (2, true), (3, false)] {
        let decision: WireDecision =
            decode(&ask(&mut stream, Opcode::Check, id, encode(&trial)).await.body).unwrap();
        assert_eq!(decision.allowed, allowed, "the enforced burst of 2 decides");
        let names: Vec<&str> = decision.limits.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["burst"]);
    }
}

#[tokio::test]
async fn inline_limits_work_as_over_http() {
    let server = start(BinaryLimits::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let inline = WireCheck {
        target: WireTarget::Inline {
            namespace: "drf:anon".into(),
            limits: vec![WireLimit {
                algorithm: 1,
                rate: "1/day".into(),
                burst: None,
                name: None,
            }],
        },
        key: WireKey {
            ip: Some("198.51.100.1".into()),
            ..WireKey::default()
        },
        tier: None,
        cost: None,
    };
    let first: WireDecision =
        decode(&ask(&mut stream, Opcode::Check, 1, encode(&inline)).await.body).unwrap();
    let second: WireDecision =
        decode(&ask(&mut stream, Opcode::Check, 2, encode(&inline)).await.body).unwrap();
    assert_eq!((first.allowed, second.allowed), (true, false));
    assert_eq!(second.namespace.as_deref(), Some("drf:anon"));
}

#[tokio::test]
async fn pipelined_requests_are_all_answered_with_their_ids() {
    let server = start(BinaryLimits::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut bytes = Vec::new();
    for id in 0..200u64 {
        let body = encode(&check(&format!("pipelined-{}", id % 7)));
        bytes.extend(
            Frame {
                version: 1,
                opcode: Opcode::Check,
                request_id: id,
                body,
            }
            .to_bytes(),
        );
    }
    stream.write_all(&bytes).await.unwrap();
    let mut ids = Vec::new();
    let mut allowed = 0;
    for _ in 0..200 {
        let reply = receive(&mut stream).await.unwrap();
        allowed += decode::<WireDecision>(&reply.body).unwrap().allowed as usize;
        ids.push(reply.request_id);
    }
    ids.sort_unstable();
    assert_eq!(ids, (0..200).collect::<Vec<_>>());
    assert_eq!(allowed, 7 * 2, "each of the seven users gets its burst of two");
}

#[tokio::test]
async fn an_invalid_check_gets_an_error_and_the_connection_stays_open() {
    let server = start(BinaryLimits::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut unknown = check("a");
    unknown.target = WireTarget::Policy("nope".into());
    let reply = ask(&mut stream, Opcode::Check, 41, encode(&unknown)).await;
    let error: WireError = decode(&reply.body).unwrap();
    assert_eq!(
        (reply.opcode, reply.request_id, error.code.as_str()),
        (Opcode::Error, 41, "unknown_policy")
    );
    assert_eq!(
        ask(&mut stream, Opcode::Ping, 42, vec![]).await.opcode,
        Opcode::Pong
    );
}

async fn expect_fatal(server: &Server, bytes: &[u8], code: &str, request_id: u64) {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let reply = receive(&mut stream).await.expect("an error reply");
    let error: WireError = decode(&reply.body).unwrap();
    assert_eq!(
        (reply.opcode, error.code.as_str(), reply.request_id),
        (Opcode::Error, code, request_id)
    );
    assert!(closed(&mut stream).await, "{code}: the connection is closed");
}

#[tokio::test]
async fn bad_frames_get_an_error_and_a_closed_connection_and_disturb_no_one() {
    let server = start(BinaryLimits::default()).await;
    let mut bystander = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(
        ask(&mut bystander, Opcode::Ping, 1, vec![]).await.opcode,
        Opcode::Pong
    );

    // Garbage: a huge length prefix.
    expect_fatal(&server, b"GET / HTTP/1.1\r\n\r\n", "frame_too_large", 0).await;
    // Oversized frame.
    expect_fatal(
        &server,
        &((MAX_FRAME as u32 + 1).to_le_bytes()),
        "frame_too_large",
        0,
    )
    .await;
    // Shorter than a header.
    expect_fatal(&server, &[3, 0, 0, 0, 1, 2, 3], "malformed_frame", 0).await;
    // Bad magic, with the request id still reported.
    let mut bad_magic = Frame {
        version: 1,
        opcode: Opcode::Ping,
        request_id: 77,
        body: vec![],
    }
    .to_bytes();
    bad_magic[4] = b'X';
    expect_fatal(&server, &bad_magic, "malformed_frame", 77).await;
    // A version this server does not speak.
    let mut version = Frame {
        version: 1,
        opcode: Opcode::Ping,
        request_id: 78,
        body: vec![],
    }
    .to_bytes();
    version[6] = 9;
    expect_fatal(&server, &version, "unsupported_version", 78).await;
    // An unknown opcode, and a reply sent as a request.
    let mut opcode = Frame {
        version: 1,
        opcode: Opcode::Ping,
        request_id: 79,
        body: vec![],
    }
    .to_bytes();
    opcode[7] = 0x42;
    expect_fatal(&server, &opcode, "unknown_opcode", 79).await;
    let pong = Frame {
        version: 1,
        opcode: Opcode::Pong,
        request_id: 80,
        body: vec![],
    }
    .to_bytes();
    expect_fatal(&server, &pong, "unknown_opcode", 80).await;
    // A body that is not a check, and one with trailing bytes.
    let garbage = Frame {
        version: 1,
        opcode: Opcode::Check,
        request_id: 81,
        body: vec![0xff; 40],
    }
    .to_bytes();
    expect_fatal(&server, &garbage, "malformed_body", 81).await;
    let mut trailing = encode(&check("a"));
    trailing.push(0);
    let trailing = Frame {
        version: 1,
        opcode: Opcode::Check,
        request_id: 82,
        body: trailing,
    }
    .to_bytes();
    expect_fatal(&server, &trailing, "malformed_body", 82).await;

    // Truncated: a frame that never finishes, then the client goes away.
    let mut truncated = TcpStream::connect(server.addr).await.unwrap();
    truncated.write_all(&[100, 0, 0, 0, b'W', b'R']).await.unwrap();
    drop(truncated);

    assert_eq!(
        ask(&mut bystander, Opcode::Ping, 2, vec![]).await.opcode,
        Opcode::Pong
    );
}

#[tokio::test]
async fn idle_and_slow_connections_are_closed() {
    let limits = BinaryLimits {
        connections: ServeLimits {
            idle_timeout: Duration::from_millis(200),
            ..ServeLimits::default()
        },
        frame_timeout: Duration::from_millis(200),
        ..BinaryLimits::default()
    };
    let server = start(limits).await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    assert!(closed(&mut idle).await);
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(&[16, 0, 0, 0, b'W']).await.unwrap();
    assert!(closed(&mut slow).await);
}

#[tokio::test]
async fn shutdown_stops_the_server_and_answers_what_was_asked() {
    let mut server = start(BinaryLimits::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(
        ask(&mut stream, Opcode::Ping, 1, vec![]).await.opcode,
        Opcode::Pong
    );
    server.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), &mut server.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(closed(&mut stream).await);
    assert!(TcpStream::connect(server.addr).await.is_err());
}

#[tokio::test]
async fn a_client_that_does_not_read_its_replies_stops_being_read() {
    use weir::server::binary::serve_connection;
    let app = app();
    let limits = BinaryLimits {
        max_in_flight: 8,
        ..BinaryLimits::default()
    };
    // 4 KiB each way: room for a few hundred 16-byte frames, not thousands.
    let (mut client, server_side) = tokio::io::duplex(4096);
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(async move { serve_connection(server_side, &app, limits, stopped).await });

    let pings: Vec<u8> = (0..5000u64)
        .flat_map(|id| {
            Frame {
                version: 1,
                opcode: Opcode::Ping,
                request_id: id,
                body: vec![],
            }
            .to_bytes()
        })
        .collect();
    let (mut reader, mut writer) = tokio::io::split(client);
    let writing = tokio::spawn(async move {
        writer.write_all(&pings).await.unwrap();
        writer
    });
    // Nobody reads the replies: the server's writes fill the pipe, it stops
    // reading, and the client's writes stall too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !writing.is_finished(),
        "the server kept reading without anyone reading its replies"
    );

    // Reading the replies lets everything through.
    let mut pongs = 0;
    let mut buffer = vec![0u8; 16];
    while pongs < 5000 {
        reader.read_exact(&mut buffer).await.unwrap();
        assert_eq!(buffer[7], Opcode::Pong as u8);
        pongs += 1;
    }
    let writer = writing.await.unwrap();
    client = reader.unsplit(writer);
    drop(client);
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let server = start(BinaryLimits {
        connections: ServeLimits {
            max_connections: 1,
            ..ServeLimits::default()
        },
        ..BinaryLimits::default()
    })
    .await;
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(
        ask(&mut first, Opcode::Ping, 1, vec![]).await.opcode,
        Opcode::Pong
    );

    // The kernel completes the second handshake, but weir does not accept it.
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    send(&mut second, Opcode::Ping, 2, vec![]).await;
    let mut prefix = [0u8; 4];
    let waited = tokio::time::timeout(Duration::from_millis(300), second.read_exact(&mut prefix)).await;
    assert!(
        waited.is_err(),
        "a second connection was served past the cap of one"
    );

    drop(first);
    let reply = receive(&mut second).await.expect("served once the first closed");
    assert_eq!((reply.opcode, reply.request_id), (Opcode::Pong, 2));
}

/// Frame bytes for `opcode` with `body`.
fn frame_bytes(opcode: Opcode, id: u64, body: Vec<u8>) -> Vec<u8> {
    Frame {
        version: 1,
        opcode,
        request_id: id,
        body,
    }
    .to_bytes()
}

#[tokio::test]
async fn a_ping_with_a_body_has_trailing_bytes() {
    let server = start(BinaryLimits::default()).await;
    for length in [1, 65_524] {
        let ping = frame_bytes(Opcode::Ping, 7, vec![0; length]);
        expect_fatal(&server, &ping, "malformed_body", 7).await;
    }
}

#[tokio::test]
async fn a_well_formed_check_that_fills_a_whole_frame_is_read() {
    let server = start(BinaryLimits::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut big = check("a");
    // An endpoint attribute sized so that the frame is exactly MAX_FRAME.
    big.key.endpoint = Some(String::new());
    let base = frame_bytes(Opcode::Check, 1, encode(&big)).len();
    big.key.endpoint = Some("e".repeat(MAX_FRAME - base));
    let body = encode(&big);
    assert_eq!(frame_bytes(Opcode::Check, 1, body.clone()).len(), MAX_FRAME);
    let reply = ask(&mut stream, Opcode::Check, 1, body).await;
    let error: WireError = decode(&reply.body).unwrap();
    // Decoded whole: refused for what it says (an attribute over its
    // length limit), not as a body that cannot be read.
    assert_eq!(
        (reply.opcode, error.code.as_str()),
        (Opcode::Error, "bad_key_value")
    );
}

#[tokio::test]
async fn an_error_reply_quotes_its_input_briefly() {
    let server = start(BinaryLimits::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut odd = check("a");
    odd.tier = Some("\u{1}".repeat(60_000));
    let request = encode(&odd);
    let reply = ask(&mut stream, Opcode::Check, 3, request.clone()).await;
    let error: WireError = decode(&reply.body).unwrap();
    assert_eq!(reply.opcode, Opcode::Error, "{}", error.code);
    let size = reply.to_bytes().len();
    assert!(
        size <= 1024,
        "a {size}-byte reply to a {}-byte request",
        request.len()
    );
    assert!(error.message.ends_with('…'), "{}", error.message);
}

#[tokio::test]
async fn sessions_behave_as_documented() {
    let server = start(BinaryLimits::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // A hello with a higher version is answered with the newest this
    // server speaks; a second hello is answered again.
    for id in [1, 2] {
        let hello = Hello {
            version: 7,
            client: "test".into(),
        };
        let reply = ask(&mut stream, Opcode::Hello, id, encode(&hello)).await;
        let answer: HelloReply = decode(&reply.body).unwrap();
        assert_eq!(
            (reply.opcode, reply.request_id, answer.version),
            (Opcode::HelloReply, id, VERSION)
        );
    }

    // Peek on a key exactly at its limit: allowed, nothing remaining.
    ask(&mut stream, Opcode::Check, 3, encode(&check("c"))).await;
    ask(&mut stream, Opcode::Check, 4, encode(&check("c"))).await;
    let peek: WireDecision =
        decode(&ask(&mut stream, Opcode::Peek, 5, encode(&check("c"))).await.body).unwrap();
    assert_eq!((peek.allowed, peek.remaining), (true, Some(0)));

    // Refund's cost defaults to 1; the reply is the state afterwards.
    let refunded: WireDecision = decode(
        &ask(&mut stream, Opcode::Refund, 6, encode(&check("c")))
            .await
            .body,
    )
    .unwrap();
    assert_eq!((refunded.allowed, refunded.remaining), (true, Some(1)));

    // Two requests in flight with one id: two replies with it, in order.
    send(&mut stream, Opcode::Ping, 9, vec![]).await;
    send(&mut stream, Opcode::Check, 9, encode(&check("d"))).await;
    let first = receive(&mut stream).await.unwrap();
    let second = receive(&mut stream).await.unwrap();
    assert_eq!((first.opcode, first.request_id), (Opcode::Pong, 9));
    assert_eq!((second.opcode, second.request_id), (Opcode::Decision, 9));

    // An unknown algorithm byte: invalid_limits, and the connection stays.
    let inline = WireCheck {
        target: WireTarget::Inline {
            namespace: "n".into(),
            limits: vec![WireLimit {
                algorithm: 9,
                rate: "1/s".into(),
                burst: None,
                name: None,
            }],
        },
        key: WireKey {
            ip: Some("192.0.2.1".into()),
            ..WireKey::default()
        },
        tier: None,
        cost: None,
    };
    let reply = ask(&mut stream, Opcode::Check, 10, encode(&inline)).await;
    let error: WireError = decode(&reply.body).unwrap();
    assert_eq!(
        (reply.opcode, reply.request_id, error.code.as_str()),
        (Opcode::Error, 10, "invalid_limits")
    );
    assert_eq!(
        ask(&mut stream, Opcode::Ping, 11, vec![]).await.opcode,
        Opcode::Pong
    );

    // An unnamed limit is named by its rate's short form.
    let mut named = inline.clone();
    if let WireTarget::Inline { limits, .. } = &mut named.target {
        limits[0].algorithm = 1;
        limits[0].rate = "3/minute".into();
    }
    let decision: WireDecision =
        decode(&ask(&mut stream, Opcode::Check, 12, encode(&named)).await.body).unwrap();
    assert_eq!(decision.limits[0].name, "3/m");
}

mod version_2 {
    //! Version 2 beside version 1 on one connection: shadow limits, quota
    //! resets, leases and Release, reservations and Settle, problem details.

    use weir::protocol::{WireBatch2, WireCheck2, WireDecision2, WireRelease, WireSettle, WireSettled};

    use super::*;

    async fn ask2(stream: &mut TcpStream, opcode: Opcode, id: u64, body: Vec<u8>) -> Frame {
        send_version(stream, 2, opcode, id, body).await;
        let reply = receive(stream).await.expect("a reply");
        assert_eq!(
            (reply.version, reply.request_id),
            (2, id),
            "answered in the version asked"
        );
        reply
    }

    fn check2(policy: &str, user: &str) -> WireCheck2 {
        let mut check = check(user);
        check.target = WireTarget::Policy(policy.into());
        WireCheck2 {
            check,
            reserve: false,
            problem: false,
        }
    }

    fn error(reply: &Frame) -> WireError {
        assert_eq!(reply.opcode, Opcode::Error);
        decode(&reply.body).unwrap()
    }

    #[tokio::test]
    async fn shadow_limits_and_quota_resets_are_reported() {
        let server = start(BinaryLimits::default()).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let trial = encode(&check2("trial", "a"));
        let first: WireDecision2 =
            decode(&ask2(&mut stream, Opcode::Check, 1, trial.clone()).await.body).unwrap();
        let shadow: Vec<_> = first
            .limits
            .iter()
            .map(|l| (l.report.name.as_str(), l.shadow))
            .collect();
        assert_eq!(shadow, [("burst", false), ("strict", true)]);
        assert!(first.shadow_denied.is_empty());
        let second: WireDecision2 = decode(&ask2(&mut stream, Opcode::Check, 2, trial).await.body).unwrap();
        assert!(second.allowed, "a shadow limit never denies");
        assert_eq!(second.shadow_denied, ["strict"]);

        // Version 1 on the same connection: the enforced limit only.
        let mut v1 = check("b");
        v1.target = WireTarget::Policy("trial".into());
        let old: WireDecision = decode(&ask(&mut stream, Opcode::Check, 3, encode(&v1)).await.body).unwrap();
        assert_eq!(old.limits.len(), 1);

        let jobs: WireDecision2 = decode(
            &ask2(&mut stream, Opcode::Peek, 4, encode(&check2("jobs", "q")))
                .await
                .body,
        )
        .unwrap();
        let monthly = jobs.limits.iter().find(|l| l.report.name == "monthly").unwrap();
        // 1,800,000,000 s is 2027-01-15; the quota resets on 2027-02-01.
        assert_eq!(monthly.reset_at_ms, Some(1_801_440_000_000));
        assert_eq!(jobs.lease, None, "a peek holds no slot");
    }

    #[tokio::test]
    async fn a_lease_is_released_once_and_frees_its_slot() {
        let server = start(BinaryLimits::default()).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let job = encode(&check2("jobs", "a"));
        let held: WireDecision2 =
            decode(&ask2(&mut stream, Opcode::Check, 1, job.clone()).await.body).unwrap();
        let lease = held.lease.clone().expect("an allowed check holds a lease");
        let full: WireDecision2 =
            decode(&ask2(&mut stream, Opcode::Check, 2, job.clone()).await.body).unwrap();
        assert!(!full.allowed && full.lease.is_none(), "max = 1");

        let release = encode(&WireRelease { lease: lease.clone() });
        let reply = ask2(&mut stream, Opcode::Release, 3, release.clone()).await;
        assert_eq!((reply.opcode, reply.body.len()), (Opcode::ReleaseReply, 0));
        let again: WireDecision2 = decode(&ask2(&mut stream, Opcode::Check, 4, job).await.body).unwrap();
        assert!(again.allowed, "the slot was freed");

        // Twice, forged, or in a version 1 frame: refused, connection open.
        assert_eq!(
            error(&ask2(&mut stream, Opcode::Release, 5, release.clone()).await).code,
            "already_released"
        );
        let forged = encode(&WireRelease { lease: "x.y".into() });
        assert_eq!(
            error(&ask2(&mut stream, Opcode::Release, 6, forged).await).code,
            "unknown_lease"
        );
        assert_eq!(
            error(&ask(&mut stream, Opcode::Release, 7, release).await).code,
            "unsupported_version"
        );
        assert_eq!(
            ask(&mut stream, Opcode::Ping, 8, vec![]).await.opcode,
            Opcode::Pong
        );
    }

    #[tokio::test]
    async fn an_allowed_batch_carries_its_leases() {
        let server = start(BinaryLimits::default()).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let checks = encode(&vec![check2("p", "a"), check2("jobs", "a")]);
        let reply = ask2(&mut stream, Opcode::CheckMany, 1, checks.clone()).await;
        let batch: WireBatch2 = decode(&reply.body).unwrap();
        assert!(batch.allowed);
        assert_eq!(batch.decisions[0].lease, None);
        assert!(batch.decisions[1].lease.is_some());
        // Denied (the slot is held), asking for problem details.
        let mut asking = vec![check2("p", "b"), check2("jobs", "a")];
        asking[0].problem = true;
        let batch: WireBatch2 = decode(
            &ask2(&mut stream, Opcode::CheckMany, 2, encode(&asking))
                .await
                .body,
        )
        .unwrap();
        assert!(!batch.allowed);
        let problem: serde_json::Value = serde_json::from_str(batch.problem.as_deref().unwrap()).unwrap();
        assert_eq!(problem["violated-policies"], serde_json::json!(["running"]));
        assert_eq!(problem["decision"]["allowed"], false);
    }

    #[tokio::test]
    async fn a_reservation_settles_once_at_its_actual_cost() {
        let server = start(BinaryLimits::default()).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let mut reserving = check2("p", "a");
        reserving.reserve = true;
        let reply = ask2(&mut stream, Opcode::Check, 1, encode(&reserving)).await;
        let decision: WireDecision2 = decode(&reply.body).unwrap();
        let reservation = decision.reservation.expect("a counted check that reserved");
        assert_eq!(decision.remaining, Some(1));

        let settle = encode(&WireSettle { reservation, cost: 2 });
        let reply = ask2(&mut stream, Opcode::Settle, 2, settle.clone()).await;
        assert_eq!(reply.opcode, Opcode::SettleReply);
        let settled: WireSettled = decode(&reply.body).unwrap();
        assert_eq!((settled.reserved, settled.charged, settled.refunded), (1, 1, 0));
        assert_eq!(settled.decision.remaining, Some(0));
        assert_eq!(
            error(&ask2(&mut stream, Opcode::Settle, 3, settle).await).code,
            "already_settled"
        );

        // A peek counts nothing to reserve.
        let reply = ask2(&mut stream, Opcode::Peek, 4, encode(&reserving)).await;
        assert_eq!(error(&reply).code, "reserve_not_here");
        // A batch reserves for each check that asks.
        let mut other = check2("p", "b");
        other.reserve = true;
        let checks = encode(&vec![other, check2("p", "c")]);
        let batch: WireBatch2 = decode(&ask2(&mut stream, Opcode::CheckMany, 5, checks).await.body).unwrap();
        assert!(batch.decisions[0].reservation.is_some() && batch.decisions[1].reservation.is_none());
    }

    #[tokio::test]
    async fn a_denial_carries_problem_details_when_asked() {
        let server = start(BinaryLimits::default()).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let mut asking = check2("p", "a");
        asking.problem = true;
        for id in 1..=3 {
            let reply = ask2(&mut stream, Opcode::Check, id, encode(&asking)).await;
            let decision: WireDecision2 = decode(&reply.body).unwrap();
            assert_eq!(
                decision.problem.is_some(),
                !decision.allowed,
                "only denials carry one"
            );
            if let Some(problem) = decision.problem {
                let problem: serde_json::Value = serde_json::from_str(&problem).unwrap();
                assert_eq!(
                    problem["type"],
                    "https://iana.org/assignments/http-problem-types#quota-exceeded"
                );
                assert_eq!(problem["violated-policies"], serde_json::json!(["burst"]));
                assert_eq!(problem["status"], 429);
            }
        }
    }
}
