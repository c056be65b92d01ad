//! The gateway's black-box tests, one module per feature, all through real sockets against
//! gateways and upstreams on 127.0.0.1:0. One binary, so touching a source file links once.

mod common;

mod admin;
mod api_keys;
mod audit;
mod authz;
mod bodies;
mod budgets;
mod cli;
mod client_ip;
mod cors;
mod demo;
mod deploy;
mod faults;
mod golden;
mod guards;
mod hardening;
mod identity_headers;
mod interop;
mod jwks;
mod jwt;
mod limits;
mod output;
mod policy;
mod proxy;
mod ratelimit;
mod ratelimit_redis;
mod ratelimit_stores;
mod reload;
mod routing;
mod security_headers;
mod shutdown;
mod tls;
mod upstream_tls;
