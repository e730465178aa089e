//! The provisioning protocol on a TCP socket (one client at a time) or a
//! serial device, polled so the door's other work goes on in between.
//!
//! The door loop must never wait on a client: a client that stops reading
//! its answers is dropped after [`WRITE_TIMEOUT`], one that sends nothing
//! for [`IDLE_TIMEOUT`] gives its place to the next (issue 25 #3: a client
//! that connected and stopped reading used to stall the loop, with the
//! lock relay energised for ~40 s).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use facegate_core::protocol::MAX_FRAME;
use facegate_core::protocol::device::{BoardInfo, Diagnostics, DoorStore, answer_byte};
use facegate_core::protocol::frame::FrameReader;

/// How long one answer may take to go out before its client is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_millis(250);
/// How long a connected client may stay silent before it is dropped.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

struct Client {
    stream: TcpStream,
    last_heard: Instant,
}

enum Port {
    Tcp {
        listener: TcpListener,
        client: Option<Client>,
    },
    Serial(Box<dyn serialport::SerialPort>),
}

/// The board's end of the provisioning link.
pub struct LinkServer {
    port: Port,
    reader: FrameReader,
}

impl std::fmt::Debug for LinkServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkServer").finish_non_exhaustive()
    }
}

impl LinkServer {
    /// Listens on `tcp:ADDR:PORT`, or opens a serial device `PATH[@BAUD]`.
    pub fn open(spec: &str) -> Result<Self> {
        let port = if let Some(addr) = spec.strip_prefix("tcp:") {
            let listener =
                TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
            listener.set_nonblocking(true)?;
            Port::Tcp {
                listener,
                client: None,
            }
        } else {
            let (path, baud) = match spec.rsplit_once('@') {
                Some((p, b)) => (p, b.parse().context("baud rate")?),
                None => (spec, 115_200),
            };
            let s = serialport::new(path, baud)
                .timeout(Duration::from_millis(20))
                .open()
                .with_context(|| format!("cannot open serial port {path}"))?;
            Port::Serial(s)
        };
        Ok(Self {
            port,
            reader: FrameReader::default(),
        })
    }

    /// The TCP address listened on, if any.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.port {
            Port::Tcp { listener, .. } => listener.local_addr().ok(),
            Port::Serial(_) => None,
        }
    }

    /// Answers what arrives within about `wait`, then returns.
    pub fn poll<S: DoorStore, D: Diagnostics<S>>(
        &mut self,
        board: &BoardInfo<'_>,
        store: &mut S,
        diagnostics: &mut D,
        wait: Duration,
    ) -> Result<()> {
        let mut bytes = [0u8; 512];
        let n = match &mut self.port {
            Port::Tcp { listener, client } => {
                if client.is_none() {
                    match listener.accept() {
                        Ok((s, _)) => {
                            s.set_nonblocking(false)?;
                            s.set_read_timeout(Some(wait))?;
                            s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                            s.set_nodelay(true)?;
                            *client = Some(Client {
                                stream: s,
                                last_heard: Instant::now(),
                            });
                            self.reader = FrameReader::default();
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(wait);
                            return Ok(());
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                let Some(c) = client.as_mut() else {
                    return Ok(());
                };
                match c.stream.read(&mut bytes) {
                    // The host hung up: wait for the next one.
                    Ok(0) => {
                        *client = None;
                        return Ok(());
                    }
                    Ok(n) => {
                        c.last_heard = Instant::now();
                        n
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        if c.last_heard.elapsed() >= IDLE_TIMEOUT {
                            *client = None;
                        }
                        return Ok(());
                    }
                    Err(_) => {
                        *client = None;
                        return Ok(());
                    }
                }
            }
            Port::Serial(s) => match s.read(&mut bytes) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(());
                }
                Err(e) => return Err(e).context("serial port"),
            },
        };
        let mut out = [0u8; MAX_FRAME];
        let mut replies = Vec::new();
        for &b in &bytes[..n] {
            let reply = answer_byte(&mut self.reader, b, board, store, diagnostics, &mut out);
            if let Some(len) = reply {
                replies.extend_from_slice(&out[..len]);
            }
        }
        if replies.is_empty() {
            return Ok(());
        }
        match &mut self.port {
            Port::Tcp { client, .. } => {
                // A client that does not take its answers within the write
                // timeout (stopped reading, or vanished) is dropped.
                if let Some(c) = client.as_mut()
                    && c.stream.write_all(&replies).is_err()
                {
                    *client = None;
                }
            }
            Port::Serial(s) => {
                // A serial host that stops reading only loses its answers.
                let _ = s.write_all(&replies);
            }
        }
        Ok(())
    }
}
