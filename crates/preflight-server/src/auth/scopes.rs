//! Scopes and roles: what a key or a user may do.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum Scope {
    #[serde(rename = "evaluate")]
    Evaluate,
    #[serde(rename = "read")]
    Read,
    #[serde(rename = "templates:write")]
    TemplatesWrite,
    #[serde(rename = "keys:manage")]
    KeysManage,
    /// Alert rules, and acknowledging and resolving alerts.
    #[serde(rename = "alerts:manage")]
    AlertsManage,
    /// Tenant administration (audit trail, users).
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::Evaluate,
        Scope::Read,
        Scope::TemplatesWrite,
        Scope::KeysManage,
        Scope::Admin,
        Scope::AlertsManage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Evaluate => "evaluate",
            Scope::Read => "read",
            Scope::TemplatesWrite => "templates:write",
            Scope::KeysManage => "keys:manage",
            Scope::AlertsManage => "alerts:manage",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of scopes, as a bit set: checks on the hot path are one AND.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct ScopeSet(u8);

impl ScopeSet {
    pub fn all() -> ScopeSet {
        ScopeSet::from_iter(Scope::ALL)
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn is_subset_of(self, other: ScopeSet) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// Scopes in `self` that `other` lacks.
    pub fn minus(self, other: ScopeSet) -> ScopeSet {
        ScopeSet(self.0 & !other.0)
    }

    /// Space-separated names, as stored.
    pub fn to_storage(self) -> String {
        self.iter().map(Scope::as_str).collect::<Vec<_>>().join(" ")
    }

    /// Parses stored names; unknown names (from a newer version) are ignored, never granted.
    pub fn from_storage(s: &str) -> ScopeSet {
        ScopeSet::from_iter(s.split_whitespace().filter_map(Scope::parse))
    }

    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Scope::as_str).collect()
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        ScopeSet(iter.into_iter().fold(0, |acc, s| acc | s.bit()))
    }
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// A dashboard user's role; each maps onto a fixed set of scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything in the tenant, including keys and the audit trail.
    Admin,
    /// Evaluate, read, manage templates and alerts.
    Editor,
    /// Read only.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "editor" => Some(Role::Editor),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    pub fn scopes(self) -> ScopeSet {
        match self {
            Role::Admin => ScopeSet::all(),
            Role::Editor => ScopeSet::from_iter([
                Scope::Evaluate,
                Scope::Read,
                Scope::TemplatesWrite,
                Scope::AlertsManage,
            ]),
            Role::Viewer => ScopeSet::from_iter([Scope::Read]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_round_trip_and_subsets() {
        let s = ScopeSet::from_iter([Scope::Read, Scope::KeysManage]);
        assert_eq!(ScopeSet::from_storage(&s.to_storage()), s);
        assert!(ScopeSet::from_iter([Scope::Read]).is_subset_of(s));
        assert!(!ScopeSet::from_iter([Scope::Admin]).is_subset_of(s));
        assert_eq!(
            ScopeSet::from_storage("read bogus"),
            ScopeSet::from_iter([Scope::Read])
        );
        assert_eq!(
            ScopeSet::from_iter([Scope::Admin, Scope::Read])
                .minus(s)
                .names(),
            vec!["admin"]
        );
    }

    #[test]
    fn roles_map_onto_scopes() {
        assert_eq!(Role::Admin.scopes(), ScopeSet::all());
        assert!(!Role::Editor.scopes().contains(Scope::KeysManage));
        assert_eq!(Role::Viewer.scopes().names(), vec!["read"]);
    }
}
