//! The route table: canonical path + method -> the route's prebuilt service stack.
//!
//! The router is the innermost global layer. It canonicalizes the path (400 on anything
//! ambiguous) and dispatches with matchit. Deny by default: an unknown
//! path is 404, a known path with another method is 405 with `Allow`. `HEAD` is served by a
//! route that allows `GET`. Downstream layers and the upstream see only the canonical path.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use http::{HeaderValue, Method, Request, Response, Uri};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};
use warden::body::Body;
use warden::canonical::canonicalize;
use warden::future::ResponseFuture;
use warden::rejection::{Rejection, RejectionKind};

/// A route's complete per-route stack.
pub type RouteService = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

pub use warden::routing::MatchedRoute;

#[derive(Clone, Debug)]
struct Handler {
    name: Arc<str>,
    service: RouteService,
}

#[derive(Clone, Debug)]
struct PathEntry {
    handlers: Vec<(Method, Handler)>,
    allow: HeaderValue,
    /// The template's parameter names, shared by every match (no copy per request).
    params: Vec<Arc<str>>,
}

/// Builder for the [`Router`].
#[derive(Debug, Default)]
pub struct RouterBuilder {
    paths: Vec<(String, PathEntry)>,
}

impl RouterBuilder {
    /// Adds `methods` on `template` served by `service`.
    pub fn route(&mut self, name: &str, template: &str, methods: &[Method], service: RouteService) {
        let handler = Handler {
            name: name.into(),
            service,
        };
        let index = match self.paths.iter().position(|(t, _)| t == template) {
            Some(i) => i,
            None => {
                self.paths.push((
                    template.to_owned(),
                    PathEntry {
                        handlers: Vec::new(),
                        allow: HeaderValue::from_static(""),
                        params: parameter_names(template),
                    },
                ));
                self.paths.len() - 1
            }
        };
        let entry = &mut self.paths[index].1;
        for method in methods {
            entry.handlers.push((method.clone(), handler.clone()));
        }
    }

    /// Finishes the table. Fails on template conflicts (config compilation catches them first).
    pub fn build(self) -> Result<Router, matchit::InsertError> {
        let mut table = matchit::Router::new();
        let mut entries = Vec::with_capacity(self.paths.len());
        for (i, (template, mut entry)) in self.paths.into_iter().enumerate() {
            let mut allowed: Vec<&str> = entry.handlers.iter().map(|(m, _)| m.as_str()).collect();
            if allowed.contains(&"GET") && !allowed.contains(&"HEAD") {
                allowed.push("HEAD");
            }
            entry.allow = HeaderValue::from_str(&allowed.join(", "))
                .unwrap_or_else(|_| HeaderValue::from_static("GET"));
            table.insert(template, i)?;
            entries.push(entry);
        }
        Ok(Router {
            inner: Arc::new(Inner { table, entries }),
        })
    }
}

#[derive(Debug)]
struct Inner {
    table: matchit::Router<usize>,
    entries: Vec<PathEntry>,
}

/// Canonicalizes, resolves the client, and dispatches to route stacks.
#[derive(Clone, Debug)]
pub struct Router {
    inner: Arc<Inner>,
}

impl Service<Request<Body>> for Router {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture<Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        match self.dispatch(&mut req) {
            // The route's name travels back on the response for metrics and logs.
            Ok((name, service)) => {
                let name = warden::routing::RouteName(name);
                ResponseFuture::new(service.oneshot(req).map(move |result| {
                    result.map(|mut response| {
                        response.extensions_mut().insert(name);
                        response
                    })
                }))
            }
            Err(rejection) => {
                let response = rejection.into_response_for(req.extensions());
                ResponseFuture::new(std::future::ready(Ok(response)))
            }
        }
    }
}

impl Router {
    /// Whether some route serves `path` (after canonicalization), whatever the method.
    pub fn has_path(&self, path: &str) -> bool {
        canonicalize(path).is_ok_and(|p| self.inner.table.at(&p).is_ok())
    }

    fn dispatch(&self, req: &mut Request<Body>) -> Result<(Arc<str>, RouteService), Rejection> {
        let canonical = match canonicalize(req.uri().path()) {
            Ok(path) => path,
            Err(reason) => {
                tracing::info!(%reason, "rejected request path");
                return Err(RejectionKind::InvalidPath.into());
            }
        };
        let canonical_owned = match canonical {
            std::borrow::Cow::Borrowed(_) => None,
            std::borrow::Cow::Owned(path) => Some(path),
        };
        if let Some(path) = canonical_owned {
            let uri = rebuild_uri(req.uri(), &path).ok_or(RejectionKind::BadRequest)?;
            *req.uri_mut() = uri;
        }

        let matched = self
            .inner
            .table
            .at(req.uri().path())
            .map_err(|_| Rejection::new(RejectionKind::NotFound))?;
        let entry = &self.inner.entries[*matched.value];
        let method = req.method();
        let handler = entry
            .handlers
            .iter()
            .find(|(m, _)| m == method)
            .or_else(|| {
                (method == Method::HEAD)
                    .then(|| entry.handlers.iter().find(|(m, _)| m == Method::GET))
                    .flatten()
            })
            .map(|(_, h)| h)
            .ok_or_else(|| Rejection::method_not_allowed(entry.allow.clone()))?;
        let route = MatchedRoute {
            name: handler.name.clone(),
            params: matched
                .params
                .iter()
                .map(|(k, v)| {
                    let name = entry.params.iter().find(|n| ***n == *k).cloned();
                    (name.unwrap_or_else(|| k.into()), v.to_owned())
                })
                .collect(),
        };
        let name = route.name.clone();
        req.extensions_mut().insert(route);
        Ok((name, handler.service.clone()))
    }
}

/// `{name}` and `{*name}` segments of a route template.
fn parameter_names(template: &str) -> Vec<Arc<str>> {
    template
        .split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}'))
        .map(|(name, _)| Arc::from(name.trim_start_matches('*')))
        .collect()
}

fn rebuild_uri(uri: &Uri, path: &str) -> Option<Uri> {
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::parameter_names;

    #[test]
    fn template_parameters_are_named_once_for_every_match() {
        let names = parameter_names("/api/v1/tenants/{tenant_id}/agents/{id}/{*rest}");
        let names: Vec<&str> = names.iter().map(|n| &**n).collect();
        assert_eq!(names, ["tenant_id", "id", "rest"]);
        assert!(parameter_names("/healthz").is_empty());
    }
}
