//! A supervisor's browser for the end-to-end tests: `POST
//! /api/v1/calls/{id}/supervise` and the session's audio WebSocket
//! (`/api/v1/calls/{id}/audio`), 20 ms frames of 16 kHz PCM16 both ways.

use super::*;
use futures_util::{SinkExt, StreamExt};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Samples in one 20 ms frame at 16 kHz.
pub const FRAME: usize = 320;

/// `POST /api/v1/calls/{id}/supervise` with `body`: (status, JSON answer).
pub fn supervise(skald: &Skald, id: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let (status, text) = http_body(skald.http_port, "POST", &format!("/api/v1/calls/{id}/supervise"), &body.to_string()).unwrap();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

/// Frames with their arrival times, shared with the socket's thread.
pub type Frames = Arc<Mutex<Vec<(Instant, Vec<i16>)>>>;

/// A supervisor's browser: a WebSocket on the session's audio route, in
/// its own thread. Keeps every frame received with its arrival time and
/// every status message; sends queued microphone frames every 20 ms.
pub struct Supervisor {
    /// Frames heard (16 kHz).
    pub heard: Frames,
    /// Status messages (JSON).
    status: Arc<Mutex<Vec<serde_json::Value>>>,
    /// Microphone frames waiting to be sent.
    mic: Arc<Mutex<std::collections::VecDeque<Vec<i16>>>>,
    /// Set to close the socket.
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// The socket's thread (ends when the socket closes).
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Supervisor {
    /// Connects to `path` (the `audio` of a supervise answer) as the admin.
    pub fn connect(skald: &Skald, path: &str) -> Supervisor {
        Self::try_connect(skald, path).expect("the audio socket opens")
    }

    /// [`Supervisor::connect`], or why the upgrade failed.
    pub fn try_connect(skald: &Skald, path: &str) -> Result<Supervisor, String> {
        let url = format!("ws://127.0.0.1:{}{path}", skald.http_port);
        let heard = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(Mutex::new(Vec::new()));
        let mic = Arc::new(Mutex::new(std::collections::VecDeque::<Vec<i16>>::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (h, s, m, st) = (heard.clone(), status.clone(), mic.clone(), stop.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let mut req = url.as_str().into_client_request().unwrap();
                req.headers_mut().insert("authorization", format!("Bearer {ADMIN_TOKEN}").parse().unwrap());
                let (mut ws, _) = match tokio_tungstenite::connect_async(req).await {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            if st.load(std::sync::atomic::Ordering::SeqCst) {
                                let _ = ws.close(None).await;
                                return;
                            }
                            let frame = m.lock().unwrap().pop_front();
                            if let Some(f) = frame {
                                let bytes: Vec<u8> = f.iter().flat_map(|x| x.to_le_bytes()).collect();
                                if ws.send(Message::Binary(bytes.into())).await.is_err() {
                                    return;
                                }
                            }
                        }
                        msg = ws.next() => match msg {
                            Some(Ok(Message::Binary(b))) => {
                                let f: Vec<i16> = b.chunks_exact(2).map(|x| i16::from_le_bytes([x[0], x[1]])).collect();
                                h.lock().unwrap().push((Instant::now(), f));
                            }
                            Some(Ok(Message::Text(t))) => s.lock().unwrap().push(serde_json::from_str(&t).unwrap()),
                            Some(Ok(_)) => {}
                            None | Some(Err(_)) => return,
                        },
                    }
                }
            });
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).map_err(|e| e.to_string())??;
        Ok(Supervisor { heard, status, mic, stop, thread: Some(thread) })
    }

    /// Queues 8 kHz µ-law speech as 16 kHz microphone frames.
    pub fn say(&self, ulaw: &[u8]) {
        let pcm8: Vec<i16> = ulaw.iter().map(|&b| mulaw_to_linear(b)).collect();
        let pcm16 = skald::rtp::codec::resample::resample_all(&pcm8, 8000, 16000).unwrap();
        let mut q = self.mic.lock().unwrap();
        for f in pcm16.chunks(FRAME) {
            let mut f = f.to_vec();
            f.resize(FRAME, 0);
            q.push_back(f);
        }
    }

    /// Microphone frames not sent yet.
    pub fn pending(&self) -> usize {
        self.mic.lock().unwrap().len()
    }

    /// Frames heard between `from` and `to`.
    pub fn heard_between(&self, from: Instant, to: Instant) -> Vec<(Instant, Vec<i16>)> {
        self.heard.lock().unwrap().iter().filter(|(t, _)| *t >= from && *t <= to).cloned().collect()
    }

    pub fn status(&self) -> Vec<serde_json::Value> {
        self.status.lock().unwrap().clone()
    }

    /// Closes the socket (the browser goes away).
    pub fn close(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// What the supervisor heard (16 kHz frames), transcribed by skald's STT.
pub fn transcribe_16k(frames: &[(Instant, Vec<i16>)]) -> String {
    let pcm: Vec<i16> = frames.iter().flat_map(|(_, f)| f.iter().copied()).collect();
    let pcm8 = skald::rtp::codec::resample::resample_all(&pcm, 16000, 8000).unwrap();
    let t = Instant::now();
    let frames8: Vec<(Instant, Vec<i16>)> = pcm8.chunks(160).map(|c| (t, c.to_vec())).collect();
    transcribe_heard(&frames8)
}

/// Waits until the supervisor's queued speech is sent, plus `tail`.
pub fn wait_sent(sup: &Supervisor, tail: Duration) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while sup.pending() > 0 {
        assert!(Instant::now() < deadline, "the supervisor's speech was not sent");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(tail);
}

