//! Built-in applications: `echo`, `greeting`, `dtmf-menu`.
//!
//! An application is a synchronous state machine driven by the call actor
//! (no IO, no clock): it receives the caller's audio (mono PCM16 at 16 kHz,
//! one ptime per call, 320 samples for 20 ms), DTMF digits, "prompt finished"
//! and its own timeouts, and answers with [`AppAction`]s that the actor
//! carries out. Tested without SIP or RTP.

pub mod dtmf_menu;
pub mod echo;
pub mod greeting;

use crate::config::{AppConfig, Config};
use crate::pipeline::wav::{self, WavError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// What an application asks the call actor to do.
#[derive(Debug, Clone, PartialEq)]
pub enum AppAction {
    /// Queue audio (mono PCM16, 16 kHz) for the caller, after what is queued.
    Play(Arc<Vec<i16>>),
    /// Drop queued outbound audio (the caller interrupted a prompt).
    StopPlayback,
    /// Start writing the caller's audio to this WAV (16 kHz mono).
    StartRecording(PathBuf),
    /// Finish the recording.
    StopRecording,
    /// End the call with this reason.
    Hangup(String),
    /// Hand the call to another configured application.
    Switch(String),
}

/// Input an application reacts to.
#[derive(Debug, Clone, PartialEq)]
pub enum AppInput<'a> {
    /// The call is answered and media flows.
    Started,
    /// One ptime of the caller's audio, 16 kHz mono.
    Audio(&'a [i16]),
    /// A DTMF digit (RFC 4733), once per key press.
    Dtmf(char),
    /// Everything queued with `Play` has been sent.
    PlayoutDone,
    /// The deadline from [`Application::poll_timeout`] passed.
    Timeout,
    /// The peer asked for the call to be transferred to this URI (a SIP
    /// REFER, which skald refuses; see
    /// [`crate::transports::leg::LegEvent::Referred`]).
    Referred(&'a str),
}

/// A call application (see module docs).
pub trait Application: Send {
    /// Reacts to one input at `now`; returns actions in order.
    fn handle(&mut self, input: AppInput<'_>, now: Instant) -> Vec<AppAction>;
    /// Next deadline, if any.
    fn poll_timeout(&self) -> Option<Instant>;
    /// The application's configured name.
    fn name(&self) -> &str;
}

/// Context an application is built with.
#[derive(Debug, Clone)]
pub struct AppContext {
    /// skald call id (names recordings).
    pub call_id: crate::ids::CallId,
    /// Where recordings go.
    pub recordings_dir: PathBuf,
}

/// Errors building an application.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No application by that name in the config.
    #[error("unknown application `{0}`")]
    Unknown(String),
    /// A prompt could not be loaded.
    #[error("prompt: {0}")]
    Prompt(#[from] WavError),
    /// The application is a voice agent, run by [`crate::call::voice`], not here.
    #[error("`{0}` is a voice agent")]
    VoiceAgent(String),
    /// The application is the supervisors' dial-in, run by the call actor.
    #[error("`{0}` is the supervisors' dial-in")]
    SupervisorDialIn(String),
}

/// Builds the named application from the config. Prompts are loaded and
/// resampled to 16 kHz here. Errors: [`AppError`].
pub fn build(cfg: &Config, name: &str, ctx: &AppContext) -> Result<Box<dyn Application>, AppError> {
    let app = cfg.applications.get(name).ok_or_else(|| AppError::Unknown(name.to_string()))?;
    Ok(match app {
        AppConfig::VoiceAgent { .. } => return Err(AppError::VoiceAgent(name.to_string())),
        AppConfig::SupervisorDialIn { .. } => return Err(AppError::SupervisorDialIn(name.to_string())),
        AppConfig::Echo {} => Box::new(echo::Echo::new(name)),
        AppConfig::Greeting { prompt, max_record_s } => {
            let audio = wav::load_prompt(&cfg.resolve(prompt))?;
            let path = ctx.recordings_dir.join(format!("{}.wav", ctx.call_id));
            Box::new(greeting::Greeting::new(
                name,
                Arc::new(audio),
                path,
                std::time::Duration::from_secs(*max_record_s),
            ))
        }
        AppConfig::DtmfMenu { prompt, options, timeout_s, max_tries } => {
            let audio = wav::load_prompt(&cfg.resolve(prompt))?;
            Box::new(dtmf_menu::DtmfMenu::new(
                name,
                Arc::new(audio),
                options.clone(),
                std::time::Duration::from_secs(*timeout_s),
                *max_tries,
            ))
        }
    })
}
