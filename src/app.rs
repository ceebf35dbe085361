//! Wires the subsystems of one skald instance and shuts them down in order.
//!
//! Start order: store → metrics → SIP stack → call services → HTTP.
//! Shutdown (SIGTERM/SIGINT or [`App::shutdown`]): new INVITEs get 503 with
//! Retry-After and readiness turns false; live calls get `shutdown.grace_s`
//! to finish, then are ended with BYE; call tasks are awaited (bounded);
//! the store is closed last so every record is flushed.

use crate::call::command::CallCommand;
use crate::call::registry::CallRegistry;
use crate::call::service::{CallServices, DialError};
use crate::config::Config;
use crate::http::{HttpState, Readiness};
use crate::ids::CallId;
use crate::observability::Metrics;
use crate::rtp::ports::PortAllocator;
use crate::transports::sip_rtp::SipLegs;
use crate::store::Store;
use anyhow::Context;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long ended calls get to send their final BYE and write records.
const CALL_DRAIN: Duration = Duration::from_secs(6);

/// A running skald instance.
pub struct App {
    /// Shared call services (SIP handle, store, registry…).
    pub services: Arc<CallServices>,
    /// The SIP stack (drained at shutdown).
    sip: crate::sip::driver::SipHandle,
    /// Bound HTTP address, when HTTP runs.
    pub http_addr: Option<SocketAddr>,
    /// Bound SIP address (UDP and TCP).
    pub sip_addr: SocketAddr,
    /// Readiness flags.
    readiness: Readiness,
    /// Cancels every task of the instance.
    shutdown: CancellationToken,
    /// Tracks every task of the instance.
    tracker: TaskTracker,
}

impl App {
    /// Starts everything. `with_http` is false for `skald call`.
    pub async fn start(config: Config, with_http: bool) -> anyhow::Result<App> {
        let config = Arc::new(config);
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
        let readiness = Readiness::default();
        let metrics = Metrics::new();
        let store = Store::open(&config.database_url())
            .await
            .with_context(|| format!("cannot open store {}", config.database_url()))?;
        readiness.store_open.store(true, Ordering::SeqCst);

        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let (sip, mut incoming) = crate::sip::driver::start(&config.sip, metrics.clone(), shutdown.clone(), &tracker)
            .await
            .context("cannot start SIP")?;
        readiness.sip_bound.store(true, Ordering::SeqCst);
        let sip_addr = sip.local_addr();

        let voice = if config.needs_voice() {
            Some(load_voice(&config, &metrics).await?)
        } else {
            None
        };
        let media_ip = media_ip(&config, &sip.advertised_host());
        let bind_ip = config.sip.listen.ip();
        let sip_legs = SipLegs::new(sip.clone(), PortAllocator::new(config.rtp.ports, bind_ip), media_ip, &config.rtp, metrics.clone());
        let events = crate::events::EventBus::new();
        let contact = match &config.contact_center {
            Some(cc) => Some(
                crate::call::contact::start(cc.clone(), sip_legs.registrations(), store.clone(), events.clone(), shutdown.clone(), &tracker)
                    .map_err(|e| anyhow::anyhow!("contact center: {e}"))?,
            ),
            None => None,
        };
        let services = Arc::new(CallServices {
            config: config.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            sip: Some(sip_legs.clone()),
            registry: CallRegistry::new(),
            media_ip,
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
            voice,
            contexts: crate::agent::context::ContextStore::new(),
            events,
            contact,
        });

        let svc = services.clone();
        let token = shutdown.clone();
        tracker.spawn(async move {
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    call = incoming.recv() => match call {
                        Some(call) => svc.accept(sip_legs.inbound(call)),
                        None => break,
                    }
                }
            }
        });

        let http_addr = if with_http {
            let listener = tokio::net::TcpListener::bind(config.http.listen)
                .await
                .with_context(|| format!("cannot bind HTTP on {}", config.http.listen))?;
            let addr = listener.local_addr()?;
            let router = crate::http::router(HttpState {
                store,
                registry: services.registry.clone(),
                metrics,
                ready: readiness.clone(),
                config: config.clone(),
                calls: Some(services.clone()),
                contexts: services.contexts.clone(),
                events: services.events.clone(),
                auth: crate::http::auth::Auth::from_config(&config.http),
            });
            let token = shutdown.clone();
            tracker.spawn(async move {
                let server = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
                    .with_graceful_shutdown(token.cancelled_owned());
                if let Err(e) = server.await {
                    tracing::error!(error = %e, "HTTP server failed");
                }
            });
            Some(addr)
        } else {
            None
        };
        tracing::info!(
            sip = %sip_addr,
            http = ?http_addr,
            media_ip = %media_ip,
            rtp_ports = %format!("{}-{}", config.rtp.ports.low, config.rtp.ports.high),
            "skald ready"
        );
        Ok(App { services, sip, http_addr, sip_addr, readiness, shutdown, tracker })
    }

    /// Places an outbound call running `app` (see [`CallServices::dial`]).
    pub async fn dial(
        &self,
        target: &str,
        from_user: &str,
        app: &str,
        ring_timeout: Duration,
        credentials: Option<crate::transports::sip_rtp::Digest>,
    ) -> Result<CallId, DialError> {
        self.services.dial(target, from_user, app, ring_timeout, credentials).await
    }

    /// Waits until no call is live.
    pub async fn calls_done(&self) {
        while !self.services.registry.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs until SIGTERM/SIGINT, then shuts down gracefully.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        wait_signal().await;
        tracing::info!("shutdown requested");
        self.shutdown().await;
        Ok(())
    }

    /// Graceful, bounded shutdown (see module docs).
    pub async fn shutdown(self) {
        let grace = Duration::from_secs(self.services.config.shutdown.grace_s);
        self.readiness.draining.store(true, Ordering::SeqCst);
        self.sip.set_draining(grace.max(Duration::from_secs(1)));
        let registry = &self.services.registry;
        if !registry.is_empty() {
            tracing::info!(calls = registry.len(), grace_s = grace.as_secs(), "waiting for live calls");
            let _ = tokio::time::timeout(grace, self.calls_done()).await;
        }
        if !registry.is_empty() {
            tracing::info!(calls = registry.len(), "ending remaining calls with BYE");
            registry.broadcast(&CallCommand::Hangup { reason: "shutdown".into() });
            let _ = tokio::time::timeout(CALL_DRAIN, self.calls_done()).await;
        }
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await.is_err() {
            tracing::warn!("some tasks did not stop in time");
        }
        self.services.store.close().await;
        tracing::info!("skald stopped");
    }
}

