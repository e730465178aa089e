//! An edge door run in-process for a test, and the repository's paths.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use facegate_edge::door_app::{ServeConfig, serve};
use facegate_link::Board;

/// The checkout's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A door serving on a free local port; stopped (and its result checked) by [`Self::stop`].
pub struct Door {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<anyhow::Result<()>>,
}

impl Door {
    /// Boots the shipped `nano` door with its state in `state`, `adjust`
    /// filling in the rest; returns it once it answers, and a link to it.
    pub fn boot(state: &Path, adjust: impl FnOnce(&mut ServeConfig)) -> (Self, Board) {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = ServeConfig {
            model: repo().join("models/nano.onnx"),
            blob: repo().join("models/nano.fgm"),
            state: state.to_path_buf(),
            port: format!("tcp:127.0.0.1:{port}"),
            faces: None,
            camera: None,
            device_id: Some("edge-test-door".into()),
            gpio: None,
            claim_key: None,
        };
        adjust(&mut config);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || serve(&config, &flag));
        let started = Instant::now();
        let board = loop {
            if let Ok(b) = Board::connect(&format!("tcp:127.0.0.1:{port}")) {
                break b;
            }
            assert!(
                !thread.is_finished(),
                "the edge runtime stopped at start-up"
            );
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "edge never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        (Self { stop, thread }, board)
    }

    /// Stops the door; it must have run without error.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap().unwrap();
    }
}
