//! `warden audit tail`: the last events of an audit file that match a filter, one readable
//! line each (or the JSON records themselves), and with `--follow` the ones appended after.
//!
//! The file is read line by line and only the last N matches are kept, so a trail of any size
//! is tailed in bounded memory. Lines that are not records (a line cut by a crash) are skipped.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;

/// Which events to show.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// `event.outcome` (`success`, `failure`, `unknown`).
    pub outcome: Option<String>,
    /// `event.action` (`request`, `authentication-failure`, …).
    pub action: Option<String>,
    /// `user.id`.
    pub subject: Option<String>,
    /// `organization.id`.
    pub tenant: Option<String>,
    /// `warden.route`.
    pub route: Option<String>,
    /// Events at or after this time.
    pub since: Option<SystemTime>,
}

impl Filter {
    /// Whether `event` passes.
    pub fn matches(&self, event: &Value) -> bool {
        let is = |pointer: &str, wanted: &Option<String>| match wanted {
            None => true,
            Some(wanted) => event.pointer(pointer).and_then(Value::as_str) == Some(wanted),
        };
        let recent = match self.since {
            None => true,
            Some(since) => event
                .get("@timestamp")
                .and_then(Value::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| SystemTime::from(t) >= since),
        };
        recent
            && is("/event/outcome", &self.outcome)
            && is("/event/action", &self.action)
            && is("/user/id", &self.subject)
            && is("/organization/id", &self.tenant)
            && is("/warden/route", &self.route)
    }
}

/// `--since`: a duration back from now (`15m`, `2h`) or an RFC 3339 time.
pub fn parse_since(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(time.into());
    }
    humantime::parse_duration(text)
        .map(|ago| now.checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH))
        .map_err(|_| {
            format!("--since: expected a duration like 15m or an RFC 3339 time, got {text:?}")
        })
}

/// One event as a line: time, action, outcome and reason, then what says which request and
/// whose.
pub fn render(event: &Value) -> String {
    let text = |pointer: &str| event.pointer(pointer).and_then(Value::as_str);
    let mut line = String::with_capacity(160);
    let _ = write!(
        line,
        "{}  {:<22} {}",
        text("/@timestamp").unwrap_or("-"),
        text("/event/action").unwrap_or("-"),
        text("/event/outcome").unwrap_or("-"),
    );
    if let Some(reason) = text("/event/reason") {
        let _ = write!(line, " ({reason})");
    }
    match (text("/http/request/method"), text("/url/path")) {
        (Some(method), Some(path)) => {
            let _ = write!(line, "  {method} {path}");
        }
        (None, Some(path)) => {
            let _ = write!(line, "  {path}");
        }
        _ => {}
    }
    if let Some(status) = event
        .pointer("/http/response/status_code")
        .and_then(Value::as_u64)
    {
        let _ = write!(line, " {status}");
    }
    for (label, pointer) in [
        ("user", "/user/id"),
        ("tenant", "/organization/id"),
        ("route", "/warden/route"),
        ("ip", "/source/ip"),
        ("key", "/warden/key/id"),
        ("limit", "/warden/rate_limit/limit"),
        ("rule", "/warden/authz/rule"),
        ("provider", "/warden/jwks/provider"),
        ("config", "/warden/config/sha256"),
        ("request", "/warden/request_id"),
    ] {
        if let Some(value) = text(pointer) {
            let _ = write!(line, "  {label}={value}");
        }
    }
    line
}

/// Writes the last `count` events of `path` that pass `filter` to `out` (as JSON when `json`),
/// then, with `follow`, the matching events appended later, until the process is stopped.
pub fn tail(
    path: &Path,
    filter: &Filter,
    count: usize,
    json: bool,
    follow: bool,
    out: &mut dyn Write,
) -> io::Result<()> {
    let file = std::fs::File::open(path)?;
    let mut identity = file_id(&file.metadata()?);
    let mut reader = BufReader::new(file);
    let mut last: VecDeque<(String, Value)> = VecDeque::with_capacity(count.min(4096));
    let mut line = String::new();
    let mut offset = 0u64;
    loop {
        line.clear();
        let read = reader.read_line(&mut line)?;
        // Only complete lines: a record being written is read once it ends.
        if read == 0 || !line.ends_with('\n') {
            break;
        }
        offset += read as u64;
        if let Some(event) = parse(&line)
            && filter.matches(&event)
        {
            if last.len() == count {
                last.pop_front();
            }
            if count > 0 {
                last.push_back((line.trim_end().to_owned(), event));
            }
        }
    }
    for (text, event) in &last {
        show(out, text, event, json)?;
    }
    out.flush()?;
    if !follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let mut file = match std::fs::File::open(path) {
            Ok(file) => file,
            // Between a rotation's move and the new file's creation.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let len = meta.len();
        if file_id(&meta) != identity || len < offset {
            // Rotated or truncated: the new file from its start.
            identity = file_id(&meta);
            offset = 0;
        }
        file.seek(SeekFrom::Start(offset))?;
        let mut appended = String::new();
        file.take(len - offset).read_to_string(&mut appended)?;
        let complete = appended.rfind('\n').map_or(0, |i| i + 1);
        offset += complete as u64;
        for text in appended[..complete].lines() {
            if let Some(event) = parse(text)
                && filter.matches(&event)
            {
                show(out, text, &event, json)?;
            }
        }
        out.flush()?;
    }
}

