//! The provisioning protocol on a TCP socket (one client at a time) or a
//! serial device, polled so the door's other work goes on in between.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result};
use facegate_core::protocol::MAX_FRAME;
use facegate_core::protocol::device::{BoardInfo, Diagnostics, DoorStore, answer_byte};
use facegate_core::protocol::frame::FrameReader;

enum Port {
    Tcp {
        listener: TcpListener,
        client: Option<TcpStream>,
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
        let (n, stream): (usize, &mut dyn Write) = match &mut self.port {
            Port::Tcp { listener, client } => {
                if client.is_none() {
                    match listener.accept() {
                        Ok((s, _)) => {
                            s.set_nonblocking(false)?;
                            s.set_read_timeout(Some(wait))?;
                            s.set_nodelay(true)?;
                            *client = Some(s);
                            self.reader = FrameReader::default();
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(wait);
                            return Ok(());
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                let Some(s) = client.as_mut() else {
                    return Ok(());
                };
                match s.read(&mut bytes) {
                    // The host hung up: wait for the next one.
                    Ok(0) => {
                        *client = None;
                        return Ok(());
                    }
                    Ok(n) => (n, s),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        return Ok(());
                    }
                    Err(_) => {
                        *client = None;
                        return Ok(());
                    }
                }
            }
            Port::Serial(s) => match s.read(&mut bytes) {
                Ok(n) => (n, s),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(());
                }
                Err(e) => return Err(e).context("serial port"),
            },
        };
        let mut out = [0u8; MAX_FRAME];
        for &b in &bytes[..n] {
            let reply = answer_byte(&mut self.reader, b, board, store, diagnostics, &mut out);
            if let Some(len) = reply {
                // A host that vanished mid-answer is dropped at the next read.
                let _ = stream.write_all(&out[..len]);
            }
        }
        Ok(())
    }
}
