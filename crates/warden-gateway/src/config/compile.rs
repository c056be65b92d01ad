//! Raw configuration -> typed [`Config`]: every value parsed once, every error collected.
//!
//! Each section compiles itself (its module owns its raw and compiled types); this module runs
//! them in file order and hands the routes what they refer to. The request path never sees a
//! raw string. Defaults are the secure ones; a key left out never weakens security.

use std::sync::Arc;

use warden::authz::rbac::RoleTable;
use warden::headers::HeaderPolicy;

use super::audit;
use super::auth::{self, AuthConfig};
use super::cors::{self, CorsConfig};
use super::definitions::Definitions;
use super::load::Parsed;
use super::rate_limits::{self, RateLimitsConfig};
use super::routes::{self, RouteConfig};
use super::server::{self, Server};
use super::token_budgets::{self, TokenBudgetsConfig};
use super::toolkit::{Compiler, ConfigErrors, scrub};
use super::upstream::{self, Upstream};
use super::{authz, guards, headers};

/// The compiled configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listeners, limits, timeouts.
    pub server: Server,
    /// The upstream service.
    pub upstream: Upstream,
    /// Authentication.
    pub auth: AuthConfig,
    /// Roles and their permissions (hierarchy folded in).
    pub roles: Arc<RoleTable>,
    /// Rate limits.
    pub rate_limits: RateLimitsConfig,
    /// Token budgets (their tiers; each route holds its own budget).
    pub token_budgets: TokenBudgetsConfig,
    /// CORS, if any origin is allowed.
    pub cors: Option<CorsConfig>,
    /// Security response headers.
    pub headers: HeaderPolicy,
    /// Routes in file order.
    pub routes: Vec<RouteConfig>,
    /// The audit trail, if configured.
    pub audit: Option<warden::audit::sink::SinkConfig>,
    /// Valid but probably not meant (`warden check` prints them, `serve` logs them).
    pub warnings: Vec<super::ConfigError>,
    /// SHA-256 of the effective document ([`super::load::Parsed::fingerprint`]).
    pub fingerprint: String,
    /// The file a reload reads again, with the process environment (set by [`super::load`];
    /// `None` when compiled from text or with other overrides, which a reload could not
    /// reproduce).
    pub source: Option<std::path::PathBuf>,
    /// What each part was made from (for reloads).
    pub definitions: Definitions,
}

