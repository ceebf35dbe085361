//! The local models together: what Piper says, Moonshine understands
//! (TTS → STT round trip), in the phone band as a caller would hear it.

use skald::providers::local::{models::ModelPaths, moonshine::Moonshine, onnx, piper::Piper};
use skald::rtp::codec::{g711::Law, resample::resample_all};

#[test]
fn piper_speech_is_understood_by_moonshine_through_a_phone_line() {
    let paths = ModelPaths::in_dir(&ModelPaths::default_dir());
    onnx::init_runtime(&paths.onnxruntime).expect("models (run `skald models fetch`)");
    let voice = Piper::load(&paths.piper_model, &paths.piper_config).unwrap();
    let stt = Moonshine::load(&paths.moonshine_encoder, &paths.moonshine_decoder, &paths.moonshine_tokenizer).unwrap();
    let text = "Thank you for calling Bright Smile Dental. How can I help you today?";
    let audio = voice.synthesize_sentence(text).unwrap();
    // Through the phone: 8 kHz µ-law and back, as skald sends it.
    let pcm8 = resample_all(&audio, voice.sample_rate(), 8000).unwrap();
    let mut ulaw = Vec::new();
    Law::Mu.encode(&pcm8, &mut ulaw);
    let mut back = Vec::new();
    Law::Mu.decode(&ulaw, &mut back);
    let pcm16 = resample_all(&back, 8000, 16000).unwrap();
    let heard = stt.transcribe(&pcm16).unwrap().to_lowercase();
    eprintln!("piper said {text:?}; moonshine heard {heard:?}");
    for w in ["thank", "calling", "smile", "dental", "help", "today"] {
        assert!(heard.contains(w), "`{w}` not understood in {heard:?}");
    }
}
