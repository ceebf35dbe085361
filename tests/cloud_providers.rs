//! Cloud STT/TTS providers against local servers that speak each provider's
//! documented wire protocol: Deepgram's live WebSocket (`Results`,
//! `Finalize`, `KeepAlive`, `CloseStream`), ElevenLabs' stream-input
//! WebSocket (init / text / end-of-input, base64 audio with `isFinal`) and
//! OpenAI's `/audio/speech` streamed PCM body. Also the errors, slow answers
//! and mid-stream disconnects, and failover to fake local providers.

use async_trait::async_trait;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use futures_util::StreamExt as _;
use skald::providers::deepgram::{DeepgramConfig, DeepgramStt};
use skald::providers::elevenlabs::{ElevenLabsConfig, ElevenLabsTts, OutputFormat};
use skald::providers::failover::{FailoverStt, FailoverTts};
use skald::providers::openai_tts::{OpenAiTts, OpenAiTtsConfig};
use skald::providers::{ProviderError, SttEvent, SttProvider, SttStream, Transcript, TtsAudio, TtsProvider};
use skald::rtp::codec::g711::Law;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The tests read the key from an environment variable cargo always sets
/// (no `set_var` in a multi-threaded test binary).
const KEY_ENV: &str = "CARGO_PKG_NAME";

fn key() -> String {
    std::env::var(KEY_ENV).expect("run under cargo")
}

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("{addr}")
}

/// Polls `cond` for up to 3 s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(3), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn next(stream: &mut dyn SttStream) -> Result<SttEvent, ProviderError> {
    tokio::time::timeout(Duration::from_secs(5), stream.next_event()).await.expect("event in time").expect("stream open")
}

fn frame(value: i16) -> Vec<i16> {
    vec![value; 320]
}

// ---------------------------------------------------------------- Deepgram

#[derive(Clone, Copy, PartialEq)]
enum DgMode {
    /// Interim after the first audio, final after `Finalize`.
    Normal,
    /// 401 instead of the upgrade.
    Unauthorized,
    /// Close the TCP connection after the first audio frame.
    DropAfterAudio,
    /// No answer to `Finalize` (Deepgram with nothing buffered).
    SilentFinalize,
}

#[derive(Default)]
struct DgRecord {
    query: HashMap<String, String>,
    authorization: Option<String>,
    audio_bytes: usize,
    texts: Vec<String>,
    connections: usize,
}

#[derive(Clone)]
struct DgServer {
    mode: DgMode,
    rec: Arc<Mutex<DgRecord>>,
}

