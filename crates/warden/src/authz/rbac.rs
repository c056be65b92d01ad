//! Role-based access control: roles grant permissions, a hierarchy lets a role hold the
//! permissions of the roles below it, and routes require permissions, a minimum role or scopes.
//!
//! Everything is precomputed when the configuration loads: each role's full permission set
//! (hierarchy folded in) is a hash set plus a short list of wildcard patterns, so a check is a
//! set lookup rather than a walk.

use std::collections::{HashMap, HashSet};

/// A granted permission with wildcards: `*` alone grants everything; otherwise the pattern and
/// the permission are compared segment by segment (split on `:`), where a `*` segment matches
/// any one segment and a trailing `*` matches the rest (`agent:*`, `*:agent`, `create:*`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pattern(Vec<String>);

impl Pattern {
    fn matches(&self, permission: &str) -> bool {
        // No allocation: walk both sides segment by segment.
        let mut wanted = permission.split(':');
        let last = self.0.len() - 1;
        for (i, segment) in self.0.iter().enumerate() {
            let Some(w) = wanted.next() else {
                return false;
            };
            if segment == "*" && i == last {
                return true;
            }
            if segment != "*" && segment != w {
                return false;
            }
        }
        wanted.next().is_none()
    }
}

#[derive(Clone, Debug, Default)]
struct Grants {
    exact: HashSet<String>,
    patterns: Vec<Pattern>,
}

impl Grants {
    fn add(&mut self, permission: &str) {
        if permission.contains('*') {
            let pattern = Pattern(permission.split(':').map(str::to_owned).collect());
            if !self.patterns.contains(&pattern) {
                self.patterns.push(pattern);
            }
        } else {
            self.exact.insert(permission.to_owned());
        }
    }

    fn merge(&mut self, other: &Grants) {
        self.exact.extend(other.exact.iter().cloned());
        for pattern in &other.patterns {
            if !self.patterns.contains(pattern) {
                self.patterns.push(pattern.clone());
            }
        }
    }

    fn allows(&self, permission: &str) -> bool {
        self.exact.contains(permission) || self.patterns.iter().any(|p| p.matches(permission))
    }
}

/// Why a role table is invalid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RbacError {
    /// The hierarchy names a role that grants nothing.
    #[error("role_hierarchy names unknown role {0:?}")]
    UnknownRole(String),
    /// A role appears twice in the hierarchy.
    #[error("role {0:?} appears twice in role_hierarchy")]
    DuplicateRole(String),
    /// An empty permission string.
    #[error("role {0:?} grants an empty permission")]
    EmptyPermission(String),
}

/// Roles with their precomputed permission sets and hierarchy ranks.
#[derive(Clone, Debug, Default)]
pub struct RoleTable {
    grants: HashMap<String, Grants>,
    rank: HashMap<String, usize>,
}

impl RoleTable {
    /// Builds the table. `hierarchy` is ordered lowest first; each role in it also holds the
    /// permissions of every role before it.
    pub fn new(roles: &[(String, Vec<String>)], hierarchy: &[String]) -> Result<Self, RbacError> {
        let mut grants: HashMap<String, Grants> = HashMap::new();
        for (role, permissions) in roles {
            let entry = grants.entry(role.clone()).or_default();
            for permission in permissions {
                if permission.is_empty() {
                    return Err(RbacError::EmptyPermission(role.clone()));
                }
                entry.add(permission);
            }
        }
        let mut rank = HashMap::new();
        let mut inherited = Grants::default();
        for (i, role) in hierarchy.iter().enumerate() {
            let own = grants
                .get_mut(role)
                .ok_or_else(|| RbacError::UnknownRole(role.clone()))?;
            if rank.insert(role.clone(), i).is_some() {
                return Err(RbacError::DuplicateRole(role.clone()));
            }
            own.merge(&inherited);
            inherited = own.clone();
        }
        Ok(RoleTable { grants, rank })
    }

    /// Whether `role` is defined.
    pub fn has_role(&self, role: &str) -> bool {
        self.grants.contains_key(role)
    }

    /// Whether any role could ever grant `permission` (config validation).
    pub fn grantable(&self, permission: &str) -> bool {
        self.grants.values().any(|g| g.allows(permission))
    }

    /// Position of `role` in the hierarchy (0 is lowest).
    pub fn rank(&self, role: &str) -> Option<usize> {
        self.rank.get(role).copied()
    }

    /// Whether any of `roles` grants `permission`. Unknown roles grant nothing.
    pub fn allows(&self, roles: &[String], permission: &str) -> bool {
        roles
            .iter()
            .filter_map(|role| self.grants.get(role))
            .any(|grants| grants.allows(permission))
    }

    /// The highest hierarchy rank among `roles`.
    pub fn highest_rank(&self, roles: &[String]) -> Option<usize> {
        roles.iter().filter_map(|role| self.rank(role)).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RoleTable {
        let roles = vec![
            ("viewer".to_owned(), vec!["read:agent".to_owned()]),
            (
                "user".to_owned(),
                vec!["create:agent".to_owned(), "update:agent".to_owned()],
            ),
            (
                "admin".to_owned(),
                vec!["delete:agent".to_owned(), "admin:*".to_owned()],
            ),
            ("auditor".to_owned(), vec!["read:*".to_owned()]),
            ("root".to_owned(), vec!["*".to_owned()]),
        ];
        let hierarchy = ["viewer", "user", "admin"].map(String::from);
        RoleTable::new(&roles, &hierarchy).expect("table")
    }

    fn roles(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn hierarchy_folds_lower_roles_in() {
        let t = table();
        assert!(t.allows(&roles(&["admin"]), "read:agent"));
        assert!(t.allows(&roles(&["admin"]), "create:agent"));
        assert!(t.allows(&roles(&["user"]), "read:agent"));
        assert!(!t.allows(&roles(&["user"]), "delete:agent"));
        assert!(!t.allows(&roles(&["viewer"]), "create:agent"));
        assert_eq!(t.highest_rank(&roles(&["viewer", "admin"])), Some(2));
        assert_eq!(t.highest_rank(&roles(&["auditor"])), None);
    }

    #[test]
    fn wildcards_match_by_segment() {
        let t = table();
        assert!(t.allows(&roles(&["admin"]), "admin:users"));
        assert!(
            t.allows(&roles(&["admin"]), "admin:users:delete"),
            "trailing * matches the rest"
        );
        assert!(!t.allows(&roles(&["admin"]), "administer"));
        assert!(t.allows(&roles(&["auditor"]), "read:billing"));
        assert!(!t.allows(&roles(&["auditor"]), "reader:billing"));
        assert!(t.allows(&roles(&["root"]), "anything:at:all"));
        assert!(
            !t.allows(&roles(&["nobody"]), "read:agent"),
            "unknown roles grant nothing"
        );
        let mid = Pattern(vec!["*".into(), "agent".into()]);
        assert!(mid.matches("create:agent"));
        assert!(!mid.matches("create:agents"));
        assert!(!mid.matches("a:b:agent"));
    }

    #[test]
    fn bad_tables_are_refused() {
        let roles = vec![("viewer".to_owned(), vec!["read".to_owned()])];
        assert_eq!(
            RoleTable::new(&roles, &["viewer".into(), "ghost".into()]).err(),
            Some(RbacError::UnknownRole("ghost".into()))
        );
        assert_eq!(
            RoleTable::new(&roles, &["viewer".into(), "viewer".into()]).err(),
            Some(RbacError::DuplicateRole("viewer".into()))
        );
    }
}
