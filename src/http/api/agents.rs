//! `GET /api/v1/agents`: the agent files of `agents_dir` as they are on disk
//! now (name, kind, path, YAML text), each with its validation errors, and
//! the applications and DIDs that route to each agent. Read-only: the
//! control page shows it; nothing here changes a running call (calls use
//! the agents loaded at startup).
//!
//! Validation uses the same loaders as `skald check-config` and startup:
//! each file alone ([`crate::agent::flow::AgentDef::from_yaml`] or
//! [`crate::agent::graph::LlmAgentDef::from_yaml`] by its `kind`), then the
//! whole directory as a graph ([`crate::agent::graph::load_graph`] with the
//! applications' entry agents), whose error is attached to the file it
//! names. A broken file is listed with its `file:line: message` instead of
//! failing the request.

use crate::agent::flow::{AgentConfigError, AgentDef};
use crate::agent::graph::LlmAgentDef;
use crate::config::{AppConfig, Config};
use crate::http::HttpState;
use crate::http::auth::Principal;
use crate::http::error::{ApiError, ErrorBody};
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Answer of `GET /api/v1/agents`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AgentsView {
    /// The agents directory (absolute).
    pub agents_dir: String,
    /// One entry per `*.yaml` / `*.yml` file, sorted by path.
    pub agents: Vec<AgentFileView>,
    /// Errors that name no listed file (the directory cannot be read, an
    /// application names an agent no file defines).
    pub errors: Vec<AgentErrorView>,
    /// Every application of the config, with the DIDs routed to it.
    pub applications: Vec<ApplicationView>,
}

/// One agent file.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AgentFileView {
    /// The agent's `name:` (`null` when the file does not say).
    pub name: Option<String>,
    /// `flow` or `llm` (the file's `kind:`, default `flow`).
    pub kind: String,
    /// Path of the file.
    pub file: String,
    /// The file's text, as is.
    pub yaml: String,
    /// True when the file and the graph it belongs to load without error.
    pub valid: bool,
    /// What is wrong with it (empty when valid).
    pub errors: Vec<AgentErrorView>,
    /// Applications that start calls with this agent.
    pub applications: Vec<String>,
    /// DIDs routed to those applications (`*` for the default route).
    pub dids: Vec<String>,
}

/// One validation error.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AgentErrorView {
    /// File it names.
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// What is wrong (names the field).
    pub message: String,
    /// `file:line: message`, as `skald check-config` prints it.
    pub text: String,
}

/// One application and how calls reach it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApplicationView {
    /// Its name under `applications:`.
    pub name: String,
    /// `echo`, `greeting`, `dtmf-menu` or `voice-agent`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The agent a voice agent starts with.
    pub agent: Option<String>,
    /// DIDs routed to it (`routes.dids`).
    pub dids: Vec<String>,
    /// True when it answers numbers not listed (`routes.default`).
    pub default: bool,
}

/// `GET /api/v1/agents`: the agent files with their validation errors, and
/// the applications routing to them.
///
/// Output: `200` [`AgentsView`]. A file that does not load is listed with
/// `valid: false` and its errors (file and line); the request still
/// succeeds. Status: 500 only when the check itself cannot run.
#[utoipa::path(
    get,
    path = "/api/v1/agents",
    tag = "agents",
    responses(
        (status = 200, description = "Agent files, their errors, and the applications routing to them", body = AgentsView),
        (status = 401, description = "No valid token or session", body = ErrorBody),
        (status = 500, description = "The check could not run", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])),
    extensions(("x-skald-role" = json!("viewer"))),
)]
pub async fn list(State(st): State<HttpState>, _who: Principal) -> Result<Json<AgentsView>, ApiError> {
    let config = st.config.clone();
    let view = tokio::task::spawn_blocking(move || agents_view(&config))
        .await
        .map_err(|e| ApiError::Internal(format!("agents check: {e}")))?;
    Ok(Json(view))
}

