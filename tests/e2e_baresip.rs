//! End to end with baresip (Debian `baresip-core`), a real softphone: it
//! dials skald, plays real speech from a WAV (`aufile`) and records what it
//! hears (`sndfile`); the test checks the echo came back.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn baresip_config(dir: &Path, source: &Path) {
    let sip_port = free_port();
    let low = 30000 + (std::process::id() % 100) as u16 * 20;
    std::fs::write(
        dir.join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{sip_port}\nnet_interface 127.0.0.1\n\
             audio_player nil,nil\naudio_source aufile,{}\naudio_alert nil,nil\n\
             audio_srate 8000\naudio_channels 1\nmodule_path /usr/lib/baresip/modules\n\
             module stdio.so\nmodule g711.so\nmodule aufile.so\nmodule sndfile.so\n\
             module_app account.so\nmodule_app menu.so\nsnd_path {}\nrtp_ports {low}-{}\n",
            source.display(),
            dir.join("rec").display(),
            low + 19
        ),
    )
    .unwrap();
    std::fs::write(dir.join("accounts"), "<sip:caller@127.0.0.1>;regint=0;audio_codecs=PCMU\n").unwrap();
    std::fs::create_dir_all(dir.join("rec")).unwrap();
}

#[test]
fn baresip_softphone_hears_its_echo() {
    let skald = Skald::start();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("speech8k.wav");
    let st = Command::new("sox")
        .args([SPEECH_WAV, "-r", "8000", "-c", "1", "-b", "16"])
        .arg(&source)
        .status()
        .unwrap();
    assert!(st.success());
    baresip_config(dir.path(), &source);
    let out = Command::new("timeout")
        .args(["30", "baresip", "-f"])
        .arg(dir.path())
        .args(["-e", &format!("/dial {}", skald.uri("echo")), "-t", "9"])
        .output()
        .expect("baresip (installed by `make test`)");
    let log = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("Call established"), "baresip did not connect:\n{log}\n{}", skald.log());

    let c = &skald.wait_ended(1, Duration::from_secs(10))[0];
    assert_eq!(c["codec"], "PCMU", "{c:#}");
    assert_eq!(c["end_reason"], "remote-bye");

    let dec = std::fs::read_dir(dir.path().join("rec"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .expect("baresip's recording of what it heard");
    let (heard, rate) = read_wav(&dec);
    assert_eq!(rate, 8000);
    let (sent, _) = read_wav(&source);
    assert!(heard.len() > 8000 * 6, "baresip heard only {} samples:\n{log}", heard.len());
    let (off, corr) = best_fit(&envelope(&heard, 80), &envelope(&sent[..8000 * 5], 80));
    assert!(corr > 0.85, "what baresip heard is not its own speech (r = {corr:.3})");
    assert!(off <= 30, "echo delay {off}0 ms");
    eprintln!("baresip echo: r = {corr:.3}, delay ~{off}0 ms");
}
