//! The toolkit every configuration section compiles with: error collection with paths, the
//! scalar forms of the file (durations, sizes, counts, addresses, header names, methods, one
//! word of a fixed set), files named by the configuration, and the rule that a value from a
//! secret reference never appears in a message.
//!
//! Sections (`server`, `upstream`, `auth`, …) use this module; it uses none of them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, Method};
use serde::Deserialize;
use std::fmt;

/// One configuration problem, with the path of the field it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path (`routes[2].body.max_bytes`), or a file name for whole-file problems.
    pub path: String,
    /// What is wrong and, where it helps, what is expected.
    pub message: String,
}

impl ConfigError {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in a configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// A single problem.
    pub fn one(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError::new(path, message)])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// A scalar as written: durations and sizes may be given as `"30s"` / `"10MiB"` or as numbers
/// (seconds / bytes), and an environment override arrives as whatever figment parsed.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Scalar {
    /// A whole number.
    Int(u64),
    /// Text.
    Text(String),
}

/// A mode word; YAML 1.1 readers turn `off`/`on` into booleans, so those are accepted too.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Switch {
    /// `true` / `false` (`on` / `off`).
    Flag(bool),
    /// A word.
    Text(String),
}

impl Switch {
    /// The word: `true` is `enforce`, `false` is `off`.
    pub fn as_word(&self) -> &str {
        match self {
            Switch::Flag(true) => "enforce",
            Switch::Flag(false) => "off",
            Switch::Text(text) => text,
        }
    }
}

/// Largest secret a `${file:…}` reference reads.
pub const MAX_SECRET_FILE: u64 = 64 * 1024;
/// Largest file the configuration names (itself, JWKS, policies, CA bundles).
pub const MAX_CONFIG_FILE: u64 = 4 * 1024 * 1024;

/// Reads a file the configuration names, safely against hostile paths: it must be a regular
/// file (a FIFO, a device like `/dev/zero` or a directory is refused without blocking: the open
/// itself is non-blocking) of at most `max` bytes. `warden check` runs on submitted configs in
/// CI, so no path may hang it or exhaust its memory.
pub fn read_file(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > max {
        return Err(std::io::Error::other(format!("larger than {max} bytes")));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // The size can grow between the check and the read: never read past the cap.
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::other(format!("larger than {max} bytes")));
    }
    Ok(bytes)
}

