//! Frames over a byte stream: a serial port or a TCP socket.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use facegate_core::protocol::MAX_FRAME;

use crate::LinkError;

/// How long a board may take to answer: a face verification on a
/// Cortex-M7 under emulation takes seconds.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// Serial speed when the port name does not say (`/dev/ttyACM0@921600`).
const DEFAULT_BAUD: u32 = 115_200;

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// Connects, retrying briefly while the port refuses: a serial-over-TCP
/// server (QEMU's chardev, ser2net) re-listens only after the previous
/// client's connection is torn down.
fn connect_tcp(addr: &str) -> std::io::Result<TcpStream> {
    let started = Instant::now();
    loop {
        match TcpStream::connect(addr) {
            Err(e)
                if e.kind() == std::io::ErrorKind::ConnectionRefused
                    && started.elapsed() < Duration::from_secs(3) =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

/// A byte link to a board.
pub struct Link {
    stream: Box<dyn Stream>,
    name: String,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("port", &self.name).finish()
    }
}

impl Link {
    /// Opens `tcp:HOST:PORT` or a serial device (`PATH[@BAUD]`).
    pub fn open(port: &str) -> Result<Self, LinkError> {
        let open_err = |reason: String| LinkError::Open {
            port: port.to_string(),
            reason,
        };
        let stream: Box<dyn Stream> = if let Some(addr) = port.strip_prefix("tcp:") {
            let s = connect_tcp(addr).map_err(|e| open_err(e.to_string()))?;
            s.set_read_timeout(Some(Duration::from_millis(200)))?;
            s.set_nodelay(true)?;
            Box::new(s)
        } else {
            let (path, baud) = match port.rsplit_once('@') {
                Some((p, b)) => (
                    p,
                    b.parse()
                        .map_err(|_| open_err(format!("`{b}` is not a baud rate")))?,
                ),
                None => (port, DEFAULT_BAUD),
            };
            let s = serialport::new(path, baud)
                .timeout(Duration::from_millis(200))
                .open()
                .map_err(|e| open_err(e.to_string()))?;
            Box::new(s)
        };
        Ok(Self {
            stream,
            name: port.to_string(),
        })
    }

    /// Writes `frame` and reads the answer frame (up to its 0, excluded).
    pub fn exchange(&mut self, frame: &[u8]) -> Result<Vec<u8>, LinkError> {
        self.stream.write_all(frame)?;
        self.stream.flush()?;
        let started = Instant::now();
        let mut answer = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    return Err(LinkError::Io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the board closed the link",
                    )));
                }
                Ok(n) => {
                    let got = &buf[..n];
                    if let Some(end) = got.iter().position(|&b| b == 0) {
                        answer.extend_from_slice(&got[..end]);
                        // One request, one answer: nothing may follow the delimiter.
                        return Ok(answer);
                    }
                    answer.extend_from_slice(got);
                    if answer.len() > MAX_FRAME {
                        return Err(LinkError::Frame(
                            facegate_core::protocol::frame::FrameError::Length,
                        ));
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e.into()),
            }
            if started.elapsed() > ANSWER_TIMEOUT {
                return Err(LinkError::Timeout(ANSWER_TIMEOUT));
            }
        }
    }
}
