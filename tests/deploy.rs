//! The deployment files, checked with Debian's `docker-compose` (no Docker
//! engine runs here: `config -q` parses, validates and interpolates a
//! compose file without starting anything).
//!
//! - `docker-compose.cloud.yml` and `docker-compose.onprem.yml` are valid
//!   with their required variables set;
//! - without them they are refused, naming the variable;
//! - a broken file is refused (so the check can fail).

mod common;

use common::repo;
use std::path::Path;
use std::process::{Command, Output};

/// `docker-compose -f FILE config -q` with exactly `env` (plus PATH).
fn config(file: &Path, env: &[(&str, &str)]) -> Output {
    Command::new("docker-compose")
        .arg("-f")
        .arg(file)
        .args(["config", "-q"])
        .current_dir(repo())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("docker-compose (Debian `docker-compose`; `make test-deps` installs it)")
}

const CLOUD: &[(&str, &str)] = &[
    ("LIVEKIT_URL", "wss://example.livekit.cloud"),
    ("LIVEKIT_API_KEY", "APIexample"),
    ("LIVEKIT_API_SECRET", "example-secret-of-thirty-two-chars"),
    ("SKALD_ADMIN_TOKEN", "example-admin-token"),
];
const ONPREM: &[(&str, &str)] = &[("LIVEKIT_API_SECRET", "example-secret-of-thirty-two-chars"), ("SKALD_ADMIN_TOKEN", "example-admin-token")];

#[test]
fn the_compose_files_are_valid_with_their_variables_and_refused_without() {
    for (file, env) in [("docker-compose.cloud.yml", CLOUD), ("docker-compose.onprem.yml", ONPREM)] {
        let path = repo().join(file);
        let ok = config(&path, env);
        assert!(ok.status.success(), "{file}: {}", String::from_utf8_lossy(&ok.stderr));
        for (missing, _) in env {
            let rest: Vec<(&str, &str)> = env.iter().copied().filter(|(k, _)| k != missing).collect();
            let out = config(&path, &rest);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{file} without {missing} was accepted");
            assert!(err.contains(missing), "{file} without {missing}: the error names it: {err}");
        }
    }
}

#[test]
fn a_broken_compose_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("docker-compose.cloud.yml")).unwrap();
    let broken = dir.path().join("broken.yml");
    // A service key that does not exist in the compose format.
    std::fs::write(&broken, text.replace("    restart: unless-stopped", "    restartt: unless-stopped")).unwrap();
    let out = config(&broken, CLOUD);
    assert!(!out.status.success(), "a misspelt key was accepted");
    assert!(String::from_utf8_lossy(&out.stderr).contains("restartt"), "{}", String::from_utf8_lossy(&out.stderr));
}
