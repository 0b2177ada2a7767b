//! The file store: one file, replaced whole.
//!
//! A save writes `<path>.tmp`, flushes it to disk, and renames it over
//! `<path>`: the rename is the pointer switch. A crash mid-write leaves a
//! partial `.tmp` and the last good file untouched. The file is the frames
//! back to back, each behind its length (u32, little-endian), the manifest
//! first.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::format::{FormatError, MAX_FRAME};
use super::{StoreError, Stored};

/// A snapshot file.
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// The store at `path`.
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    fn temporary(&self) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(".tmp");
        PathBuf::from(name)
    }

    /// Whether a snapshot file is there.
    pub fn present(&self) -> Result<bool, StoreError> {
        self.path.try_exists().map_err(|e| io_error(&self.path, e))
    }

    /// Reads the snapshot, `None` if there is none.
    pub fn load(&self) -> Result<Option<Stored>, StoreError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_error(&self.path, error)),
        };
        split(&bytes).map(Some).map_err(StoreError::Format)
    }

    /// Writes `frames` (the manifest first) as the new snapshot.
    pub fn save(&self, manifest: &[u8], chunks: &[Vec<u8>]) -> Result<(), StoreError> {
        let temporary = self.temporary();
        let written = (|| {
            let mut file = std::io::BufWriter::new(std::fs::File::create(&temporary)?);
            for frame in std::iter::once(manifest).chain(chunks.iter().map(Vec::as_slice)) {
                file.write_all(&(frame.len() as u32).to_le_bytes())?;
                file.write_all(frame)?;
            }
            let file = file.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            std::fs::rename(&temporary, &self.path)?;
            sync_directory(&self.path)
        })();
        written.map_err(|e| io_error(&self.path, e))
    }
}

/// Makes the rename durable: flushes the directory that holds `path`.
fn sync_directory(path: &Path) -> std::io::Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::File::open(directory)?.sync_all()
}

fn io_error(path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Unreachable(format!("{}: {error}", path.display()))
}

/// Cuts a file back into its frames.
fn split(mut bytes: &[u8]) -> Result<Stored, FormatError> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let Some((length, rest)) = bytes.split_first_chunk::<4>() else {
            return Err(FormatError::Corrupt("truncated frame length".into()));
        };
        let length = u32::from_le_bytes(*length) as usize;
        if length > MAX_FRAME || length > rest.len() {
            return Err(FormatError::Corrupt("truncated or oversized frame".into()));
        }
        frames.push(rest[..length].to_vec());
        bytes = &rest[length..];
    }
    if frames.is_empty() {
        return Err(FormatError::Corrupt("empty file".into()));
    }
    let manifest = frames.remove(0);
    Ok(Stored {
        manifest,
        chunks: frames,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str) -> FileStore {
        let dir = std::env::temp_dir().join(format!("weir-snapshot-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("weir.snapshot");
        let _ = std::fs::remove_file(&path);
        FileStore::new(path)
    }

    #[test]
    fn saves_replace_the_file_whole_and_read_back() {
        let store = store("replace");
        assert_eq!(store.load().unwrap(), None);
        assert!(!store.present().unwrap());
        store
            .save(b"manifest-1", &[b"a".to_vec(), b"bb".to_vec()])
            .unwrap();
        store.save(b"manifest-2", &[b"c".to_vec()]).unwrap();
        let stored = store.load().unwrap().unwrap();
        assert_eq!(stored.manifest, b"manifest-2");
        assert_eq!(stored.chunks, vec![b"c".to_vec()]);
        assert!(!store.temporary().exists());
    }

    #[test]
    fn a_truncated_file_is_corrupt_not_empty() {
        let store = store("truncated");
        store.save(b"manifest", &[vec![7; 100]]).unwrap();
        let bytes = std::fs::read(&store.path).unwrap();
        std::fs::write(&store.path, &bytes[..bytes.len() - 10]).unwrap();
        assert!(matches!(
            store.load(),
            Err(StoreError::Format(FormatError::Corrupt(_)))
        ));
    }
}
