//! The serial link: `shared::wire` frames (postcard + COBS + CRC-32). Results and status go out;
//! `SetThreshold`, `Trigger` and `GetStatus` requests come in and are answered with an `Ack`. Line noise
//! and corrupt frames between good ones are skipped (the decoder resynchronises on the delimiter).
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared::wire::{self, FrameDecoder, Message};

use super::inbox::{Inbox, Incoming, Link};

/// An open serial link.
pub struct SerialLink {
    writer: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl SerialLink {
    /// Opens `port` at `baud` (8N1, no flow control).
    pub fn open(port: &std::path::Path, baud: u32, inbox: Inbox) -> Result<Self, String> {
        let path = port.to_string_lossy().into_owned();
        let p = serialport::new(&path, baud)
            .timeout(Duration::from_millis(50))
            .open()
            .map_err(|e| format!("serial {path}: {e}"))?;
        let reader = p.try_clone().map_err(|e| format!("serial {path}: {e}"))?;
        Ok(Self::from_parts(Box::new(reader), Box::new(p), inbox))
    }

    /// A link over any byte stream pair (the reader is read on its own thread; timeouts and
    /// `WouldBlock` are retried).
    pub fn from_parts(
        mut reader: Box<dyn Read + Send>,
        writer: Box<dyn Write + Send>,
        inbox: Inbox,
    ) -> Self {
        std::thread::Builder::new()
            .name("serial-rx".into())
            .spawn(move || {
                let mut dec = FrameDecoder::new();
                let mut buf = [0u8; 256];
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) => std::thread::sleep(Duration::from_millis(20)),
                        Ok(n) => {
                            let mut open = true;
                            dec.feed(&buf[..n], |m| {
                                if let Ok(Message::Request(r)) = m {
                                    open &= inbox.offer_command(
                                        Link::Serial,
                                        r.id,
                                        Incoming::Wire(r.command),
                                    );
                                }
                            });
                            if !open {
                                break; // the station loop has ended
                            }
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::TimedOut
                                    | std::io::ErrorKind::WouldBlock
                                    | std::io::ErrorKind::Interrupted
                            ) => {}
                        Err(_) => std::thread::sleep(Duration::from_millis(100)),
                    }
                }
            })
            .ok();
        SerialLink { writer: Arc::new(Mutex::new(writer)) }
    }

    /// Sends one message (result, answer, status).
    pub fn send(&self, msg: &Message) -> Result<(), String> {
        let frame = wire::encode_frame_vec(msg).map_err(|e| format!("encoding: {e}"))?;
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        w.write_all(&frame).and_then(|()| w.flush()).map_err(|e| format!("serial write: {e}"))
    }
}