impl DgServer {
    fn texts(&self, ty: &str) -> usize {
        let needle = format!(r#""type":"{ty}""#);
        self.rec.lock().unwrap().texts.iter().filter(|t| t.contains(&needle)).count()
    }
}

async fn deepgram_server(mode: DgMode) -> (DgServer, String) {
    let server = DgServer { mode, rec: Arc::default() };
    let app = axum::Router::new().route("/v1/listen", get(dg_upgrade)).with_state(server.clone());
    let addr = serve(app).await;
    (server, format!("ws://{addr}/v1/listen"))
}

async fn dg_upgrade(
    State(s): State<DgServer>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    {
        let mut rec = s.rec.lock().unwrap();
        rec.query = query;
        rec.authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
        rec.connections += 1;
    }
    if s.mode == DgMode::Unauthorized {
        let body = r#"{"err_code":"INVALID_AUTH","err_msg":"Invalid credentials.","request_id":"r1"}"#;
        return (StatusCode::UNAUTHORIZED, body).into_response();
    }
    ws.on_upgrade(move |socket| dg_session(s, socket))
}

fn dg_results(text: &str, is_final: bool, from_finalize: bool, start: f64) -> Message {
    let msg = serde_json::json!({
        "type": "Results", "channel_index": [0, 1], "duration": 0.5, "start": start,
        "is_final": is_final, "speech_final": is_final, "from_finalize": from_finalize,
        "channel": {"alternatives": [{"transcript": text, "confidence": 0.97, "words": []}]},
        "metadata": {"request_id": "r1", "model_info": {"name": "nova-3"}},
    });
    Message::Text(msg.to_string().into())
}

async fn dg_session(s: DgServer, mut socket: WebSocket) {
    let mut sent_interim = false;
    while let Some(Ok(msg)) = socket.recv().await {
        match msg {
            Message::Binary(bytes) => {
                s.rec.lock().unwrap().audio_bytes += bytes.len();
                if s.mode == DgMode::DropAfterAudio {
                    return; // dropping the socket closes TCP without a close frame
                }
                if !sent_interim && s.mode == DgMode::Normal {
                    sent_interim = true;
                    let _ = socket.send(dg_results("hello", false, false, 0.0)).await;
                }
            }
            Message::Text(text) => {
                s.rec.lock().unwrap().texts.push(text.to_string());
                if text.contains(r#""type":"Finalize""#) && s.mode != DgMode::SilentFinalize {
                    let _ = socket.send(dg_results("hello", true, false, 0.0)).await;
                    let utterance_end = r#"{"type":"UtteranceEnd","channel":[0,1],"last_word_end":0.9}"#;
                    let _ = socket.send(Message::Text(utterance_end.into())).await;
                    let _ = socket.send(dg_results("world", true, true, 0.5)).await;
                } else if text.contains(r#""type":"CloseStream""#) {
                    let meta = r#"{"type":"Metadata","request_id":"r1","duration":0.2,"channels":1}"#;
                    let _ = socket.send(Message::Text(meta.into())).await;
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            }
            _ => {}
        }
    }
}

fn dg_config(url: &str) -> DeepgramConfig {
    DeepgramConfig {
        base_url: url.to_owned(),
        api_key_env: KEY_ENV.into(),
        model: "nova-3".into(),
        endpointing_ms: Some(250),
        ..Default::default()
    }
}

#[tokio::test]
async fn deepgram_interim_then_one_final_after_finalize() {
    let (server, url) = deepgram_server(DgMode::Normal).await;
    let mut stream = DeepgramStt::new(dg_config(&url)).open().await.unwrap();
    for i in 0..10 {
        stream.send_audio(&frame(i)).await.unwrap();
    }
    let SttEvent::Interim(t) = next(stream.as_mut()).await.unwrap() else { panic!("interim first") };
    assert_eq!(t.text, "hello");
    stream.end_utterance().await.unwrap();
    let SttEvent::Final(t) = next(stream.as_mut()).await.unwrap() else { panic!("then the final") };
    assert_eq!(t.text, "hello world");
    assert_eq!((t.start_ms, t.end_ms), (0, 1000));

    let rec = server.rec.lock().unwrap();
    assert_eq!(rec.authorization.as_deref(), Some(format!("Token {}", key()).as_str()));
    for (k, v) in [
        ("encoding", "linear16"),
        ("sample_rate", "16000"),
        ("channels", "1"),
        ("interim_results", "true"),
        ("endpointing", "250"),
        ("model", "nova-3"),
    ] {
        assert_eq!(rec.query.get(k).map(String::as_str), Some(v), "query {k}");
    }
    assert_eq!(rec.audio_bytes, 10 * 320 * 2, "all audio as linear16 binary frames");
    assert_eq!(rec.texts, vec![r#"{"type":"Finalize"}"#.to_owned()]);
}

#[tokio::test]
async fn deepgram_silent_utterance_gets_an_empty_final() {
    let (_server, url) = deepgram_server(DgMode::SilentFinalize).await;
    let cfg = DeepgramConfig { finalize_timeout_ms: 200, ..dg_config(&url) };
    let mut stream = DeepgramStt::new(cfg).open_stream().await.unwrap();
    stream.send_audio(&frame(0)).await.unwrap();
    let start = Instant::now();
    stream.end_utterance().await.unwrap();
    let SttEvent::Final(t) = next(&mut stream).await.unwrap() else { panic!("final") };
    assert_eq!((t.text.as_str(), t.start_ms, t.end_ms), ("", 20, 20));
    assert!(start.elapsed() >= Duration::from_millis(190), "{:?}", start.elapsed());
}

#[tokio::test]
async fn deepgram_discarded_utterance_yields_no_final() {
    let (server, url) = deepgram_server(DgMode::Normal).await;
    let mut stream = DeepgramStt::new(dg_config(&url)).open_stream().await.unwrap();
    stream.discard_utterance().await.unwrap();
    stream.end_utterance().await.unwrap();
    // The server answers each Finalize; the discard swallows the first
    // answer, the end gets the second: exactly one Final.
    let SttEvent::Final(t) = next(&mut stream).await.unwrap() else { panic!("final") };
    assert_eq!(t.text, "hello world");
    let quiet = tokio::time::timeout(Duration::from_millis(300), stream.next_event()).await;
    assert!(quiet.is_err(), "no second Final: {quiet:?}");
    assert_eq!(server.texts("Finalize"), 2);
}

#[tokio::test]
async fn deepgram_keepalive_only_when_idle() {
    let (server, url) = deepgram_server(DgMode::Normal).await;
    let cfg = DeepgramConfig { keepalive_ms: 150, ..dg_config(&url) };
    let mut stream = DeepgramStt::new(cfg).open().await.unwrap();
    for _ in 0..15 {
        stream.send_audio(&frame(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.texts("KeepAlive"), 0, "no KeepAlive while audio flows");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = server.texts("KeepAlive");
    assert!((2..=4).contains(&n), "{n} KeepAlive messages in 500 ms idle at 150 ms");
}

#[tokio::test]
async fn deepgram_close_stream_on_drop() {
    let (server, url) = deepgram_server(DgMode::Normal).await;
    let mut stream = DeepgramStt::new(dg_config(&url)).open().await.unwrap();
    stream.send_audio(&frame(3)).await.unwrap();
    drop(stream);
    eventually("CloseStream", || server.texts("CloseStream") == 1).await;
}

#[tokio::test]
async fn deepgram_401_at_upgrade_is_auth() {
    let (server, url) = deepgram_server(DgMode::Unauthorized).await;
    let err = DeepgramStt::new(dg_config(&url)).open().await.err().expect("refused");
    assert!(matches!(&err, ProviderError::Auth(m) if m.contains("401")), "{err:?}");
    assert_eq!(server.rec.lock().unwrap().connections, 1);
}

#[tokio::test]
async fn deepgram_missing_key_is_auth_without_connecting() {
    let (server, url) = deepgram_server(DgMode::Normal).await;
    let cfg = DeepgramConfig { api_key_env: "SKALD_TEST_NO_SUCH_KEY_VAR".into(), ..dg_config(&url) };
    let err = DeepgramStt::new(cfg).open().await.err().expect("no key");
    assert!(matches!(err, ProviderError::Auth(_)), "{err:?}");
    assert_eq!(server.rec.lock().unwrap().connections, 0);
}

#[tokio::test]
async fn deepgram_disconnect_mid_utterance_is_an_error() {
    let (_server, url) = deepgram_server(DgMode::DropAfterAudio).await;
    let mut stream = DeepgramStt::new(dg_config(&url)).open().await.unwrap();
    stream.send_audio(&frame(5)).await.unwrap();
    let err = next(stream.as_mut()).await.expect_err("an error, not an event");
    assert!(matches!(err, ProviderError::Retryable(_)), "{err:?}");
    // The stream is over; commands fail instead of queueing into nothing.
    let start = Instant::now();
    while stream.send_audio(&frame(5)).await.is_ok() {
        assert!(start.elapsed() < Duration::from_secs(3), "send_audio keeps succeeding");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A local STT stand-in: each `end_utterance` yields a `Final` saying how
/// many samples it heard since the last one.
struct FakeStt;

struct FakeSttStream {
    samples: usize,
    tx: mpsc::UnboundedSender<Result<SttEvent, ProviderError>>,
    rx: mpsc::UnboundedReceiver<Result<SttEvent, ProviderError>>,
}

#[async_trait]
impl SttProvider for FakeStt {
    fn name(&self) -> &str {
        "fake-local"
    }
    async fn open(&self) -> Result<Box<dyn SttStream>, ProviderError> {
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Box::new(FakeSttStream { samples: 0, tx, rx }))
    }
}

#[async_trait]
impl SttStream for FakeSttStream {
    async fn send_audio(&mut self, pcm: &[i16]) -> Result<(), ProviderError> {
        self.samples += pcm.len();
        Ok(())
    }
    async fn end_utterance(&mut self) -> Result<(), ProviderError> {
        let text = format!("local heard {}", std::mem::take(&mut self.samples));
        let t = Transcript { text, start_ms: 0, end_ms: 0, confidence: None };
        let _ = self.tx.send(Ok(SttEvent::Final(t)));
        Ok(())
    }
    async fn discard_utterance(&mut self) -> Result<(), ProviderError> {
        self.samples = 0;
        Ok(())
    }
    async fn next_event(&mut self) -> Option<Result<SttEvent, ProviderError>> {
        self.rx.recv().await
    }
}

#[tokio::test]
async fn failover_stt_switches_mid_utterance_and_replays_the_audio() {
    let (_server, url) = deepgram_server(DgMode::DropAfterAudio).await;
    let failover = FailoverStt::new(Arc::new(DeepgramStt::new(dg_config(&url))), Arc::new(FakeStt));
    let mut stream = failover.open_stream().await.unwrap();
    assert!(!stream.on_fallback());
    for i in 0..10 {
        stream.send_audio(&frame(i)).await.unwrap();
    }
    stream.end_utterance().await.unwrap();
    // Whenever the primary's failure surfaced (send or event), the fallback
    // got the whole utterance and answers it once.
    let SttEvent::Final(t) = next(&mut stream).await.unwrap() else { panic!("final") };
    assert_eq!(t.text, "local heard 3200");
    assert!(stream.on_fallback());
    // The rest of the call stays on the fallback.
    stream.send_audio(&frame(1)).await.unwrap();
    stream.end_utterance().await.unwrap();
    let SttEvent::Final(t) = next(&mut stream).await.unwrap() else { panic!("final") };
    assert_eq!(t.text, "local heard 320");
    let failures = failover.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].starts_with("stt: deepgram failed") && failures[0].contains("fell back to fake-local"));
}

#[tokio::test]
async fn failover_stt_when_the_primary_cannot_open() {
    let (_server, url) = deepgram_server(DgMode::Unauthorized).await;
    let failover = FailoverStt::new(Arc::new(DeepgramStt::new(dg_config(&url))), Arc::new(FakeStt));
    let mut stream = failover.open().await.unwrap();
    stream.send_audio(&frame(1)).await.unwrap();
    stream.end_utterance().await.unwrap();
    let SttEvent::Final(t) = next(stream.as_mut()).await.unwrap() else { panic!("final") };
    assert_eq!(t.text, "local heard 320");
    let entries = failover.log().entries();
    assert_eq!(entries.len(), 1);
    assert!(matches!(entries[0].error, ProviderError::Auth(_)), "{:?}", entries[0]);
}

// -------------------------------------------------------------- ElevenLabs

#[derive(Clone, Copy, PartialEq)]
enum ElMode {
    /// Three audio chunks, then `isFinal`, then a normal close.
    Normal,
    /// One chunk, then an error message and a policy close.
    ErrorAfterFirst,
    /// One chunk, then the TCP connection drops.
    DropAfterFirst,
}

#[derive(Default)]
struct ElRecord {
    voice: String,
    query: HashMap<String, String>,
    api_key: Option<String>,
    messages: Vec<serde_json::Value>,
    connections: usize,
}

#[derive(Clone)]
struct ElServer {
    mode: ElMode,
    /// The audio bytes the server sends, one entry per message.
    chunks: Arc<Vec<Vec<u8>>>,
    rec: Arc<Mutex<ElRecord>>,
}

async fn elevenlabs_server(mode: ElMode, chunks: Vec<Vec<u8>>) -> (ElServer, String) {
    let server = ElServer { mode, chunks: Arc::new(chunks), rec: Arc::default() };
    let app = axum::Router::new()
        .route("/v1/text-to-speech/{voice}/stream-input", get(el_upgrade))
        .with_state(server.clone());
    let addr = serve(app).await;
    (server, format!("ws://{addr}"))
}

async fn el_upgrade(
    State(s): State<ElServer>,
    Path(voice): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    {
        let mut rec = s.rec.lock().unwrap();
        rec.voice = voice;
        rec.query = query;
        rec.api_key = headers.get("xi-api-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
        rec.connections += 1;
    }
    ws.on_upgrade(move |socket| el_session(s, socket))
}

fn el_audio(bytes: &[u8]) -> Message {
    let msg = serde_json::json!({
        "audio": base64::engine::general_purpose::STANDARD.encode(bytes),
        "isFinal": null,
        "normalizedAlignment": {"charStartTimesMs": [0, 30], "charDurationsMs": [30, 40], "chars": ["H", "i"]},
        "alignment": {"charStartTimesMs": [0, 30], "charDurationsMs": [30, 40], "chars": ["H", "i"]},
    });
    Message::Text(msg.to_string().into())
}

async fn el_session(s: ElServer, mut socket: WebSocket) {
    // Read the init, text and end-of-input messages.
    while let Some(Ok(msg)) = socket.recv().await {
        let Message::Text(text) = msg else { continue };
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let end = value["text"] == "";
        s.rec.lock().unwrap().messages.push(value);
        if end {
            break;
        }
    }
    for (i, chunk) in s.chunks.iter().enumerate() {
        if i == 1 {
            match s.mode {
                ElMode::Normal => {}
                ElMode::ErrorAfterFirst => {
                    let err = r#"{"message":"Internal server error while generating audio","error":"internal_error","code":1011}"#;
                    let _ = socket.send(Message::Text(err.into())).await;
                    let close = CloseFrame { code: 1011, reason: "internal error".into() };
                    let _ = socket.send(Message::Close(Some(close))).await;
                    return;
                }
                ElMode::DropAfterFirst => return,
            }
        }
        let _ = socket.send(el_audio(chunk)).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = socket.send(Message::Text(r#"{"isFinal":true}"#.into())).await;
    let _ = socket.send(Message::Close(None)).await;
}

fn el_config(url: &str, format: OutputFormat) -> ElevenLabsConfig {
    ElevenLabsConfig {
        base_url: url.to_owned(),
        voice_id: "voice123".into(),
        model_id: "eleven_flash_v2_5".into(),
        output_format: format,
        api_key_env: KEY_ENV.into(),
        ..Default::default()
    }
}

async fn collect(mut rx: mpsc::Receiver<Result<TtsAudio, ProviderError>>) -> Vec<Result<TtsAudio, ProviderError>> {
    let mut out = Vec::new();
    while let Some(item) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("chunk in time") {
        out.push(item);
    }
    out
}

#[tokio::test]
async fn elevenlabs_ulaw_chunks_in_order_with_documented_messages() {
    let chunks = vec![vec![0x00, 0x10, 0x20], vec![0x80, 0x90], vec![0xff; 5]];
    let (server, url) = elevenlabs_server(ElMode::Normal, chunks.clone()).await;
    let tts = ElevenLabsTts::new(el_config(&url, OutputFormat::Ulaw8000));
    let items = collect(tts.synthesize("Hello there.").await.unwrap()).await;
    let audio: Vec<TtsAudio> = items.into_iter().map(Result::unwrap).collect();
    assert_eq!(audio.len(), 3, "one TtsAudio per audio message");
    for (got, sent) in audio.iter().zip(&chunks) {
        let mut want = Vec::new();
        Law::Mu.decode(sent, &mut want);
        assert_eq!(got.pcm, want);
        assert_eq!(got.sample_rate, 8000);
    }

    let rec = server.rec.lock().unwrap();
    assert_eq!(rec.voice, "voice123");
    assert_eq!(rec.query.get("model_id").map(String::as_str), Some("eleven_flash_v2_5"));
    assert_eq!(rec.query.get("output_format").map(String::as_str), Some("ulaw_8000"));
    assert_eq!(rec.api_key.as_deref(), Some(key().as_str()));
    let m = &rec.messages;
    assert_eq!(m.len(), 3, "{m:?}");
    assert_eq!(m[0]["text"], " ", "init message first");
    assert!(m[0]["voice_settings"]["stability"].is_number());
    assert_eq!(m[1]["text"], "Hello there. ");
    assert_eq!(m[1]["flush"], true);
    assert_eq!(m[2], serde_json::json!({"text": ""}), "end of input last");
}

#[tokio::test]
async fn elevenlabs_pcm_16000_across_odd_chunks() {
    let samples: Vec<i16> = vec![100, -200, 300, -400, 500];
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let chunks = vec![bytes[..3].to_vec(), bytes[3..7].to_vec(), bytes[7..].to_vec()];
    let (server, url) = elevenlabs_server(ElMode::Normal, chunks).await;
    let tts = ElevenLabsTts::new(el_config(&url, OutputFormat::Pcm16000));
    let items = collect(tts.synthesize("Hi").await.unwrap()).await;
    let audio: Vec<TtsAudio> = items.into_iter().map(Result::unwrap).collect();
    assert!(audio.iter().all(|a| a.sample_rate == 16000));
    assert_eq!(audio.iter().flat_map(|a| a.pcm.clone()).collect::<Vec<_>>(), samples);
    assert_eq!(server.rec.lock().unwrap().query["output_format"], "pcm_16000");
}

#[tokio::test]
async fn elevenlabs_disconnect_mid_stream_is_an_error_after_the_audio() {
    let (_server, url) = elevenlabs_server(ElMode::DropAfterFirst, vec![vec![1, 2], vec![3, 4]]).await;
    let tts = ElevenLabsTts::new(el_config(&url, OutputFormat::Ulaw8000));
    let items = collect(tts.synthesize("Hello.").await.unwrap()).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(items[0].is_ok());
    assert!(matches!(items[1], Err(ProviderError::Retryable(_))), "{:?}", items[1]);
}

#[tokio::test]
async fn elevenlabs_error_message_is_an_error() {
    let (_server, url) = elevenlabs_server(ElMode::ErrorAfterFirst, vec![vec![1, 2], vec![3, 4]]).await;
    let tts = ElevenLabsTts::new(el_config(&url, OutputFormat::Ulaw8000));
    let items = collect(tts.synthesize("Hello.").await.unwrap()).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(matches!(&items[1], Err(ProviderError::Retryable(m)) if m.contains("internal_error")), "{:?}", items[1]);
}

/// A local TTS stand-in: one chunk of 7s at 22,050 Hz per request.
struct FakeTts {
    calls: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl TtsProvider for FakeTts {
    fn name(&self) -> &str {
        "fake-piper"
    }
    async fn synthesize(&self, text: &str) -> Result<mpsc::Receiver<Result<TtsAudio, ProviderError>>, ProviderError> {
        self.calls.lock().unwrap().push(text.to_owned());
        let (tx, rx) = mpsc::channel(4);
        tx.send(Ok(TtsAudio { pcm: vec![7; 100], sample_rate: 22_050 })).await.unwrap();
        Ok(rx)
    }
}

#[tokio::test]
async fn failover_tts_resynthesizes_the_sentence_locally_after_an_error_mid_stream() {
    let (server, url) = elevenlabs_server(ElMode::ErrorAfterFirst, vec![vec![1, 2], vec![3, 4]]).await;
    let calls = Arc::new(Mutex::new(Vec::new()));
    let tts = FailoverTts::new(
        Arc::new(ElevenLabsTts::new(el_config(&url, OutputFormat::Ulaw8000))),
        Arc::new(FakeTts { calls: calls.clone() }),
    );
    let items = collect(tts.synthesize("Your table is booked.").await.unwrap()).await;
    let audio: Vec<TtsAudio> = items.into_iter().map(|i| i.expect("no error reaches the caller")).collect();
    assert_eq!(audio.len(), 2, "{audio:?}");
    assert_eq!(audio[0].sample_rate, 8000, "the primary's audio first");
    assert_eq!(audio[1], TtsAudio { pcm: vec![7; 100], sample_rate: 22_050 }, "then the fallback's");
    assert_eq!(*calls.lock().unwrap(), vec!["Your table is booked.".to_owned()]);
    let failures = tts.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].starts_with("tts: elevenlabs failed") && failures[0].contains("fake-piper"), "{failures:?}");

    // The rest of the call stays on the fallback.
    let items = collect(tts.synthesize("Goodbye.").await.unwrap()).await;
    assert_eq!(items.len(), 1);
    assert_eq!(server.rec.lock().unwrap().connections, 1);
    assert_eq!(tts.failures().len(), 1);
}

#[tokio::test]
async fn failover_tts_when_the_primary_refuses() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    // Nothing listens on port 9 of loopback: connect fails at once.
    let primary = ElevenLabsTts::new(el_config("ws://127.0.0.1:9", OutputFormat::Ulaw8000));
    let tts = FailoverTts::new(Arc::new(primary), Arc::new(FakeTts { calls: calls.clone() }));
    let items = collect(tts.synthesize("Hello.").await.unwrap()).await;
    assert_eq!(items.len(), 1);
    assert!(tts.on_fallback());
    assert!(matches!(tts.log().entries()[0].error, ProviderError::Retryable(_)));
}

// -------------------------------------------------------------- OpenAI TTS

#[derive(Clone, Copy, PartialEq)]
enum OaMode {
    /// 200 with the PCM body in odd-sized chunks, 30 ms apart.
    Stream,
    /// 500 with an error body.
    ServerError,
    /// 429 with `Retry-After: 2`.
    RateLimited,
    /// Answers only after 2 s.
    Slow,
}

type OaRequest = (Option<String>, serde_json::Value);

#[derive(Clone)]
struct OaServer {
    mode: OaMode,
    body: Arc<Vec<u8>>,
    /// `Authorization` header and JSON body of each request.
    rec: Arc<Mutex<Vec<OaRequest>>>,
}

async fn openai_server(mode: OaMode, body: Vec<u8>) -> (OaServer, String) {
    let server = OaServer { mode, body: Arc::new(body), rec: Arc::default() };
    let app = axum::Router::new().route("/v1/audio/speech", post(oa_speech)).with_state(server.clone());
    let addr = serve(app).await;
    (server, format!("http://{addr}/v1"))
}

async fn oa_speech(State(s): State<OaServer>, headers: HeaderMap, body: String) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    s.rec.lock().unwrap().push((auth, serde_json::from_str(&body).unwrap_or_default()));
    let error = |status: StatusCode, msg: &str| {
        let body = serde_json::json!({"error": {"message": msg, "type": "server_error", "param": null, "code": null}});
        (status, axum::Json(body)).into_response()
    };
    match s.mode {
        OaMode::ServerError => error(StatusCode::INTERNAL_SERVER_ERROR, "The server had an error"),
        OaMode::RateLimited => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "Rate limit reached");
            r.headers_mut().insert("retry-after", "2".parse().unwrap());
            r
        }
        OaMode::Slow => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            error(StatusCode::OK, "too late")
        }
        OaMode::Stream => {
            let body = s.body.clone();
            let cuts = [0, 3, 8, 9, body.len()];
            let stream = futures_util::stream::iter(cuts.windows(2).map(|w| (w[0], w[1])).collect::<Vec<_>>()).then(
                move |(a, b)| {
                    let piece = body[a..b].to_vec();
                    async move {
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        Ok::<_, std::io::Error>(piece)
                    }
                },
            );
            ([("content-type", "audio/pcm")], axum::body::Body::from_stream(stream)).into_response()
        }
    }
}


fn oa_config(url: &str) -> OpenAiTtsConfig {
    OpenAiTtsConfig {
        base_url: url.to_owned(),
        model: "gpt-4o-mini-tts".into(),
        voice: "coral".into(),
        api_key_env: KEY_ENV.into(),
        first_byte_timeout_ms: 300,
        ..Default::default()
    }
}

#[tokio::test]
async fn openai_tts_streams_pcm_chunks_across_odd_splits() {
    let samples: Vec<i16> = (0..12).map(|i| i * 1000 - 6000).collect();
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let (server, url) = openai_server(OaMode::Stream, bytes).await;
    let tts = OpenAiTts::new(oa_config(&url)).unwrap();
    let audio: Vec<TtsAudio> =
        collect(tts.synthesize("Hello there.").await.unwrap()).await.into_iter().map(Result::unwrap).collect();
    assert!(audio.len() >= 3, "streamed as the body arrives, not buffered: {} chunks", audio.len());
    assert!(audio.iter().all(|a| a.sample_rate == 24_000));
    assert_eq!(audio.iter().flat_map(|a| a.pcm.clone()).collect::<Vec<_>>(), samples);

    let rec = server.rec.lock().unwrap();
    let (auth, body) = &rec[0];
    assert_eq!(auth.as_deref(), Some(format!("Bearer {}", key()).as_str()));
    assert_eq!(body["model"], "gpt-4o-mini-tts");
    assert_eq!(body["input"], "Hello there.");
    assert_eq!(body["voice"], "coral");
    assert_eq!(body["response_format"], "pcm");
}

#[tokio::test]
async fn openai_tts_500_is_retryable_and_429_is_rate_limited() {
    let (_s, url) = openai_server(OaMode::ServerError, Vec::new()).await;
    let err = OpenAiTts::new(oa_config(&url)).unwrap().synthesize("Hi.").await.expect_err("500");
    assert!(matches!(&err, ProviderError::Retryable(m) if m.contains("500") && m.contains("server had an error")), "{err:?}");

    let (_s, url) = openai_server(OaMode::RateLimited, Vec::new()).await;
    let err = OpenAiTts::new(oa_config(&url)).unwrap().synthesize("Hi.").await.expect_err("429");
    assert_eq!(err, ProviderError::RateLimited { retry_after: Some(Duration::from_secs(2)) });
}

#[tokio::test]
async fn openai_tts_slow_first_byte_times_out() {
    let (_s, url) = openai_server(OaMode::Slow, Vec::new()).await;
    let tts = OpenAiTts::new(oa_config(&url)).unwrap();
    let start = Instant::now();
    let err = tts.synthesize("Hi.").await.expect_err("timeout");
    assert!(matches!(err, ProviderError::Retryable(_)), "{err:?}");
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(300) && took < Duration::from_millis(1500), "{took:?}");
}
