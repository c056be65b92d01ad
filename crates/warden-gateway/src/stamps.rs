//! Whether files changed since they were last read, as far as `stat` tells: size,
//! modification time and inode, following symlinks (a Kubernetes secret's symlink swap
//! counts). The certificate and configuration watchers compare these; each takes a file's
//! stamp *before* reading it, so a write during a reload is never missed.

use std::path::Path;
use std::time::SystemTime;

/// A file's identity and version, as far as `stat` tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

/// Each file's stamp (`None`: it cannot be read).
pub fn stamps<P: AsRef<Path>>(files: &[P]) -> Vec<Option<Stamp>> {
    files
        .iter()
        .map(|file| {
            let meta = std::fs::metadata(file.as_ref()).ok()?;
            #[cfg(unix)]
            let inode = std::os::unix::fs::MetadataExt::ino(&meta);
            #[cfg(not(unix))]
            let inode = 0;
            Some(Stamp {
                len: meta.len(),
                modified: meta.modified().ok(),
                inode,
            })
        })
        .collect()
}
