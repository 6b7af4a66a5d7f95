//! The `tollgate` command: wires the CLI to the library, nothing more.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The same allocator in tollgate and the benchmark baselines: glibc malloc
/// was a sixth of the proxy's CPU under load and kept argon2's memory.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Args, Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};

use tollgate::config::{Config, EnvOverrides};
use tollgate::runtime::PolicySource;
use tollgate::server::{self, App};
use tollgate::{dev, explain, secret};

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "A reverse proxy that is a policy enforcement point for machine identities"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy, admin and metrics listeners.
    Serve(ServeArgs),
    /// Validate a config file and its policies; exit 0 when valid, else 1.
    Check {
        /// Required; optional here so that its absence also exits 1.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Show how a request would be decided: the matched route, each check, the decision.
    Explain(ExplainArgs),
    /// Read an admin key on stdin and print its argon2id PHC hash for `admin.keys`.
    HashKey,
}

#[derive(Args)]
struct ServeArgs {
    /// The config file (TOML).
    #[arg(long, required_unless_present = "dev", conflicts_with = "dev")]
    config: Option<PathBuf>,
    /// Memory store, demo account, echo upstream and example policy.
    #[arg(long)]
    dev: bool,
    /// With --dev: TLS on the proxy listener, with a throwaway self-signed
    /// certificate (the curl lines printed use it with --cacert).
    #[arg(long, requires = "dev")]
    tls: bool,
    #[arg(long)]
    listen: Option<SocketAddr>,
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Take the listening sockets over from a running tollgate (graceful
    /// upgrade): start the new process with --upgrade, then send the old one SIGQUIT.
    #[arg(long)]
    upgrade: bool,
}

#[derive(Args)]
struct ExplainArgs {
    #[arg(long)]
    config: PathBuf,
    #[arg(long)]
    method: String,
    #[arg(long)]
    path: String,
    /// The raw query string, without '?'.
    #[arg(long)]
    query: Option<String>,
    /// The token's scopes, space-separated.
    #[arg(long, default_value = "")]
    scopes: String,
    /// The service account's role in the environment's workspace (member, admin).
    #[arg(long)]
    role: Option<String>,
    /// The token's organization, for routes with organization_param.
    #[arg(long)]
    organization: Option<String>,
    /// The account's IP allowlist, checked on every request (CIDRs separated by spaces or commas).
    #[arg(long)]
    ip_allowlist: Option<String>,
    /// The request's source address, for --ip-allowlist.
    #[arg(long)]
    source_ip: Option<String>,
}

/// Sets up logging from `TOLLGATE_LOG` (a tracing filter, default `info`)
/// and `TOLLGATE_LOG_FORMAT` (`text`, the default, or `json`); a value that
/// is neither is refused rather than ignored.
fn init_logging() -> Result<(), String> {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{filter, fmt, EnvFilter};
    let env = match std::env::var("TOLLGATE_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(&v)
            .map_err(|e| format!("TOLLGATE_LOG is not a valid filter: {e}"))?,
        _ => EnvFilter::new("info"),
    };
    let json = match std::env::var("TOLLGATE_LOG_FORMAT") {
        Ok(v) if v.eq_ignore_ascii_case("json") => true,
        Ok(v) if v.is_empty() || v.eq_ignore_ascii_case("text") => false,
        Ok(_) => return Err("TOLLGATE_LOG_FORMAT must be json or text".into()),
        Err(_) => false,
    };
    // pingora logs whole request heads (Authorization included) and body
    // bytes at trace, and some upstream requests at debug. Tokens and
    // secrets must not reach any log line, so its crates stop at info
    // whatever TOLLGATE_LOG asks for.
    let cap = filter::filter_fn(|meta| {
        !meta.target().starts_with("pingora") || *meta.level() <= tracing::Level::INFO
    });
    // Colours only for a person at a terminal (and NO_COLOR still wins): a
    // file or a log collector gets plain `key=value`, which also formats
    // in a fraction of the time of the escape codes around every field.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let registry = tracing_subscriber::registry().with(env).with(cap);
    if json {
        let layer = fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr);
        registry.with(layer).init();
    } else {
        registry
            .with(fmt::layer().with_ansi(ansi).with_writer(std::io::stderr))
            .init();
    }
    Ok(())
}

/// mimalloc's `mi_option_arena_eager_commit` (mimalloc.h; the Rust binding
/// has no constant for it). Its default, 2, commits whole arenas up front on
/// Linux.
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Arenas committed up front kept more memory resident with idle
/// connections (benches/load.sh; the figure is in docs/performance.md);
/// committed as used, they do not.
/// This must run before the first allocation reserves the first arena, so
/// it is a constructor: it runs after mimalloc's own (which reads
/// `MIMALLOC_*` from the environment; an explicit setting there is kept)
/// and before Rust's runtime allocates anything.
extern "C" fn commit_arenas_lazily() {
    // SAFETY: reads and sets a process-wide option; takes no pointers.
    unsafe {
        if libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT) == 2 {
            libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        }
    }
}