/// [`read_file`] as UTF-8 text.
pub fn read_text(path: &Path, max: u64) -> std::io::Result<String> {
    String::from_utf8(read_file(path, max)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// What every error message shows in place of a value that came from a secret reference.
pub const HIDDEN: &str = "[the value of a secret reference]";

/// Hides every resolved secret in `errors`, whatever message (structural or semantic) might
/// have quoted it: the last line of defence behind [`Compiler::quoted`].
pub fn scrub(errors: &mut [ConfigError], secrets: &[String]) {
    for error in errors {
        for secret in secrets {
            // A message may quote the value with `{:?}`, which escapes `"`, `\` and controls.
            let quoted = format!("{secret:?}");
            let escaped = &quoted[1..quoted.len() - 1];
            if secret.chars().count() < 4 {
                // Very short values would mangle unrelated words; hidden where quoted.
                error.message = error.message.replace(&quoted, HIDDEN);
                continue;
            }
            for form in [secret.as_str(), escaped] {
                if error.message.contains(form) {
                    error.message = error.message.replace(form, HIDDEN);
                }
            }
        }
    }
}

/// Collects every problem of one compilation, with its path, and parses the shared scalar
/// forms. Each section's compile function takes it and reports into it; none stops at the first
/// error, so `warden check` lists everything at once.
#[derive(Debug)]
pub struct Compiler {
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
    /// How many of `errors` are structural (from deserializing the file).
    structural: usize,
    secret_paths: Vec<String>,
    base_dir: Option<PathBuf>,
    /// Every file read, with the path that named it (for reloads: what to watch, what changed).
    files: Vec<super::definitions::FileRead>,
}

impl Compiler {
    /// Starts from the structural errors of a parsed file, the paths whose value came from a
    /// secret reference, and the directory relative file names are resolved against.
    pub fn new(
        errors: Vec<ConfigError>,
        secret_paths: Vec<String>,
        base_dir: Option<PathBuf>,
    ) -> Self {
        Compiler {
            structural: errors.len(),
            errors,
            warnings: Vec::new(),
            secret_paths,
            base_dir,
            files: Vec::new(),
        }
    }

    /// The files read so far, with the paths that named them.
    pub fn take_files(&mut self) -> Vec<super::definitions::FileRead> {
        std::mem::take(&mut self.files)
    }

    /// Every problem reported, and every warning.
    pub fn finish(self) -> (Vec<ConfigError>, Vec<ConfigError>) {
        (self.errors, self.warnings)
    }

    /// Every problem reported so far.
    #[cfg(test)]
    pub fn into_errors(self) -> Vec<ConfigError> {
        self.errors
    }

    /// Reports something valid but probably not meant (`warden check` prints it, `serve` logs it).
    pub fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(ConfigError::new(path, message));
    }

    /// Whether the file's `section` failed to deserialize (it was left at its default, so it
    /// must not also be reported as missing).
    pub fn section_failed(&self, section: &str) -> bool {
        self.errors[..self.structural]
            .iter()
            .any(|e| e.path.starts_with(section))
    }

    /// How many problems are reported: pair with [`Compiler::failed_since`] to tell whether a
    /// part compiled cleanly.
    pub fn checkpoint(&self) -> usize {
        self.errors.len()
    }

    /// Whether a problem was reported after `checkpoint`.
    pub fn failed_since(&self, checkpoint: usize) -> bool {
        self.errors.len() > checkpoint
    }

    /// Whether a problem is already reported at `path` (so follow-on checks stay quiet).
    pub fn has_error(&self, path: &str) -> bool {
        self.errors.iter().any(|e| e.path == path)
    }

    /// Whether the value at `path` came from a `${env:…}` / `${file:…}` reference.
    pub fn is_secret(&self, path: &str) -> bool {
        self.secret_paths.iter().any(|p| p == path)
    }

    /// Reports a problem at `path`.
    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }

    /// `text` quoted for an error message, unless it came from a secret reference: a value that
    /// fails validation must not print the secret it resolved to.
    pub fn quoted(&self, path: &str, text: &str) -> String {
        if self.is_secret(path) {
            HIDDEN.to_owned()
        } else {
            format!("{text:?}")
        }
    }

    fn shown(&self, path: &str, value: Option<&Scalar>) -> String {
        match value {
            Some(Scalar::Int(n)) => n.to_string(),
            Some(Scalar::Text(t)) => self.quoted(path, t),
            None => "nothing".into(),
        }
    }

    /// One word of a fixed set; anything else is reported as "expected a, b or c, got …".
    pub fn choose<T: Copy>(&mut self, path: &str, word: &str, options: &[(&str, T)]) -> Option<T> {
        if let Some((_, value)) = options.iter().find(|(name, _)| *name == word) {
            return Some(*value);
        }
        let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
        let expected = match names.split_last() {
            Some((last, [])) => (*last).to_owned(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        let shown = self.quoted(path, word);
        self.error(path, format!("expected {expected}, got {shown}"));
        None
    }

    /// [`Compiler::choose`] with `default` for an absent word and after a reported error.
    pub fn choice<T: Copy>(
        &mut self,
        path: &str,
        word: Option<&str>,
        options: &[(&str, T)],
        default: T,
    ) -> T {
        match word {
            None => default,
            Some(word) => self.choose(path, word, options).unwrap_or(default),
        }
    }

    /// A socket address (`default` when absent).
    pub fn addr(&mut self, path: &str, value: Option<&str>, default: &str) -> SocketAddr {
        let text = value.unwrap_or(default);
        text.parse().unwrap_or_else(|_| {
            self.error(
                path,
                format!(
                    "expected an address like 127.0.0.1:8080, got {}",
                    self.quoted(path, text)
                ),
            );
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }

    /// A positive duration: `30s`, `5m`, `1h` or a number of seconds.
    pub fn duration(&mut self, path: &str, value: Option<&Scalar>, default: Duration) -> Duration {
        let parsed = match value {
            None => return default,
            Some(Scalar::Int(secs)) => Some(Duration::from_secs(*secs)),
            Some(Scalar::Text(text)) => humantime::parse_duration(text.trim()).ok(),
        };
        match parsed {
            Some(d) if !d.is_zero() => d,
            _ => {
                self.error(
                    path,
                    format!(
                        "expected a positive duration like 30s, 5m or 1h, got {}",
                        self.shown(path, value)
                    ),
                );
                default
            }
        }
    }

    /// A positive size: `16KiB`, `10MiB` or a number of bytes.
    pub fn size(&mut self, path: &str, value: Option<&Scalar>, default: u64) -> u64 {
        let parsed = match value {
            None => return default,
            Some(Scalar::Int(bytes)) => Some(*bytes),
            Some(Scalar::Text(text)) => text
                .trim()
                .parse::<bytesize::ByteSize>()
                .ok()
                .map(|b| b.as_u64()),
        };
        match parsed {
            Some(b) if b > 0 => b,
            _ => {
                self.error(
                    path,
                    format!(
                        "expected a positive size like 16KiB or 10MiB, got {}",
                        self.shown(path, value)
                    ),
                );
                default
            }
        }
    }

    /// A count of at least one (`default` when absent).
    pub fn count(&mut self, path: &str, value: Option<u64>, default: usize) -> usize {
        match value {
            None => default,
            Some(0) => {
                self.error(path, "must be at least 1");
                default
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        }
    }

    /// A header name.
    pub fn header_name(&mut self, path: &str, name: &str) -> Option<HeaderName> {
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| {
                let shown = self.quoted(path, name);
                self.error(path, format!("invalid header name {shown}"))
            })
            .ok()
    }

    /// A method the gateway proxies (any case; never `CONNECT` or `TRACE`).
    pub fn method(&mut self, path: &str, name: &str) -> Option<Method> {
        let upper = name.to_ascii_uppercase();
        match Method::from_bytes(upper.as_bytes()) {
            Ok(m) if m != Method::CONNECT && m != Method::TRACE => Some(m),
            Ok(_) => {
                self.error(path, format!("method {upper} is not proxied"));
                None
            }
            Err(_) => {
                self.error(path, format!("invalid method {name:?}"));
                None
            }
        }
    }

    /// A checking interval: `0` turns it off (`None`), absent is `default`.
    pub fn interval_or_off(
        &mut self,
        path: &str,
        value: Option<&Scalar>,
        default: Duration,
    ) -> Option<Duration> {
        match value {
            Some(Scalar::Int(0)) => None,
            Some(Scalar::Text(text)) if text.trim() == "0" => None,
            value => Some(self.duration(path, value, default)),
        }
    }

    /// The directory relative file names are resolved against.
    pub fn base_dir(&self) -> Option<&Path> {
        self.base_dir.as_deref()
    }

    /// A file name from the configuration, relative to the configuration file's directory.
    pub fn resolve(&self, file: &str) -> PathBuf {
        let path = Path::new(file);
        match &self.base_dir {
            Some(base) if path.is_relative() => base.join(path),
            _ => path.to_path_buf(),
        }
    }

    /// Reads the file named at `path` (see [`read_file`]); a failure is reported there.
    pub fn read(&mut self, path: &str, file: &str) -> Option<(PathBuf, Vec<u8>)> {
        let resolved = self.resolve(file);
        match read_file(&resolved, MAX_CONFIG_FILE) {
            Ok(bytes) => {
                self.files
                    .push(super::definitions::FileRead::new(path, &resolved, &bytes));
                Some((resolved, bytes))
            }
            Err(e) => {
                self.error(path, format!("cannot read {}: {e}", resolved.display()));
                None
            }
        }
    }

    /// [`Compiler::read`] as UTF-8 text.
    pub fn read_text(&mut self, path: &str, file: &str) -> Option<(PathBuf, String)> {
        let resolved = self.resolve(file);
        match read_text(&resolved, MAX_CONFIG_FILE) {
            Ok(text) => {
                self.files.push(super::definitions::FileRead::new(
                    path,
                    &resolved,
                    text.as_bytes(),
                ));
                Some((resolved, text))
            }
            Err(e) => {
                self.error(path, format!("cannot read {}: {e}", resolved.display()));
                None
            }
        }
    }
}

/// Seconds, for defaults.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_names_every_option_and_hides_secrets() {
        let mut c = Compiler::new(Vec::new(), vec!["b".into()], None);
        let options = [("x", 1), ("y", 2), ("z", 3)];
        assert_eq!(c.choice("a", Some("y"), &options, 0), 2);
        assert_eq!(c.choice("a", None, &options, 9), 9);
        assert_eq!(c.choice("a", Some("w"), &options, 9), 9);
        assert_eq!(c.choose("b", "s3cr3t", &[("only", ())]), None);
        let errors = c.into_errors();
        assert_eq!(errors[0].to_string(), "a: expected x, y or z, got \"w\"");
        assert_eq!(
            errors[1].to_string(),
            format!("b: expected only, got {HIDDEN}")
        );
    }
}
