//! Answering-machine detection measured on a labelled set of phone-band
//! clips built here from local sources (no downloads):
//!
//! * machine greetings: 8 voicemail texts spoken by espeak-ng and by Piper
//!   (16 clips; half of them followed by a sox sine beep after a short gap),
//!   and the 5 LibriVox recordings of `pocketsphinx-testdata` (3–7 s of real
//!   read speech, a machine-like monologue; 2 of them with a beep);
//! * human answers: "Hello?", "Hi, this is Mark.", "Yeah, hello?", "Hello,
//!   who's calling?", "Speaking." and "Hello? … Hello?" in both voices, and
//!   the first 1.2 s of each LibriVox recording (`sox … trim 0 1.2`), each
//!   followed by the silence of a person waiting for an answer.
//!
//! Every clip starts with 0.3–0.9 s of silence after the answer, goes
//! through 8 kHz µ-law and back to 16 kHz (as RTP PCMU would), and gets a
//! faint line noise. The detector is fed 20 ms frames with the real Silero
//! VAD's probabilities (the latest window's, as `call::voice` runs it).
//! Needs the models (`make test` fetches them; else `skald models fetch`).

mod common;

use std::process::Command;

use skald::pipeline::amd::{AmdConfig, AmdDetector, AmdEvent, AmdResult, BeepConfig, BeepDetector};
use skald::pipeline::vad::silero::SileroVad;
use skald::providers::local::models::ModelPaths;
use skald::providers::local::onnx::init_runtime;
use skald::rtp::codec::g711::Law;

const LIBRIVOX: &str = "/usr/share/pocketsphinx/test/data/librivox";
const LIBRIVOX_IDS: [&str; 5] = [
    "sense_and_sensibility_01_austen_64kb-0870",
    "sense_and_sensibility_01_austen_64kb-0880",
    "sense_and_sensibility_01_austen_64kb-0890",
    "sense_and_sensibility_01_austen_64kb-0920",
    "sense_and_sensibility_01_austen_64kb-0930",
];

const GREETINGS: [&str; 8] = [
    "Hi, you've reached Anna Smith. I can't take your call right now, please leave a message after the tone.",
    "Hello, you have reached the voicemail of John Miller. Please leave your name and number and I will call you back.",
    "The person you are calling is not available. Please record your message after the tone.",
    "Thanks for calling Green Valley Dental. Our office is currently closed. Please leave a message.",
    "Hey, it's Mike. Leave a message.",
    "You've reached five five five, zero one three four. No one is available to take your call. Please leave a message after the beep.",
    "Hi, this is Sarah. Sorry I missed you. Leave your number and I'll get back to you as soon as I can.",
    "Your call has been forwarded to an automated voice messaging system. The person you are trying to reach is not available.",
];

const ANSWERS: [&str; 5] = ["Hello?", "Hi, this is Mark.", "Yeah, hello?", "Hello, who's calling?", "Speaking."];

/// Beeps used: (frequency Hz, seconds).
const BEEPS: [(u32, f32); 8] =
    [(1000, 0.4), (850, 0.4), (1400, 0.3), (440, 0.5), (1000, 0.25), (700, 0.4), (1200, 0.6), (950, 0.4)];

/// Tolerance on a beep's start, ms.
const BEEP_TOLERANCE_MS: u64 = 60;

/// One labelled clip at 16 kHz.
struct Clip {
    /// Source and variant.
    name: String,
    /// True label (Human or Machine).
    label: AmdResult,
    /// Phone-band audio, 16 kHz.
    pcm: Vec<i16>,
    /// Where the beep starts, ms, when the clip has one.
    beep_at_ms: Option<u64>,
}

/// What the detector made of one clip.
struct Outcome {
    /// The first decision (what the agent acted on first).
    first: Option<(AmdResult, u64)>,
    result: AmdResult,
    reason: String,
    at_ms: u64,
    beeps: Vec<(u64, f32)>,
    ready_ms: Option<u64>,
}

/// µ-law silence, `ms` long (8 kHz).
fn silence(ms: u64) -> Vec<u8> {
    vec![Law::Mu.silence(); (ms * 8) as usize]
}

