//! The `warden` binary: parses the command line and runs a command. The only `anyhow` user.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;
use warden_gateway::cli::{AuditCommand, Cli, Command, KeysCommand, TokenCommand};
use warden_gateway::config;
use warden_gateway::server::Gateway;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { config } => return check(&config),
        Command::Serve { config } => serve(&config),
        Command::Demo { tls } => runtime().and_then(|rt| rt.block_on(demo(tls))),
        Command::Audit { command } => return audit(command),
        Command::Token { command } => token(*command),
        Command::Health { url } => runtime().and_then(|rt| rt.block_on(health(&url))),
        Command::Reload { url } => runtime().and_then(|rt| rt.block_on(reload(&url))),
        Command::Keys { config, command } => match config {
            Some(config) => keys(&config, command),
            None => Err(anyhow::anyhow!(
                "warden keys needs --config FILE (or WARDEN_CONFIG)"
            )),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `warden health`: one GET to the admin listener, bounded in time.
async fn health(url: &str) -> anyhow::Result<()> {
    let (status, _) =
        admin_request(http::Method::GET, url, std::time::Duration::from_secs(2)).await?;
    if status != http::StatusCode::OK {
        anyhow::bail!("answered {status}");
    }
    Ok(())
}

/// `warden reload`: one POST to the admin listener; the answer is printed as it came.
async fn reload(url: &str) -> anyhow::Result<()> {
    // A reload may wait for signing keys (`startup: wait`): longer than a probe.
    let (status, body) =
        admin_request(http::Method::POST, url, std::time::Duration::from_secs(60)).await?;
    let text = String::from_utf8_lossy(&body);
    use std::io::Write as _;
    let _ = write!(std::io::stdout(), "{text}");
    if status != http::StatusCode::OK {
        anyhow::bail!("reload refused ({status})");
    }
    Ok(())
}

/// One request to the admin listener, bounded in time; the status and the body (at most 1 MiB).
async fn admin_request(
    method: http::Method,
    url: &str,
    within: std::time::Duration,
) -> anyhow::Result<(http::StatusCode, bytes::Bytes)> {
    use http_body_util::BodyExt as _;
    let uri: http::Uri = url.parse().context("--url is not a URL")?;
    if uri.scheme_str() != Some("http") {
        anyhow::bail!("--url must be http:// (the admin listener)");
    }
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<warden::body::Body>();
    let request = http::Request::builder()
        .method(method)
        .uri(uri)
        .body(warden::body::empty())
        .context("cannot build the request")?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .context("cannot reach the admin listener")?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), 1 << 20)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?
            .to_bytes();
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(within, exchange)
        .await
        .with_context(|| format!("no answer within {} s", within.as_secs()))?
}

/// The commands' runtime: one worker per core.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    runtime_with(std::thread::available_parallelism().map_or(1, usize::from))
}

/// A runtime of `workers` threads (`serve`: `server.workers`).
fn runtime_with(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(config) => {
            println!(
                "{}: ok ({} routes, upstream {}://{})\n  config sha256 {}",
                path.display(),
                config.routes.len(),
                config.upstream.scheme,
                config.upstream.authority,
                config.fingerprint
            );
            let model = warden::guard::ngram::NgramModel::builtin();
            println!(
                "  content guards: prompt-injection rule pack {}, learned model {} ({} features)",
                warden::guard::injection::PACK_VERSION,
                model.version(),
                model.features()
            );
            for warning in &config.warnings {
                eprintln!("  warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{}: {} error(s)", path.display(), errors.0.len());
            for error in &errors.0 {
                eprintln!("  {error}");
            }
            ExitCode::FAILURE
        }
    }
}

fn serve(path: &std::path::Path) -> anyhow::Result<()> {
    let log = warden_gateway::logbuf::BufferedStdout::start();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_current_span(false)
        .with_writer(log.clone())
        .init();
    // The configuration is read before the runtime starts: it says how many workers to run.
    let result = load_config(path)
        .and_then(|config| runtime_with(config.server.workers)?.block_on(serve_logged(config)));
    // Lines still in the buffer go out before the process exits.
    log.flush();
    result
}