/// Compiles a parsed file, reporting its structural errors and every semantic one together.
pub fn compile_parsed(parsed: Parsed) -> Result<Config, ConfigErrors> {
    let Parsed {
        raw,
        errors,
        secret_paths,
        secret_values,
        base_dir,
        fingerprint,
        document,
        files,
    } = parsed;
    let mut c = Compiler::new(errors, secret_paths, base_dir);
    let server = server::compile(&mut c, &raw.server);
    let upstream = upstream::compile(&mut c, raw.upstream.as_ref());
    let cors = cors::compile(&mut c, &raw.cors, server.environment);
    let headers = headers::compile(&mut c, &raw.headers, server.tls.is_some());
    let auth = auth::compile(&mut c, &raw.auth, server.environment);
    let client_ca = raw
        .server
        .tls
        .as_ref()
        .is_some_and(|t| t.client_ca.is_some());
    if auth.client_cert.is_some() && !client_ca {
        c.error(
            "auth.client_cert",
            "needs server.tls.client_ca: without verified client certificates it can never authenticate anyone",
        );
    }
    let roles = authz::compile_roles(&mut c, &raw.authz);
    let policy = authz::compile_policy(&mut c, raw.authz.policy.as_ref());
    let rate_limits = rate_limits::compile(&mut c, &raw.rate_limits);
    let token_budgets = token_budgets::compile(&mut c, &raw.token_budgets);
    let guards = guards::compile(&mut c, &raw.guards);
    let audit = audit::compile(&mut c, raw.audit.as_ref());
    let routes = routes::compile(
        &mut c,
        &raw.routes,
        routes::Sections {
            auth: &auth,
            roles: &roles,
            policy: policy.as_ref(),
            limits: &server.limits,
            guards: &guards,
            budgets: &token_budgets,
        },
    );
    let mut files = files;
    files.extend(c.take_files());
    let (mut errors, warnings) = c.finish();
    if errors.is_empty() {
        Ok(Config {
            server,
            upstream,
            auth,
            roles: Arc::new(roles),
            rate_limits,
            token_budgets,
            cors,
            headers,
            routes,
            audit,
            warnings,
            fingerprint,
            source: None,
            definitions: Definitions::new(document, files),
        })
    } else {
        scrub(&mut errors, &secret_values);
        Err(ConfigErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::{HeaderValue, Method};

    use super::*;
    use crate::config::Environment;
    use crate::config::load::{Format, parse_raw};

    fn compile_yaml(yaml: &str) -> Result<Config, ConfigErrors> {
        compile_parsed(parse_raw(yaml, Format::Yaml, &Vec::new(), &[])?)
    }

    const MINIMAL: &str =
        "upstream: { url: http://127.0.0.1:8000 }\nroutes:\n  - { path: /healthz, auth: none }\n";

    #[test]
    fn minimal_config_gets_secure_defaults() {
        let config = compile_yaml(MINIMAL).expect("valid");
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.server.admin_listen.to_string(), "127.0.0.1:9901");
        assert_eq!(config.server.environment, Environment::Production);
        assert_eq!(config.server.limits.max_request_bytes, 10 * 1024 * 1024);
        assert!(config.cors.is_none());
        assert_eq!(config.routes[0].methods, vec![Method::GET]);
        assert!(config.routes[0].public);
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let yaml = r#"
server:
  listen: nowhere
  environment: staging
  trusted_proxies: [10.0.0.0/8, banana]
  limits: { max_request_bytes: 10 lightyears, max_connections: 0 }
  timeouts: { request: soon }
upstream: { url: "ftp://x" }
cors: { origins: ["*", "https://a.example.com/path"], credentials: true }
headers: { profile: fancy, set: { "bad header": x } }
routes:
  - { path: /a/../b, auth: none }
  - { path: /ok, methods: [GET, "FE TCH"], auth: none }
  - { path: /needs-auth }
  - { path: /ok, methods: [GET], auth: none }
  - { path: /x, auth: none, body: { max_bytes: -5 } }
"#;
        let errors = compile_yaml(yaml).expect_err("invalid").0;
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        for expected in [
            "server.listen",
            "server.environment",
            "server.trusted_proxies[1]",
            "server.limits.max_request_bytes",
            "server.limits.max_connections",
            "server.timeouts.request",
            "upstream.url",
            "cors.origins[0]",
            "cors.origins[1]",
            "headers.profile",
            "headers.set.bad header",
            "routes[0].path",
            "routes[1].methods[1]",
            "routes[2].auth",
            "routes[3].methods",
            "routes[4].body.max_bytes",
        ] {
            assert!(paths.contains(&expected), "missing {expected} in {paths:?}");
        }
    }

    #[test]
    fn development_origins_only_in_development() {
        let base = "upstream: { url: http://127.0.0.1:8000 }\nroutes: [{ path: /a, auth: none }]\ncors: { origins: [https://App.example.com], development_origins: [http://localhost:3000] }\n";
        let prod = compile_yaml(base).expect("valid").cors.expect("cors");
        assert_eq!(
            prod.origins,
            vec![HeaderValue::from_static("https://app.example.com")]
        );
        let dev = compile_yaml(&format!("server: {{ environment: development }}\n{base}"))
            .expect("valid")
            .cors
            .expect("cors");
        assert_eq!(dev.origins.len(), 2);
    }

    #[test]
    fn template_conflicts_are_config_errors() {
        let yaml = "upstream: { url: http://127.0.0.1:8000 }\nroutes:\n  - { path: '/a/{x}', auth: none }\n  - { path: '/a/{y}', auth: none }\n";
        let errors = compile_yaml(yaml).expect_err("conflict");
        assert_eq!(errors.0[0].path, "routes[1].path");
    }

    #[test]
    fn sizes_and_durations_accept_numbers_and_units() {
        let yaml = "server: { limits: { max_request_bytes: 1MiB, max_header_bytes: 8192 }, timeouts: { request: 90, upstream_response: 2m } }\nupstream: { url: 'http://127.0.0.1:8000/base/' }\nroutes: [{ path: /a, auth: none, body: { max_bytes: 1KiB } }]\n";
        let config = compile_yaml(yaml).expect("valid");
        assert_eq!(config.server.limits.max_request_bytes, 1024 * 1024);
        assert_eq!(config.server.limits.max_header_bytes, 8192);
        assert_eq!(config.server.timeouts.request, Duration::from_secs(90));
        assert_eq!(
            config.server.timeouts.upstream_response,
            Duration::from_secs(120)
        );
        assert_eq!(config.routes[0].max_body_bytes, 1024);
        assert_eq!(config.upstream.base_path, "/base");
    }

    #[test]
    fn audit_settings_are_checked_and_the_signing_key_must_be_a_reference() {
        let head = "upstream: { url: http://127.0.0.1:8000 }\nroutes: [{ path: /a, auth: none }]\n";
        let config = compile_yaml(&format!("{head}audit: {{ sink: stdout }}\n")).expect("valid");
        let audit = config.audit.expect("audit on");
        assert!(audit.hash_chain);
        assert_eq!(audit.target, warden::audit::sink::Target::Stdout);
        assert!(compile_yaml(head).expect("valid").audit.is_none());
        let both = compile_yaml(&format!(
            "{head}audit: {{ sink: [stdout, 'file://a.jsonl'] }}\n"
        ))
        .expect("valid")
        .audit
        .expect("audit on");
        assert!(both.also_stdout);
        assert!(matches!(both.target, warden::audit::sink::Target::File(_)));
        let two = compile_yaml(&format!(
            "{head}audit: {{ sink: ['file://a.jsonl', 'file://b.jsonl'] }}\n"
        ))
        .expect_err("two files")
        .to_string();
        assert!(two.contains("audit.sink[1]: one file per trail"), "{two}");

        let broken = format!(
            "{head}audit: {{ sink: 'ftp://x', signing_key: 'literal', on_overflow: maybe, fsync: sometimes, queue: 100000000, checkpoint_every: 0, redact_patterns: ['ok', '(unclosed'] }}\n"
        );
        let errors = compile_yaml(&broken).expect_err("refused").to_string();
        for expected in [
            "audit.sink: expected stdout or file://PATH",
            "audit.signing_key: must be a secret reference",
            "audit.on_overflow: expected block or drop",
            "audit.fsync: expected interval, every or never",
            "audit.queue: at most 1048576",
            "audit.checkpoint_every: must be at least 1",
            "audit.redact_patterns[1]: regex parse error",
        ] {
            assert!(errors.contains(expected), "{expected}: {errors}");
        }
        let der = warden::audit::chain::generate_signing_key().expect("key");
        let env = vec![
            ("GOOD".to_owned(), crate::token::pem("PRIVATE KEY", &der)),
            (
                "BAD".to_owned(),
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_owned(),
            ),
        ];
        let yaml =
            |key: &str| format!("{head}audit: {{ sink: stdout, signing_key: '${{env:{key}}}' }}\n");
        let parsed = parse_raw(&yaml("GOOD"), Format::Yaml, &env, &[]).expect("parse");
        let config = compile_parsed(parsed).expect("a real key");
        assert!(config.audit.expect("audit").signer.is_some());
        let parsed = parse_raw(&yaml("BAD"), Format::Yaml, &env, &[]).expect("parse");
        let errors = compile_parsed(parsed).expect_err("not a key").to_string();
        assert!(
            errors.contains("audit.signing_key: not an Ed25519 private key"),
            "{errors}"
        );
        // The key never shows in an error.
        assert!(!errors.contains("AAAA"), "{errors}");
    }

    #[test]
    fn secrets_must_be_references_and_long_enough() {
        let literal = "upstream: { url: http://127.0.0.1:8000 }\nauth:\n  api_keys: { store: 'sqlite://k.db', pepper: 'literal-pepper-that-is-long-enough-0123456789' }\n  jwt: [{ name: a, issuer: 'https://a.test', audiences: [x], secret: 'literal-hmac-secret-long-enough-0123456789', algorithms: [HS256] }]\nroutes: [{ path: /a }]\n";
        let errors = compile_yaml(literal).expect_err("literals refused").0;
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"auth.api_keys.pepper"), "{paths:?}");
        assert!(paths.contains(&"auth.jwt[0].secret"), "{paths:?}");

        let env = vec![("PEPPER".to_owned(), "short".to_owned())];
        let short = "upstream: { url: http://127.0.0.1:8000 }\nauth:\n  api_keys: { store: 'mysql://k', pepper: '${env:PEPPER}' }\nroutes: [{ path: /a }]\n";
        let parsed = parse_raw(short, Format::Yaml, &env, &[]).expect("parse");
        let errors = compile_parsed(parsed)
            .expect_err("short pepper, bad store")
            .to_string();
        assert!(
            errors.contains("auth.api_keys.pepper: must be at least 32 bytes"),
            "{errors}"
        );
        assert!(
            errors.contains("auth.api_keys.store: expected sqlite://PATH"),
            "{errors}"
        );
    }

    #[test]
    fn none_is_never_an_algorithm_and_families_do_not_mix() {
        let yaml = "upstream: { url: http://127.0.0.1:8000 }\nauth:\n  jwt: [{ name: a, issuer: 'https://a.test', audiences: [x], jwks_uri: 'https://a.test/jwks', algorithms: [None, RS256, HS256] }]\nroutes: [{ path: /a }]\n";
        let errors = compile_yaml(yaml).expect_err("invalid").to_string();
        assert!(
            errors.contains("auth.jwt[0].algorithms[0]: \"none\" is never allowed"),
            "{errors}"
        );
        assert!(errors.contains("do not mix HMAC"), "{errors}");
    }

    #[test]
    fn invalid_values_from_secret_references_are_not_echoed() {
        let env = vec![
            ("LISTEN".to_owned(), "s3cr3t-not-an-address".to_owned()),
            ("UP".to_owned(), "s3cr3t url".to_owned()),
        ];
        let yaml = "server: { listen: '${env:LISTEN}', timeouts: { request: '${env:LISTEN}' } }\nupstream: { url: '${env:UP}' }\nroutes: [{ path: /a, auth: none }]\n";
        let parsed = parse_raw(yaml, Format::Yaml, &env, &[]).expect("parse");
        let errors = compile_parsed(parsed).expect_err("invalid").to_string();
        assert!(
            errors.contains("server.listen")
                && errors.contains("upstream.url")
                && errors.contains("server.timeouts.request"),
            "{errors}"
        );
        assert!(
            !errors.contains("s3cr3t"),
            "a secret reached the error text: {errors}"
        );
    }
}