/// Verifies and loads the local voice models and the agents. Errors name
/// the missing or corrupt file and the command that fixes it.
async fn load_voice(config: &Config, metrics: &Metrics) -> anyhow::Result<Arc<crate::call::voice::VoiceServices>> {
    use crate::providers::local::{models::ModelPaths, moonshine, onnx, piper};
    use crate::providers::standin::NotLoaded;
    use crate::providers::{SttProvider, TtsProvider};
    let paths = ModelPaths::in_dir(&config.models_dir());
    let started = std::time::Instant::now();
    // Load tests with stand-ins for every application load neither
    // Moonshine nor Piper (their memory and start-up time).
    let (need_stt, need_tts) = (config.needs_local_stt(), config.needs_local_tts());
    let loaded = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        paths.verify().map_err(|e| anyhow::anyhow!("{e}"))?;
        onnx::init_runtime(&paths.onnxruntime).map_err(|e| anyhow::anyhow!("{e}"))?;
        let vad = crate::pipeline::vad::silero::SileroVad::load(&paths.silero_vad).map_err(|e| anyhow::anyhow!("{e}"))?;
        let stt: Arc<dyn SttProvider> = if need_stt {
            let model = moonshine::Moonshine::load(&paths.moonshine_encoder, &paths.moonshine_decoder, &paths.moonshine_tokenizer)
                .map_err(|e| anyhow::anyhow!("Moonshine STT: {e}"))?;
            Arc::new(moonshine::MoonshineStt { model })
        } else {
            Arc::new(NotLoaded("moonshine"))
        };
        let tts: Option<Arc<dyn TtsProvider>> = if need_tts {
            let voice = piper::Piper::load(&paths.piper_model, &paths.piper_config).map_err(|e| anyhow::anyhow!("Piper TTS: {e}"))?;
            Some(Arc::new(piper::PiperTts { voice }))
        } else {
            None
        };
        let turn = crate::providers::local::smart_turn::SmartTurn::load(&paths.smart_turn)
            .map_err(|e| anyhow::anyhow!("smart-turn end-of-turn model: {e}"))?;
        Ok((vad, stt, tts, turn))
    })
    .await??;
    let (vad, stt, tts, turn) = loaded;
    let graph = crate::agent::graph::load_graph(&config.resolve(&config.agents_dir), &config.entry_agents())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let agents = graph.flow_agents().clone();
    let llm_agents = llm_agents(&graph);
    tracing::info!(
        ms = started.elapsed().as_millis() as u64,
        flow_agents = agents.len(),
        llm_agents = llm_agents.len(),
        local_stt = need_stt,
        local_tts = need_tts,
        "local voice models loaded"
    );
    Ok(Arc::new(crate::call::voice::VoiceServices {
        vad,
        turn_model: Some(turn),
        stt,
        tts: match tts {
            Some(voice) => Arc::new(crate::providers::tts_cache::CachedTts::new(
                voice,
                crate::providers::tts_cache::DEFAULT_CAPACITY_BYTES,
                metrics.clone(),
            )),
            None => Arc::new(NotLoaded("piper")),
        },
        agents,
        llm_agents: Arc::new(llm_agents),
        metrics: metrics.clone(),
    }))
}

/// Each LLM agent with its provider list; a provider that cannot be built
/// (its key is not in the environment) is left out with a warning, so the
/// others still serve (an agent with none says its fallback phrase).
fn llm_agents(graph: &crate::agent::graph::AgentGraph) -> crate::call::llm_turns::LlmAgents {
    use crate::providers::llm::{FallbackEntry, FallbackLlm};
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut out = crate::call::llm_turns::LlmAgents::new();
    for (name, def) in graph.llm_agents() {
        let mut entries = Vec::new();
        for c in &def.llm {
            match c.build(env) {
                Ok(p) => entries.push(FallbackEntry::new(p, c.first_token_timeout(), c.timeout())),
                Err(e) => tracing::warn!(agent = %name, provider = %c.display_name(), error = %e, "LLM provider left out"),
            }
        }
        out.insert(name.clone(), (def.clone(), Arc::new(FallbackLlm::new(entries))));
    }
    out
}

/// IP for SDP: `rtp.advertised_ip`, else the SIP advertised host when it is
/// an IP, else the SIP listen IP (never 0.0.0.0 if a better one is known).
fn media_ip(config: &Config, advertised_host: &str) -> IpAddr {
    if let Some(ip) = config.rtp.advertised_ip {
        return ip;
    }
    if let Ok(ip) = advertised_host.parse::<IpAddr>() {
        return ip;
    }
    config.sip.listen.ip()
}

async fn wait_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
