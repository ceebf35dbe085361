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
    // Piper samples its noise (VITS), so each run sounds a little different:
    // allow one word in thirteen to be misheard.
    let wer = skald::providers::wer::word_error_rate(text, &heard);
    assert!(wer <= 0.1, "WER {:.0} %: {heard:?}", wer * 100.0);
}

/// The exact receive path of a call (µ-law frames → G.711 decode → the
/// streaming 8 → 16 kHz resampler, 20 ms at a time) keeps speech as
/// intelligible as a one-shot conversion.
#[test]
fn call_receive_path_keeps_speech_intelligible() {
    use skald::rtp::codec::resample::Resampler;
    let paths = ModelPaths::in_dir(&ModelPaths::default_dir());
    onnx::init_runtime(&paths.onnxruntime).expect("models (run `skald models fetch`)");
    let stt = Moonshine::load(&paths.moonshine_encoder, &paths.moonshine_decoder, &paths.moonshine_tokenizer).unwrap();
    let id = "sense_and_sensibility_01_austen_64kb-0880";
    let ulaw = std::process::Command::new("sox")
        .arg(format!("/usr/share/pocketsphinx/test/data/librivox/{id}.wav"))
        .args(["-r", "8000", "-c", "1", "-t", "ul", "-"])
        .output()
        .unwrap()
        .stdout;
    let mut up = Resampler::new(8000, 16000, 160).unwrap();
    let (mut pcm8, mut streamed) = (Vec::new(), Vec::new());
    for frame in ulaw.chunks(160) {
        pcm8.clear();
        Law::Mu.decode(frame, &mut pcm8);
        pcm8.resize(160, 0);
        up.process(&pcm8, &mut streamed);
    }
    let mut all8 = Vec::new();
    Law::Mu.decode(&ulaw, &mut all8);
    let oneshot = resample_all(&all8, 8000, 16000).unwrap();
    let a = stt.transcribe(&streamed).unwrap();
    let b = stt.transcribe(&oneshot).unwrap();
    eprintln!("streamed: {a:?}\noneshot:  {b:?}");
    assert_eq!(a.to_lowercase(), b.to_lowercase());
}
