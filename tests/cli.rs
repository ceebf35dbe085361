//! The command line: config validation names file, line and field.

use std::process::Command;

fn check(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skald"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "FILE"))
}

#[test]
fn example_config_is_valid() {
    let out = Command::new(env!("CARGO_BIN_EXE_skald"))
        .args(["check-config", "--config"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/sip-config/skald.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn bad_configs_name_file_line_and_field() {
    let (ok, err) = check("sip:\n  listen: 0.0.0.0:5060\n  t1: 500\n");
    assert!(!ok);
    assert!(err.starts_with("FILE:3:"), "{err}");
    assert!(err.contains("t1"), "{err}");

    let (ok, err) = check("routes:\n  default: nope\n");
    assert!(!ok);
    assert!(err.starts_with("FILE:2: routes.default: unknown application `nope`"), "{err}");

    let (ok, err) = check("applications:\n  g:\n    type: greeting\n    prompt: /nonexistent.wav\n");
    assert!(!ok);
    assert!(err.starts_with("FILE:4: applications.g.prompt"), "{err}");

    let (ok, err) = check("rtp:\n  ports: 100-50\n");
    assert!(!ok);
    assert!(err.starts_with("FILE:2:"), "{err}");
}

#[test]
fn serve_refuses_to_start_with_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "http:\n  listen: not-an-address\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skald")).args(["serve", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":2:") && err.contains("http.listen"), "{err}");
}

#[test]
fn serve_refuses_to_start_without_models_and_says_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skald"))
        .args(["serve", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/sip-config/skald.yaml")])
        .args(["--sip-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("SKALD_MODELS_DIR", dir.path().join("no-models"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("skald models fetch"), "{err}");
    assert!(err.contains("no-models/"), "names the missing file: {err}");
}