async fn serve_logged(config: config::Config) -> anyhow::Result<()> {
    tracing::info!(workers = config.server.workers, "serving threads started");
    for warning in &config.warnings {
        tracing::warn!(path = %warning.path, "{}", warning.message);
    }
    let gateway = Gateway::start(config).await?;
    #[cfg(unix)]
    if let Some(sink) = gateway.audit_sink() {
        // External rotation: the file was moved away; SIGUSR1 starts a new one at the path.
        let mut usr1 =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
                .context("cannot listen for SIGUSR1")?;
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                tracing::info!("SIGUSR1: reopening the audit file");
                sink.reopen();
            }
        });
    }
    #[cfg(unix)]
    {
        // SIGHUP reloads the configuration (without a handler it would end the process).
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot listen for SIGHUP")?;
        let reloader = gateway.reloader();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the configuration");
                // The outcome, and each problem with its path, is logged by the reload.
                let _ = reloader
                    .reload(warden_gateway::certificates::Trigger::Signal)
                    .await;
            }
        });
    }
    let handle = gateway.shutdown_handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown signal received");
        handle.trigger();
    });
    gateway.wait().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn demo(tls: bool) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    warden_gateway::demo::run(tls).await?;
    Ok(())
}

fn token(command: TokenCommand) -> anyhow::Result<()> {
    use warden_gateway::token::{SigningKey, jwks, mint_for, write_private_file};
    match command {
        TokenCommand::Mint(args) => {
            let config = load_config(&args.config)?;
            let key_pem = match &args.key {
                Some(file) => Some(
                    std::fs::read(file)
                        .with_context(|| format!("cannot read {}", file.display()))?,
                ),
                None => None,
            };
            let ttl = humantime::parse_duration(&args.ttl)
                .context("--ttl: expected a duration like 1h")?;
            println!("{}", mint_for(&config, &args, key_pem.as_deref(), ttl)?);
            Ok(())
        }
        TokenCommand::Keygen { alg, kid, out } => {
            let alg = alg
                .parse::<jsonwebtoken::Algorithm>()
                .map_err(|_| anyhow::anyhow!("unknown algorithm {alg:?}"))?;
            let key = SigningKey::generate(alg, Some(kid.clone()))?;
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let pem_path = out.join(format!("{kid}.pem"));
            write_private_file(&pem_path, key.pem.as_bytes())
                .with_context(|| format!("cannot write {}", pem_path.display()))?;
            let jwks_path = out.join("jwks.json");
            std::fs::write(&jwks_path, serde_json::to_vec_pretty(&jwks(&[&key]))?)
                .with_context(|| format!("cannot write {}", jwks_path.display()))?;
            println!(
                "private key: {}\npublic JWKS: {}",
                pem_path.display(),
                jwks_path.display()
            );
            Ok(())
        }
    }
}

