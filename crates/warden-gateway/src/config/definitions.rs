//! What each part of a compiled configuration was made from: the effective document (file,
//! environment overrides, resolved secret references) and every file it named, with a digest
//! of each file's content and the configuration path that named it.
//!
//! A reload compares digests of parts to tell what changed: the live state built from a part
//! (rate-limit counters, signing-key caches, the verified-token cache, API-key caches, the
//! upstream pool) is kept when that part's digest is unchanged, and built afresh otherwise. The
//! file list is also what the reload watcher checks for changes. Secret values take part in
//! the digests (a rotated pepper is a changed definition) but never leave the process: the
//! digests are compared, never logged, and `Debug` shows no content.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

/// A SHA-256 over one or more parts of the configuration.
pub type Digest = [u8; 32];

/// A file the configuration named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRead {
    /// The configuration path that named it (`auth.jwt[0].ca_file`, `server.tls.cert`).
    pub at: String,
    /// The file, resolved.
    pub path: PathBuf,
    digest: Digest,
}

/// The effective document and the files it named.
#[derive(Clone, Default)]
pub struct Definitions {
    document: Arc<Value>,
    files: Vec<FileRead>,
}

impl std::fmt::Debug for Definitions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The document holds resolved secrets: never printed.
        f.debug_struct("Definitions")
            .field("files", &self.files.len())
            .finish_non_exhaustive()
    }
}

/// The SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Digest {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

impl FileRead {
    /// `path`, named at `at`, whose content is `content`.
    pub fn new(at: &str, path: &Path, content: &[u8]) -> Self {
        FileRead {
            at: at.to_owned(),
            path: path.to_path_buf(),
            digest: sha256(content),
        }
    }
}

/// Whether the configuration path `at` is `prefix` or lies under it.
fn under(at: &str, prefix: &str) -> bool {
    prefix.is_empty()
        || at
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

impl Definitions {
    /// The document (secrets resolved) and the files read while loading and compiling it.
    pub fn new(document: Value, files: Vec<FileRead>) -> Self {
        Definitions {
            document: Arc::new(document),
            files,
        }
    }

    /// Every file the configuration named (the configuration file itself is not among them).
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|file| file.path.as_path())
    }

    /// A digest of the parts at the dotted `paths` (`auth.jwt`, `server.timeouts`) with the
    /// files named under them; an absent part counts as absent, so adding it is a change.
    pub fn digest(&self, paths: &[&str]) -> Digest {
        let mut text = Vec::new();
        for path in paths {
            text.extend_from_slice(path.as_bytes());
            text.push(0);
            match self.at(path) {
                Some(value) => warden::audit::chain::canonical(value, &mut text),
                None => text.push(0),
            }
            text.push(0);
            self.files_under(path, &mut text);
        }
        sha256(&text)
    }

    /// A digest of the element of the array at `array` whose `field` is `value` (a JWT
    /// provider by name: its position in the list does not matter), with the files named under
    /// it; `None` when there is no such element.
    pub fn digest_item(&self, array: &str, field: &str, value: &str) -> Option<Digest> {
        let items = self.at(array)?.as_array()?;
        let index = items
            .iter()
            .position(|item| item.get(field).and_then(Value::as_str) == Some(value))?;
        let mut text = Vec::new();
        warden::audit::chain::canonical(&items[index], &mut text);
        text.push(0);
        self.files_under(&format!("{array}[{index}]"), &mut text);
        Some(sha256(&text))
    }

    /// A digest of everything: equal digests mean nothing changed, files included.
    pub fn digest_all(&self) -> Digest {
        self.digest(&[""])
    }

    /// The top-level sections whose definition differs between `self` and `other`.
    pub fn changed_sections(&self, other: &Definitions) -> Vec<String> {
        let mut names: Vec<&str> = Vec::new();
        for doc in [&*self.document, &*other.document] {
            if let Some(map) = doc.as_object() {
                for name in map.keys() {
                    if !names.contains(&name.as_str()) {
                        names.push(name);
                    }
                }
            }
        }
        names.sort_unstable();
        names
            .into_iter()
            .filter(|name| self.digest(&[name]) != other.digest(&[name]))
            .map(str::to_owned)
            .collect()
    }

    fn at(&self, path: &str) -> Option<&Value> {
        if path.is_empty() {
            return Some(&self.document);
        }
        path.split('.')
            .try_fold(&*self.document, |value, key| value.get(key))
    }

    fn files_under(&self, prefix: &str, text: &mut Vec<u8>) {
        for file in self.files.iter().filter(|file| under(&file.at, prefix)) {
            text.extend_from_slice(file.at.as_bytes());
            text.push(0);
            text.extend_from_slice(file.path.to_string_lossy().as_bytes());
            text.push(0);
            text.extend_from_slice(&file.digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn digests_follow_the_parts_and_the_files_named_under_them() {
        let doc = json!({
            "auth": { "jwt": [{ "name": "a", "issuer": "x" }, { "name": "b", "issuer": "y" }] },
            "routes": [{ "path": "/a" }]
        });
        let files = |content: &[u8]| {
            vec![FileRead::new(
                "auth.jwt[1].ca_file",
                Path::new("/ca"),
                content,
            )]
        };
        let one = Definitions::new(doc.clone(), files(b"ca-1"));
        let two = Definitions::new(doc.clone(), files(b"ca-2"));
        assert_eq!(one.digest(&["routes"]), two.digest(&["routes"]));
        assert_ne!(one.digest(&["auth"]), two.digest(&["auth"]));
        assert_eq!(
            one.digest_item("auth.jwt", "name", "a"),
            two.digest_item("auth.jwt", "name", "a")
        );
        assert_ne!(
            one.digest_item("auth.jwt", "name", "b"),
            two.digest_item("auth.jwt", "name", "b")
        );
        assert_eq!(one.digest_item("auth.jwt", "name", "c"), None);
        assert_eq!(one.changed_sections(&two), vec!["auth".to_owned()]);

        // A provider moved in the list is the same provider.
        let moved = Definitions::new(
            json!({ "auth": { "jwt": [{ "name": "b", "issuer": "y" }, { "name": "a", "issuer": "x" }] } }),
            Vec::new(),
        );
        assert_eq!(
            moved.digest_item("auth.jwt", "name", "a"),
            one.digest_item("auth.jwt", "name", "a")
        );
        // An absent part differs from an empty one.
        let empty = Definitions::new(json!({ "cors": {} }), Vec::new());
        let none = Definitions::new(json!({}), Vec::new());
        assert_ne!(empty.digest(&["cors"]), none.digest(&["cors"]));
        assert!(under("auth.jwt[1].ca_file", "auth.jwt"));
        assert!(!under("auth.jwtx", "auth.jwt"));
    }
}
