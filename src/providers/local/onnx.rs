//! The ONNX Runtime used by every local model: the shared library from the
//! PyPI `onnxruntime==1.31.1` wheel, loaded at run time through `ort`'s
//! `load-dynamic` (nothing is downloaded at build time).

use std::path::Path;
use std::sync::{Mutex, OnceLock};

/// Errors loading the runtime.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RuntimeError {
    /// The library is missing or not loadable.
    #[error("cannot load ONNX Runtime from {path}: {reason} (run `skald models fetch`)")]
    Load {
        /// Library path tried.
        path: String,
        /// Why.
        reason: String,
    },
}

/// The process-wide environment; kept alive for the life of the process
/// (sessions hold only a weak reference to it).
static ENV: OnceLock<ort::environment::Environment> = OnceLock::new();
/// Serializes the first initialization.
static INIT: Mutex<()> = Mutex::new(());

/// Loads ONNX Runtime from `lib` (e.g. `…/onnxruntime/libonnxruntime.so.1.31.1`)
/// once per process; later calls with an existing file are no-ops. Must run before any
/// model is loaded. Errors: [`RuntimeError::Load`].
pub fn init_runtime(lib: &Path) -> Result<(), RuntimeError> {
    let err = |reason: String| RuntimeError::Load { path: lib.display().to_string(), reason };
    if !lib.is_file() {
        return Err(err("file not found".into()));
    }
    let _guard = INIT.lock().unwrap_or_else(|p| p.into_inner());
    if ENV.get().is_some() {
        return Ok(());
    }
    let env = ort::init_from(lib)
        .map_err(|e| err(e.to_string()))?
        .with_name("skald")
        .build()
        .map_err(|e| err(e.to_string()))?;
    let _ = ENV.set(env);
    Ok(())
}

/// True once [`init_runtime`] has succeeded.
pub fn runtime_ready() -> bool {
    ENV.get().is_some()
}

/// The environment every session is built in (`Session::builder(env)`);
/// `None` before [`init_runtime`].
pub fn environment() -> Option<&'static ort::environment::Environment> {
    ENV.get()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::local::models::ModelPaths;

    #[test]
    fn loads_the_runtime_and_a_model() {
        let paths = ModelPaths::in_dir(&ModelPaths::default_dir());
        init_runtime(&paths.onnxruntime).expect("ONNX Runtime (run `skald models fetch`)");
        assert!(runtime_ready());
        init_runtime(&paths.onnxruntime).expect("second init is a no-op");
        let env = environment().expect("initialized");
        let session = ort::session::Session::builder(env)
            .and_then(|mut b| b.commit_from_file(&paths.silero_vad))
            .expect("silero loads");
        let inputs: Vec<String> = session.inputs().iter().map(|i| i.name().to_string()).collect();
        assert_eq!(inputs, ["input", "state", "sr"]);
    }

    #[test]
    fn missing_library_is_a_clear_error() {
        let e = init_runtime(Path::new("/nonexistent/libonnxruntime.so")).unwrap_err();
        assert!(e.to_string().contains("skald models fetch"), "{e}");
    }
}