#[used]
#[link_section = ".init_array"]
static COMMIT_ARENAS_LAZILY: extern "C" fn() = commit_arenas_lazily;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if !e.use_stderr() {
                ExitCode::SUCCESS
            } else if std::env::args().nth(1).as_deref() == Some("check") {
                // `check` exits 1 for anything not valid, its command line
                // included; the other verbs keep the usage code 2.
                ExitCode::from(1)
            } else {
                ExitCode::from(2)
            };
        }
    };
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Check {
            config: Some(config),
        } => check(&config),
        Command::Check { config: None } => {
            eprintln!("tollgate check: --config FILE is required");
            ExitCode::from(1)
        }
        Command::Explain(args) => run_explain(args),
        Command::HashKey => hash_key(),
    }
}

fn apply_listen_overrides(cfg: &mut Config, args: &ServeArgs) {
    if let Some(a) = args.listen {
        cfg.server.listen = a;
    }
    if let Some(a) = args.admin_listen {
        cfg.server.admin_listen = a;
    }
    if let Some(a) = args.metrics_listen {
        cfg.server.metrics_listen = a;
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    if let Err(e) = init_logging() {
        eprintln!("tollgate serve: {e}");
        return ExitCode::from(1);
    }
    let env = EnvOverrides::from_process();
    if args.dev {
        return serve_dev(args, env);
    }
    let Some(path) = args.config.clone() else {
        eprintln!("tollgate serve: --config FILE or --dev is required");
        return ExitCode::from(2);
    };
    let mut cfg = match Config::load(&path, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tollgate: {e}");
            return ExitCode::from(1);
        }
    };
    apply_listen_overrides(&mut cfg, &args);
    let store = match server::build_store(&cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tollgate: {e}");
            return ExitCode::from(1);
        }
    };
    let source = PolicySource::Dir(cfg.policies_dir.clone());
    match App::build(cfg, store, source) {
        Ok(app) => server::run(app, Vec::new(), args.upgrade),
        Err(e) => {
            eprintln!("tollgate: {e}");
            ExitCode::from(1)
        }
    }
}

fn serve_dev(args: ServeArgs, mut env: EnvOverrides) -> ExitCode {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("tollgate serve --dev: {e}");
        ExitCode::from(1)
    };
    let echo_port = match dev::free_port() {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let admin_key = env
        .admin_key
        .get_or_insert_with(|| {
            let key = secret::new_client_secret();
            SecretString::from(key.expose_secret().replace("tg_sk_", "tg_admin_"))
        })
        .clone();
    let mut cfg = match dev::config(echo_port, &env) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    apply_listen_overrides(&mut cfg, &args);
    if args.tls {
        if let Err(e) = dev::tls(&mut cfg) {
            return fail(&e);
        }
    }
    let store = match server::build_store(&cfg) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let source = PolicySource::Embedded {
        label: dev::POLICY_LABEL.into(),
        text: dev::POLICY.into(),
    };
    let app = match App::build(cfg.clone(), store, source) {
        Ok(a) => a,
        Err(e) => return fail(&e),
    };
    let seeded = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(dev::seed(&app.registry))
                .map_err(|e| e.to_string())
        });
    let demo = match seeded {
        Ok(d) => d,
        Err(e) => return fail(&e),
    };
    // Whoever reads stdout may stop before the end; that is no reason to stop serving.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out
            .write_all(dev::banner(&cfg, &demo, admin_key.expose_secret()).as_bytes())
            .and_then(|()| out.flush());
    }
    server::run(
        app,
        vec![Box::new(dev::echo_service(echo_port))],
        args.upgrade,
    )
}

fn load_for_check(path: &Path) -> Result<(Config, tollgate::runtime::Runtime), String> {
    let cfg = Config::load(path, &EnvOverrides::from_process()).map_err(|e| e.to_string())?;
    let rt = tollgate::runtime::Runtime::load(&cfg, &PolicySource::Dir(cfg.policies_dir.clone()))?;
    Ok((cfg, rt))
}

fn check(path: &Path) -> ExitCode {
    match load_for_check(path) {
        Ok((_, rt)) => {
            println!("{}: valid ({} routes)", path.display(), rt.policy.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn run_explain(args: ExplainArgs) -> ExitCode {
    let (cfg, rt) = match load_for_check(&args.config) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let caller = explain::Caller {
        organization: args.organization.clone(),
        ip_allowlist: args.ip_allowlist.clone(),
        source: args.source_ip.clone(),
    };
    match explain::explain_as(
        &rt.policy,
        &cfg,
        &args.method,
        &args.path,
        args.query.as_deref(),
        &args.scopes,
        args.role.as_deref(),
        &caller,
    ) {
        Ok(report) => {
            for line in &report.lines {
                println!("{line}");
            }
            ExitCode::from(u8::try_from(report.exit_code).unwrap_or(2))
        }
        Err(e) => {
            eprintln!("tollgate explain: {e}");
            ExitCode::from(2)
        }
    }
}

fn hash_key() -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("tollgate hash-key: cannot read stdin: {e}");
        return ExitCode::from(1);
    }
    let key = input.trim_end_matches(['\n', '\r']);
    if key.is_empty() {
        eprintln!("tollgate hash-key: no key on stdin");
        return ExitCode::from(1);
    }
    match secret::hash_secret(
        &SecretString::from(key.to_string()),
        &secret::HashParams::default(),
    ) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tollgate hash-key: {e}");
            ExitCode::from(1)
        }
    }
}