/// Reads and validates `config`'s agents directory (blocking file IO).
pub fn agents_view(config: &Config) -> AgentsView {
    let dir = config.resolve(&config.agents_dir);
    let entries = config.entry_agents();
    let applications = applications(config);
    let mut errors = Vec::new();
    let mut agents = Vec::new();
    match agent_files(&dir) {
        Ok(files) => {
            for file in files {
                agents.push(file_view(&file));
            }
        }
        // A missing directory matters only when some application needs an agent.
        Err(e) if !entries.is_empty() => errors.push(error_view(&e)),
        Err(_) => {}
    }
    if !entries.is_empty()
        && let Err(e) = crate::agent::graph::load_graph(&dir, &entries)
    {
        let err = error_view(&e);
        match agents.iter_mut().find(|a| a.file == err.file) {
            Some(a) if a.errors.contains(&err) => {}
            Some(a) => a.errors.push(err),
            None if errors.contains(&err) => {}
            None => errors.push(err),
        }
    }
    for a in &mut agents {
        a.valid = a.errors.is_empty();
        let Some(name) = &a.name else { continue };
        for app in applications.iter().filter(|app| app.agent.as_ref() == Some(name)) {
            a.applications.push(app.name.clone());
            a.dids.extend(app.dids.iter().cloned());
            if app.default {
                a.dids.push("*".into());
            }
        }
    }
    AgentsView { agents_dir: dir.display().to_string(), agents, errors, applications }
}

/// `*.yaml` / `*.yml` files of `dir`, sorted.
fn agent_files(dir: &Path) -> Result<Vec<PathBuf>, AgentConfigError> {
    let read = std::fs::read_dir(dir).map_err(|e| AgentConfigError {
        file: dir.to_path_buf(),
        line: 0,
        message: format!("cannot read: {e}"),
    })?;
    let mut files: Vec<PathBuf> = read
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

/// The fields read before a file is parsed in full.
#[derive(Deserialize)]
struct Peek {
    /// `flow` (default) or `llm`.
    kind: Option<String>,
    /// The agent's name.
    name: Option<String>,
}

/// One file, loaded alone.
fn file_view(file: &Path) -> AgentFileView {
    let mut view = AgentFileView {
        name: None,
        kind: "flow".into(),
        file: file.display().to_string(),
        yaml: String::new(),
        valid: false,
        errors: Vec::new(),
        applications: Vec::new(),
        dids: Vec::new(),
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            let e = AgentConfigError { file: file.to_path_buf(), line: 0, message: format!("cannot read: {e}") };
            view.errors.push(error_view(&e));
            return view;
        }
    };
    let peek = serde_yaml_ng::from_str::<Peek>(&text).ok();
    view.name = peek.as_ref().and_then(|p| p.name.clone());
    if let Some(kind) = peek.and_then(|p| p.kind) {
        view.kind = kind;
    }
    let loaded = if view.kind == "llm" {
        LlmAgentDef::from_yaml(&text, file).map(|d| d.name)
    } else {
        AgentDef::from_yaml(&text, file).map(|d| d.name().to_string())
    };
    match loaded {
        Ok(name) => view.name = Some(name),
        Err(e) => view.errors.push(error_view(&e)),
    }
    view.yaml = text;
    view
}

fn error_view(e: &AgentConfigError) -> AgentErrorView {
    AgentErrorView { file: e.file.display().to_string(), line: e.line, message: e.message.clone(), text: e.to_string() }
}

/// The config's applications with their routes.
fn applications(config: &Config) -> Vec<ApplicationView> {
    config
        .applications
        .iter()
        .map(|(name, app)| {
            let (kind, agent) = match app {
                AppConfig::Echo {} => ("echo", None),
                AppConfig::Greeting { .. } => ("greeting", None),
                AppConfig::DtmfMenu { .. } => ("dtmf-menu", None),
                AppConfig::SupervisorDialIn { .. } => ("supervisor-dial-in", None),
                AppConfig::VoiceAgent { agent, .. } => ("voice-agent", Some(agent.clone())),
            };
            ApplicationView {
                name: name.clone(),
                kind: kind.into(),
                agent,
                dids: config.routes.dids.iter().filter(|(_, a)| *a == name).map(|(d, _)| d.clone()).collect(),
                default: config.routes.default.as_deref() == Some(name.as_str()),
            }
        })
        .collect()
}