/// sox's sine beep as 8 kHz µ-law (half scale).
fn sox_beep(freq: u32, secs: f32) -> Vec<u8> {
    let out = Command::new("sox")
        .args(["-n", "-r", "8000", "-c", "1", "-t", "ul", "-", "synth", &secs.to_string(), "sine", &freq.to_string()])
        .args(["vol", "0.5"])
        .output()
        .expect("sox (installed by `make test`)");
    assert!(out.status.success(), "sox synth failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// espeak-ng with a voice and speed, as 8 kHz µ-law.
fn espeak(text: &str, voice: &str, speed: u32) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("say.wav");
    let st = Command::new("espeak-ng")
        .args(["-v", voice, "-s", &speed.to_string(), "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("espeak-ng (installed by `make test`)");
    assert!(st.success(), "espeak-ng failed");
    let out = Command::new("sox").arg(&wav).args(["-r", "8000", "-c", "1", "-t", "ul", "-"]).output().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// The first `secs` of a LibriVox recording, as 8 kHz µ-law.
fn librivox_cut(id: &str, secs: f32) -> Vec<u8> {
    let out = Command::new("sox")
        .arg(format!("{LIBRIVOX}/{id}.wav"))
        .args(["-r", "8000", "-c", "1", "-t", "ul", "-", "trim", "0", &secs.to_string()])
        .output()
        .expect("sox");
    assert!(out.status.success(), "sox trim failed on {id} (Debian pocketsphinx-testdata)");
    out.stdout
}

/// µ-law 8 kHz → PCM16 16 kHz, plus faint deterministic line noise (±24).
fn to_pipeline(ulaw: &[u8], seed: u32) -> Vec<i16> {
    let mut pcm8 = Vec::new();
    Law::Mu.decode(ulaw, &mut pcm8);
    let pcm = skald::rtp::codec::resample::resample_all(&pcm8, 8000, 16000).unwrap();
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    pcm.iter()
        .map(|&v| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            v.saturating_add((s % 49) as i16 - 24)
        })
        .collect()
}

/// Assembles a clip: lead silence, speech, optionally a gap and a beep, and
/// the trailing silence.
fn clip(name: String, label: AmdResult, lead_ms: u64, speech: &[u8], beep: Option<(u64, u32, f32)>, tail_ms: u64) -> Clip {
    let mut ulaw = silence(lead_ms);
    ulaw.extend_from_slice(speech);
    let mut beep_at_ms = None;
    if let Some((gap_ms, freq, secs)) = beep {
        ulaw.extend(silence(gap_ms));
        beep_at_ms = Some(ulaw.len() as u64 / 8);
        ulaw.extend(sox_beep(freq, secs));
    }
    ulaw.extend(silence(tail_ms));
    let seed = name.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    Clip { name, label, pcm: to_pipeline(&ulaw, seed), beep_at_ms }
}

/// The labelled set.
fn dataset() -> Vec<Clip> {
    let lead = |i: usize| 300 + (i as u64 * 170) % 600;
    let mut set = Vec::new();
    // Machines: synthesized greetings, with a beep on alternate variants.
    for (i, text) in GREETINGS.iter().enumerate() {
        let voices: [(&str, Vec<u8>); 2] = [
            ("espeak", espeak(text, if i % 2 == 0 { "en-us" } else { "en-us+f3" }, 150 + (i as u32 % 3) * 15)),
            ("piper", common::piper_ulaw(text)),
        ];
        for (v, (voice, speech)) in voices.into_iter().enumerate() {
            let with_beep = (i + v) % 2 == 0;
            let (freq, secs) = BEEPS[i];
            let beep = with_beep.then_some((300 + (i as u64 * 70) % 300, freq, secs));
            let tag = if with_beep { format!("+beep {freq}") } else { String::new() };
            let name = format!("{voice} greeting {}{tag}", i + 1);
            set.push(clip(name, AmdResult::Machine, lead(i + v), &speech, beep, 2500));
        }
    }
    // Machines: real read speech as a monologue.
    for (i, id) in LIBRIVOX_IDS.iter().enumerate() {
        let speech = common::librivox_ulaw(id);
        let beep = (i % 2 == 0 && i < 4).then_some((400, BEEPS[i].0, 0.4));
        let tag = if beep.is_some() { format!("+beep {}", BEEPS[i].0) } else { String::new() };
        let name = format!("librivox {}{tag}", &id[id.len() - 4..]);
        set.push(clip(name, AmdResult::Machine, lead(i + 3), &speech, beep, 2500));
    }
    // Humans: short answers in both voices, then waiting.
    for (i, text) in ANSWERS.iter().enumerate() {
        let speech = espeak(text, if i % 2 == 0 { "en-us+f3" } else { "en-us" }, 160);
        set.push(clip(format!("espeak \"{text}\""), AmdResult::Human, lead(i), &speech, None, 4000));
        let speech = common::piper_ulaw(text);
        set.push(clip(format!("piper \"{text}\""), AmdResult::Human, lead(i + 1), &speech, None, 4000));
    }
    // Humans: "Hello? … Hello?" (nobody speaks, so the person asks again).
    for (voice, hello) in [("espeak", espeak("Hello?", "en-us", 160)), ("piper", common::piper_ulaw("Hello?"))] {
        let mut speech = hello.clone();
        speech.extend(silence(650));
        speech.extend(&hello);
        set.push(clip(format!("{voice} \"Hello? … Hello?\""), AmdResult::Human, 500, &speech, None, 4000));
    }
    // Humans: real speech cut to 1.2 s.
    for (i, id) in LIBRIVOX_IDS.iter().enumerate() {
        let speech = librivox_cut(id, 1.2);
        set.push(clip(format!("librivox {} first 1.2 s", &id[id.len() - 4..]), AmdResult::Human, lead(i + 2), &speech, None, 4000));
    }
    set
}

/// The Silero VAD, or a clear failure.
fn silero() -> std::sync::Arc<SileroVad> {
    let paths = ModelPaths::in_dir(&ModelPaths::default_dir());
    init_runtime(&paths.onnxruntime)
        .unwrap_or_else(|e| panic!("ONNX Runtime missing ({e}): run `make test` or `skald models fetch` first"));
    SileroVad::load(&paths.silero_vad)
        .unwrap_or_else(|e| panic!("Silero VAD model missing ({e}): run `make test` or `skald models fetch` first"))
}

/// Runs the detector over a clip in 20 ms frames; `vad` gives Silero
/// probabilities, `None` uses the detector's energy VAD.
fn detect(clip: &Clip, vad: Option<&std::sync::Arc<SileroVad>>) -> Outcome {
    let mut amd = AmdDetector::new(AmdConfig::default());
    let mut stream = vad.map(|v| v.stream());
    let mut prob = 0.0f32;
    let mut out = Outcome { first: None, result: AmdResult::Unknown, reason: "clip ended".into(), at_ms: 0, beeps: vec![], ready_ms: None };
    for frame in clip.pcm.chunks(320) {
        let p = match stream.as_mut() {
            Some(s) => {
                if let Some(&last) = s.push(frame).unwrap().last() {
                    prob = last;
                }
                Some(prob)
            }
            None => None,
        };
        amd.push(frame, p);
        while let Some(ev) = amd.poll_event() {
            match ev {
                AmdEvent::Decided(d) => {
                    out.first.get_or_insert((d.result, d.at_ms));
                    out.result = d.result;
                    out.reason = d.reason;
                    out.at_ms = d.at_ms;
                }
                AmdEvent::Beep(b) => out.beeps.push((b.at_ms, b.freq_hz)),
                AmdEvent::ReadyForMessage { at_ms, .. } => out.ready_ms = Some(at_ms),
            }
        }
        if amd.is_done() {
            break;
        }
    }
    out
}

/// Beeps found by a standalone [`BeepDetector`] over the whole clip.
fn all_beeps(pcm: &[i16]) -> Vec<(u64, f32)> {
    let mut d = BeepDetector::new(BeepConfig::default());
    let mut out = Vec::new();
    for f in pcm.chunks(320).chain([&[0i16; 640][..]]) {
        d.push(f);
        out.extend(std::iter::from_fn(|| d.poll_beep()).map(|b| (b.at_ms, b.freq_hz)));
    }
    out
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

#[test]
fn amd_on_synthesized_and_recorded_greetings_and_human_answers() {
    let vad = silero();
    let set = dataset();
    assert!(set.len() >= 38, "dataset has {} clips", set.len());

    let mut correct = 0;
    let mut energy_correct = 0;
    let mut first_correct = 0;
    let mut times: Vec<(AmdResult, u64)> = Vec::new();
    let mut failures = Vec::new();
    println!(
        "\n{:<52} {:<8} {:<8} {:>6}  {:<34} {:<16} {:>6}  energy-VAD",
        "clip", "label", "result", "at ms", "reason", "beep (true) ms", "ready"
    );
    for clip in &set {
        let o = detect(clip, Some(&vad));
        let e = detect(clip, None);
        let ok = o.result == clip.label;
        correct += usize::from(ok);
        let first = o.first.map_or(AmdResult::Unknown, |f| f.0);
        first_correct += usize::from(first == clip.label);
        let revised = match o.first {
            Some((r, at)) if r != o.result => format!(" (first {r:?} at {at})"),
            _ => String::new(),
        };
        energy_correct += usize::from(e.result == clip.label);
        if ok {
            times.push((clip.label, o.at_ms));
        } else {
            failures.push(format!("{}: {:?} ({}) at {} ms", clip.name, o.result, o.reason, o.at_ms));
        }
        let beep = match (o.beeps.first(), clip.beep_at_ms) {
            (Some((at, f)), Some(t)) => format!("{at}@{f:.0}Hz ({t})"),
            (Some((at, f)), None) => format!("{at}@{f:.0}Hz (none)"),
            (None, Some(t)) => format!("missed ({t})"),
            (None, None) => "-".into(),
        };
        println!(
            "{:<52} {:<8} {:<8} {:>6}  {:<34} {:<16} {:>6}  {:?} {}{}",
            clip.name,
            format!("{:?}", clip.label),
            format!("{:?}", o.result),
            o.at_ms,
            format!("{}{revised}", o.reason),
            beep,
            o.ready_ms.map_or("-".into(), |r| r.to_string()),
            e.result,
            e.at_ms,
            if ok { "" } else { "   <-- wrong" }
        );

        // Beeps: found within tolerance where there is one, never on a human
        // answer (by the detector in the call, and by a standalone one over the
        // whole clip).
        if let Some(t) = clip.beep_at_ms {
            let found = o.beeps.iter().any(|&(at, _)| at.abs_diff(t) <= BEEP_TOLERANCE_MS);
            assert!(found, "{}: beep at {t} ms not found within ±{BEEP_TOLERANCE_MS} ms: {:?}", clip.name, o.beeps);
            let standalone = all_beeps(&clip.pcm);
            assert!(
                standalone.len() == 1 && standalone[0].0.abs_diff(t) <= BEEP_TOLERANCE_MS,
                "{}: standalone beeps {standalone:?}, true start {t} ms",
                clip.name
            );
        } else {
            let standalone = all_beeps(&clip.pcm);
            assert!(o.beeps.is_empty() && standalone.is_empty(), "{}: false beep {:?} {standalone:?}", clip.name, o.beeps);
        }
    }

    let n = set.len();
    let accuracy = correct as f64 / n as f64;
    let of = |label: AmdResult| times.iter().filter(|t| t.0 == label).map(|t| t.1).collect::<Vec<_>>();
    let all: Vec<u64> = times.iter().map(|t| t.1).collect();
    let (human, machine) = (of(AmdResult::Human), of(AmdResult::Machine));
    println!(
        "\naccuracy (Silero VAD): {correct}/{n} = {:.1} %; first decisions (before a late beep revises them): {first_correct}/{n}; energy VAD fallback: {energy_correct}/{n} = {:.1} %",
        accuracy * 100.0,
        energy_correct as f64 * 100.0 / n as f64
    );
    println!(
        "decision time, audio ms from answer (correct decisions): all median {} max {}; human median {} max {}; machine median {} max {}",
        median(all.clone()),
        all.iter().max().unwrap_or(&0),
        median(human.clone()),
        human.iter().max().unwrap_or(&0),
        median(machine.clone()),
        machine.iter().max().unwrap_or(&0)
    );
    println!("wrong: {failures:#?}");
    assert!(accuracy >= 0.90, "accuracy {:.1} % < 90 %: {failures:#?}", accuracy * 100.0);
}
