//! The edge door's link never makes the door loop wait on a client
//! (issue 25 #3): a client that floods requests and never reads its
//! answers is dropped within the write timeout, and the next client is
//! served.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use facegate_core::ModelHash;
use facegate_core::protocol::device::{BoardInfo, NoDiagnostics, RamStore};
use facegate_core::protocol::frame::{decode, encode};
use facegate_core::protocol::{Request, Response};
use facegate_edge::link::{LinkServer, WRITE_TIMEOUT};

const BOARD: BoardInfo<'static> = BoardInfo {
    firmware: "edge-test",
    model_hash: ModelHash([1; 32]),
    device_id: *b"edge-link-test-1",
    claim_key: None,
};

fn info_frame() -> Vec<u8> {
    let mut buf = [0u8; 64];
    let n = encode(&Request::Info, &mut buf).unwrap();
    buf[..n].to_vec()
}

#[test]
fn a_client_that_stops_reading_cannot_stall_the_door_loop() {
    let mut server = LinkServer::open("tcp:127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let (polls_tx, polls_rx) = mpsc::channel::<Duration>();

    // The door loop: polls with a 10 ms wait, as the runtime does, and
    // reports the longest poll. It ends when told the test is over.
    let door = std::thread::spawn(move || {
        let mut store = RamStore::<4>::default();
        let mut longest = Duration::ZERO;
        while done_rx.try_recv().is_err() {
            let t = Instant::now();
            server
                .poll(
                    &BOARD,
                    &mut store,
                    &mut NoDiagnostics,
                    Duration::from_millis(10),
                )
                .unwrap();
            longest = longest.max(t.elapsed());
        }
        polls_tx.send(longest).unwrap();
    });

    // The flooder: 200,000 Info requests (about 30 MB of answers, far more
    // than the socket buffers hold), never reading a byte.
    let mut flood = TcpStream::connect(addr).unwrap();
    // Were the door stuck, the flood would stop here, not hang the test.
    flood
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let frame = info_frame();
    let burst: Vec<u8> = frame
        .iter()
        .copied()
        .cycle()
        .take(frame.len() * 1000)
        .collect();
    let started = Instant::now();
    for _ in 0..200 {
        // An error: the server hung up on the flooder mid-flood.
        if flood.write_all(&burst).is_err() {
            break;
        }
    }

    // A second client is served within a few seconds.
    let mut next = None;
    while started.elapsed() < Duration::from_secs(20) {
        let Ok(mut c) = TcpStream::connect(addr) else {
            continue;
        };
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        c.write_all(&frame).unwrap();
        let mut reply = vec![0u8; 512];
        if let Ok(n) = c.read(&mut reply)
            && n > 0
        {
            reply.truncate(n);
            next = Some(reply);
            break;
        }
    }
    done_tx.send(()).unwrap();
    let longest = polls_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the door loop is stuck on the flooding client");
    door.join().unwrap();

    let mut reply = next.expect("the next client was never served");
    let zero = reply.iter().position(|&b| b == 0).unwrap();
    let info = decode::<Response<'_>>(&mut reply[..zero]).unwrap();
    assert!(matches!(info, Response::Info { .. }), "{info:?}");
    // One poll: its read wait, at most one write timeout, and slack for a
    // loaded CI machine.
    assert!(
        longest < WRITE_TIMEOUT + Duration::from_secs(2),
        "a poll took {longest:?}"
    );
}