/// Which file a path names now (a rotation replaces it).
#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn file_id(_meta: &std::fs::Metadata) -> u64 {
    0
}

fn parse(line: &str) -> Option<Value> {
    serde_json::from_str::<Value>(line)
        .ok()
        .filter(Value::is_object)
}

fn show(out: &mut dyn Write, text: &str, event: &Value, json: bool) -> io::Result<()> {
    if json {
        writeln!(out, "{text}")
    } else {
        writeln!(out, "{}", render(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(time: &str, action: &str, outcome: &str, user: Option<&str>) -> Value {
        let mut event = serde_json::json!({
            "@timestamp": time,
            "event": { "action": action, "outcome": outcome },
            "http": { "request": { "method": "GET" }, "response": { "status_code": 403 } },
            "url": { "path": "/admin" },
            "warden": { "route": "admin" },
        });
        if let Some(user) = user {
            event["user"] = serde_json::json!({ "id": user });
        }
        event
    }

    #[test]
    fn filters_combine_and_since_reads_durations_and_times() {
        let now = SystemTime::from(
            chrono::DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z").expect("time"),
        );
        let recent = event(
            "2026-12-03T09:50:00.000Z",
            "request",
            "failure",
            Some("vera"),
        );
        let old = event(
            "2026-12-03T08:00:00.000Z",
            "request",
            "failure",
            Some("vera"),
        );
        let filter = Filter {
            outcome: Some("failure".into()),
            subject: Some("vera".into()),
            since: Some(parse_since("15m", now).expect("duration")),
            ..Filter::default()
        };
        assert!(filter.matches(&recent));
        assert!(!filter.matches(&old));
        let other = Filter {
            subject: Some("carl".into()),
            ..Filter::default()
        };
        assert!(!other.matches(&recent));
        assert_eq!(
            parse_since("2026-12-03T09:00:00Z", now).expect("time"),
            now - Duration::from_secs(3600)
        );
        assert!(parse_since("yesterday-ish", now).is_err());
    }

    #[test]
    fn a_line_says_what_when_and_whose() {
        let line = render(&event(
            "2026-12-03T09:50:00.000Z",
            "request",
            "failure",
            Some("vera"),
        ));
        assert_eq!(
            line,
            "2026-12-03T09:50:00.000Z  request                failure  GET /admin 403  user=vera  route=admin"
        );
    }

    #[test]
    fn the_last_matches_are_kept_and_cut_lines_skipped() {
        let path = std::env::temp_dir().join(format!("warden-tail-{}.jsonl", std::process::id()));
        let mut text = String::new();
        for n in 0..50 {
            let user = format!("u{n}");
            let outcome = if n % 2 == 0 { "success" } else { "failure" };
            text.push_str(
                &event("2026-12-03T09:50:00.000Z", "request", outcome, Some(&user)).to_string(),
            );
            text.push('\n');
        }
        text.push_str("{\"@timestamp\":\"2026");
        std::fs::write(&path, text).expect("write");
        let filter = Filter {
            outcome: Some("failure".into()),
            ..Filter::default()
        };
        let mut out = Vec::new();
        tail(&path, &filter, 3, false, false, &mut out).expect("tail");
        let shown = String::from_utf8(out).expect("utf-8");
        let users: Vec<&str> = shown
            .lines()
            .filter_map(|l| l.split("user=").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .collect();
        assert_eq!(users, ["u45", "u47", "u49"]);
        let mut out = Vec::new();
        tail(&path, &filter, 1, true, false, &mut out).expect("tail");
        let record: Value = serde_json::from_slice(&out).expect("the record itself");
        assert_eq!(record.pointer("/user/id"), Some(&"u49".into()));
        let _ = std::fs::remove_file(&path);
    }
}