fn audit(command: AuditCommand) -> ExitCode {
    match audit_command(command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Exit 0: the trail holds; 1: it does not (the problem is printed); 2: it could not be read.
fn audit_command(command: AuditCommand) -> anyhow::Result<ExitCode> {
    use base64::Engine as _;
    use warden::audit::chain;
    match command {
        AuditCommand::Verify { files, public_key } => {
            let key = public_key
                .map(|k| base64::engine::general_purpose::STANDARD.decode(k.trim()))
                .transpose()
                .context("--public-key: expected the base64 that `warden audit keygen` prints")?;
            // Opened first, so that a missing file is an error before anything is read.
            let readers = files
                .iter()
                .map(|f| {
                    std::fs::File::open(f)
                        .map(std::io::BufReader::new)
                        .with_context(|| format!("cannot read {}", f.display()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let report =
                chain::verify_readers(readers, key.as_deref()).context("cannot read the trail")?;
            let Some(problem) = report.problem else {
                let (seq, hash) = report.head.unwrap_or((0, String::new()));
                println!(
                    "ok: {} records, {} signed checkpoints; head seq {seq} hash {hash}",
                    report.records, report.checkpoints
                );
                return Ok(ExitCode::SUCCESS);
            };
            let place = report
                .location
                .and_then(|(file, line)| Some(format!("{}:{line}", files.get(file)?.display())))
                .unwrap_or_default();
            println!(
                "{place}: {problem} ({} records verified before it)",
                report.records
            );
            Ok(ExitCode::from(1))
        }
        AuditCommand::Tail {
            file,
            lines,
            outcome,
            action,
            subject,
            tenant,
            route,
            since,
            json,
            follow,
        } => {
            use warden_gateway::tail;
            let since = since
                .map(|s| tail::parse_since(&s, std::time::SystemTime::now()))
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let filter = tail::Filter {
                outcome,
                action,
                subject,
                tenant,
                route,
                since,
            };
            tail::tail(
                &file,
                &filter,
                lines,
                json,
                follow,
                &mut std::io::stdout().lock(),
            )
            .with_context(|| format!("cannot read {}", file.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Keygen { out } => {
            let der = chain::generate_signing_key()?;
            let signer = chain::Signer::from_pkcs8(&der)?;
            warden_gateway::token::write_private_file(
                &out,
                warden_gateway::token::pem("PRIVATE KEY", &der).as_bytes(),
            )
            .with_context(|| format!("cannot write {}", out.display()))?;
            println!(
                "private key: {} (key id {})\npublic key: {}",
                out.display(),
                signer.key_id(),
                signer.public_key()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn load_config(path: &std::path::Path) -> anyhow::Result<config::Config> {
    config::load(path)
        .map_err(|errors| anyhow::anyhow!("invalid configuration {}:\n{errors}", path.display()))
}

/// Records a key change in the configured audit trail (the gateway's own file, one chain).
fn audit_key(
    config: &config::Config,
    action: warden::audit::Action,
    record: &warden::authn::api_key::StoredKey,
    more: impl FnOnce(&mut warden::audit::AuditEvent),
) -> anyhow::Result<()> {
    use warden::audit::{AuditEvent, Outcome};
    let Some(sink) = &config.audit else {
        return Ok(());
    };
    let mut event = AuditEvent::new(action, Outcome::Success, None);
    event
        .set("warden.key.id", record.id.as_str())
        .set("warden.key.name", record.name.as_str())
        .set("warden.key.roles", record.roles.clone())
        .set("warden.key.scopes", record.scopes.clone())
        .set("process.pid", std::process::id());
    if let Some(tenant) = &record.tenant {
        event.set("organization.id", tenant.as_str());
    }
    if let Some(expires) = record.expires_at {
        event.set("warden.key.expires_at", expires);
    }
    if let Some(old) = &record.rotated_from {
        event.set("warden.key.rotated_from", old.as_str());
    }
    // The account that ran the command, as its environment names it.
    if let Some(user) = std::env::var_os("USER").or_else(|| std::env::var_os("LOGNAME")) {
        event.set("user.name", user.to_string_lossy().into_owned());
    }
    more(&mut event);
    warden::audit::sink::append(sink, vec![event])
        .context("the key change is done, but its audit event could not be written to the trail")
}

fn keys(path: &std::path::Path, command: KeysCommand) -> anyhow::Result<()> {
    use warden::audit::Action;
    use warden::authn::api_key::StoredKey;
    use warden::authn::api_key_sqlite::{NewKey, SqliteKeyStore};
    let config = load_config(path)?;
    let settings = config
        .auth
        .api_keys
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("{} configures no auth.api_keys", path.display()))?;
    let store = SqliteKeyStore::open(&settings.store_path)?;
    let now = warden_gateway::token::now_unix();
    let time = |t: Option<i64>| {
        t.and_then(|t| u64::try_from(t).ok())
            .map(|t| {
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(t),
                )
                .to_string()
            })
            .unwrap_or_else(|| "-".into())
    };
    let show = |record: &StoredKey, key: &str| {
        println!("{key}");
        eprintln!(
            "created {} ({}), tenant {}, roles [{}], expires {}. The key is shown only now: store it safely.",
            record.id,
            record.name,
            record.tenant.as_deref().unwrap_or("-"),
            record.roles.join(","),
            time(record.expires_at)
        );
    };
    match command {
        KeysCommand::Create {
            name,
            tenant,
            roles,
            scopes,
            expires,
        } => {
            let expires_at = match expires {
                Some(text) => {
                    let lifetime = humantime::parse_duration(&text)
                        .context("--expires: expected a duration like 90d")?;
                    Some(now + i64::try_from(lifetime.as_secs()).context("--expires is too long")?)
                }
                None => None,
            };
            // These travel upstream as header values: refuse what an upstream would read
            // differently (surrounding spaces, non-ASCII, list separators).
            let safe = warden::identity::is_header_safe;
            if tenant.as_deref().is_some_and(|t| !safe(t)) {
                anyhow::bail!(
                    "--tenant: printable ASCII without leading or trailing spaces, please"
                );
            }
            if roles
                .iter()
                .chain(&scopes)
                .any(|v| !warden::identity::is_list_item_safe(v))
            {
                anyhow::bail!("--roles/--scopes: printable ASCII without spaces or commas, please");
            }
            let new = NewKey {
                name,
                tenant,
                roles,
                scopes,
                expires_at,
            };
            let (record, key) = store.create(&settings.pepper, &new, now)?;
            show(&record, &key);
            audit_key(&config, Action::ApiKeyCreated, &record, |_| {})?;
        }
        KeysCommand::List { json } => {
            let records = store.list()?;
            if json {
                for r in &records {
                    let line = serde_json::json!({
                        "id": r.id, "name": r.name, "tenant": r.tenant, "roles": r.roles, "scopes": r.scopes,
                        "created_at": r.created_at, "expires_at": r.expires_at, "revoked_at": r.revoked_at,
                        "last_used_at": r.last_used_at, "rotated_from": r.rotated_from,
                    });
                    println!("{line}");
                }
            } else {
                println!(
                    "{:<22} {:<16} {:<10} {:<20} {:<8} {:<20} {:<20}",
                    "ID", "NAME", "TENANT", "ROLES", "STATE", "EXPIRES", "LAST USED"
                );
                for r in &records {
                    let state = match r.active_at(now) {
                        Ok(()) => "active",
                        Err(warden::authn::InvalidReason::Revoked) => "revoked",
                        Err(_) => "expired",
                    };
                    println!(
                        "{:<22} {:<16} {:<10} {:<20} {:<8} {:<20} {:<20}",
                        r.id,
                        r.name,
                        r.tenant.as_deref().unwrap_or("-"),
                        r.roles.join(","),
                        state,
                        time(r.expires_at),
                        time(r.last_used_at)
                    );
                }
            }
        }
        KeysCommand::Revoke { id } => {
            store.revoke(&id, now)?;
            let revoked = store.list()?.into_iter().find(|r| r.id == id);
            if let Some(record) = revoked {
                audit_key(&config, Action::ApiKeyRevoked, &record, |_| {})?;
            }
            eprintln!(
                "revoked {id}; gateways stop accepting it within {:?} (auth.api_keys.cache_ttl)",
                settings.settings.cache_ttl
            );
        }
        KeysCommand::Rotate { id, grace } => {
            let grace = humantime::parse_duration(&grace)
                .context("--grace: expected a duration like 24h")?;
            let (record, key) = store.rotate(&settings.pepper, &id, grace, now)?;
            show(&record, &key);
            audit_key(&config, Action::ApiKeyRotated, &record, |event| {
                event.set("warden.key.grace_seconds", grace.as_secs());
            })?;
            eprintln!("{id} stays valid for {}", humantime::format_duration(grace));
        }
    }
    Ok(())
}
