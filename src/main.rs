//! The `skald` command line: `serve`, `check-config`, `call`.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use skald::config::{Config, PortRange};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// skald: a real-time voice agent and SIP telephony server.
#[derive(Parser)]
#[command(name = "skald", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: SIP (UDP+TCP), RTP and the HTTP API.
    Serve(Overrides),
    /// Validate a config file; prints file:line: problem and exits 1 when bad.
    CheckConfig {
        /// Config file.
        #[arg(long, short, default_value = "sip-config/skald.yaml")]
        config: PathBuf,
    },
    /// The local models (VAD, STT, TTS) installed from PyPI.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Place an outbound test call to a SIP URI and run an application on it.
    Call {
        /// Target, e.g. `sip:echo@127.0.0.1:5070`.
        uri: String,
        /// Application to run once answered.
        #[arg(long, default_value = "echo")]
        app: String,
        /// Caller id (From user part).
        #[arg(long, default_value = "skald")]
        from: String,
        /// Give up (CANCEL) when not answered within this many seconds.
        #[arg(long, default_value_t = 30)]
        ring_timeout: u64,
        /// Hang up after this many seconds of conversation (0 = wait for the peer).
        #[arg(long, default_value_t = 0)]
        duration: u64,
        /// Username for digest authentication when the callee challenges (401/407).
        #[arg(long)]
        auth_user: Option<String>,
        /// Password for digest authentication (from the environment only).
        #[arg(long, env = "SKALD_SIP_PASSWORD", hide_env_values = true)]
        auth_password: Option<String>,
        #[command(flatten)]
        overrides: Overrides,
    },
}

#[derive(Subcommand)]
enum ModelsAction {
    /// Download (pip), extract, convert and check every model; idempotent.
    Fetch,
    /// Check every model file against the manifest.
    Verify,
}

/// Flags that override the config file, so several instances can run side by side.
#[derive(Args, Clone)]
struct Overrides {
    /// Config file.
    #[arg(long, short, default_value = "sip-config/skald.yaml")]
    config: PathBuf,
    /// SIP listen address (UDP and TCP), e.g. 0.0.0.0:5060.
    #[arg(long)]
    sip_listen: Option<SocketAddr>,
    /// HTTP listen address.
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// RTP port range LOW-HIGH.
    #[arg(long)]
    rtp_ports: Option<PortRange>,
    /// Directory for the database and recordings.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long)]
    json_logs: bool,
}

impl Overrides {
    fn load(&self) -> anyhow::Result<Config> {
        let mut cfg = Config::load(&self.config).map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(a) = self.sip_listen {
            cfg.sip.listen = a;
        }
        if let Some(a) = self.http_listen {
            cfg.http.listen = a;
        }
        if let Some(r) = self.rtp_ports {
            cfg.rtp.ports = r;
        }
        if let Some(d) = &self.data_dir {
            cfg.data_dir = d.clone();
        }
        if self.json_logs {
            cfg.logging.format = skald::config::LogFormat::Json;
        }
        Ok(cfg)
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                Ok(())
            }
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        },
        Command::Models { action } => {
            use skald::providers::local::models::{ModelPaths, fetch};
            let dir = ModelPaths::default_dir();
            let res = match action {
                ModelsAction::Fetch => fetch(&dir, &mut |line| eprintln!("{line}")).map(|_| ()),
                ModelsAction::Verify => ModelPaths::in_dir(&dir).verify(),
            };
            match res {
                Ok(()) => {
                    println!("models ok in {}", dir.display());
                    Ok(())
                }
                Err(e) => {
                    eprintln!("skald: {e}");
                    std::process::exit(1);
                }
            }
        }
        Command::Serve(o) => {
            let cfg = load_or_exit(&o);
            init(&cfg);
            runtime.block_on(async {
                let app = match skald::app::App::start(cfg, true).await {
                    Ok(a) => a,
                    Err(e) => {
                        eprintln!("skald: cannot start: {e:#}");
                        std::process::exit(1);
                    }
                };
                app.run_until_signal().await
            })
        }
        Command::Call { uri, app, from, ring_timeout, duration, auth_user, auth_password, mut overrides } => {
            let credentials = auth_user.map(|username| skald::sip::driver::Credentials {
                username,
                password: auth_password.unwrap_or_default(),
            });
            if overrides.sip_listen.is_none() {
                overrides.sip_listen = Some("0.0.0.0:0".parse().context("static")?);
            }
            let cfg = load_or_exit(&overrides);
            init(&cfg);
            runtime.block_on(async {
                let instance = skald::app::App::start(cfg, false).await?;
                let id = instance
                    .dial(&uri, &from, &app, Duration::from_secs(ring_timeout), credentials)
                    .await
                    .context("cannot place the call")?;
                if duration > 0 {
                    let _ = tokio::time::timeout(Duration::from_secs(duration), instance.calls_done()).await;
                    let _ = instance
                        .services
                        .registry
                        .send(id, skald::call::command::CallCommand::Hangup { reason: "duration".into() });
                }
                instance.calls_done().await;
                let record = instance.services.store.get_call(id).await?;
                instance.shutdown().await;
                match record {
                    Some(r) if r.answered_at.is_some() => {
                        println!("call {id} answered; ended: {}", r.end_reason.unwrap_or_default());
                        Ok(())
                    }
                    Some(r) => {
                        eprintln!("call {id} not answered: {:?} {}", r.sip_status, r.end_reason.unwrap_or_default());
                        std::process::exit(2);
                    }
                    None => anyhow::bail!("call {id}: no record"),
                }
            })
        }
    }
}

fn load_or_exit(o: &Overrides) -> Config {
    match o.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skald: bad configuration: {e}");
            std::process::exit(1);
        }
    }
}

fn init(cfg: &Config) {
    skald::observability::init_tracing(&cfg.logging);
    skald::observability::set_redaction(cfg.logging.redact_pii);
}
