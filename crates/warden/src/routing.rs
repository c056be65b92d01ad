//! What routing decided, shared by the layers after it (authorization reads path parameters,
//! metrics and audit read the route name).

use std::sync::Arc;

/// The matched route, in request extensions (for policy, rate-limit keys and tenant checks).
#[derive(Clone, Debug)]
pub struct MatchedRoute {
    /// The route's name.
    pub name: Arc<str>,
    /// Path parameters from the template, in order, as they appear in the canonical path (the
    /// names are the route's, shared; the values this request's).
    pub params: Vec<(Arc<str>, String)>,
}

impl MatchedRoute {
    /// The value of path parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| **n == *name)
            .map(|(_, v)| v.as_str())
    }
}

/// The matched route's name, in response extensions: all the access log and metrics need, so
/// the parameters do not travel back with every response.
#[derive(Clone, Debug)]
pub struct RouteName(pub Arc<str>);
