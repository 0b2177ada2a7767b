//! Where a node's keyring comes from (secrets given at start, then the
//! lines of a secret file), and its reload on a running node: SIGHUP or
//! `POST /v1/cluster/keyring`. A secret the new keyring drops is still
//! accepted for the grace period (`--cluster-secret-grace`), so that a
//! rotation needs no step in which nodes that have not reloaded yet are cut
//! off; then it is refused.

use std::path::PathBuf;

/// The sources of a keyring, read at start and again on each reload.
#[derive(Clone, Default)]
pub struct KeyringSource {
    /// Secrets given on the command line, first in the ring.
    pub given: Vec<Vec<u8>>,
    /// A file of secrets, one per line (blank lines and `#` comments
    /// skipped), after the given ones.
    pub file: Option<PathBuf>,
}

impl std::fmt::Debug for KeyringSource {
    /// The secrets themselves are never shown: their count only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyringSource")
            .field("given", &self.given.len())
            .field("file", &self.file)
            .finish()
    }
}

impl KeyringSource {
    /// A keyring of `secrets` alone, with no file.
    pub fn given(secrets: Vec<Vec<u8>>) -> Self {
        Self {
            given: secrets,
            file: None,
        }
    }

    /// The keyring now: the given secrets, then the file's.
    ///
    /// # Errors
    /// A file that cannot be read, or a file that leaves the keyring
    /// without any secret.
    pub fn read(&self) -> Result<Vec<Vec<u8>>, String> {
        let mut secrets = self.given.clone();
        if let Some(path) = &self.file {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            let lines = text.lines().map(str::trim);
            secrets.extend(
                lines
                    .filter(|line| !line.is_empty() && !line.starts_with('#'))
                    .map(|line| line.as_bytes().to_vec()),
            );
            if secrets.is_empty() {
                return Err(format!("{} holds no secret", path.display()));
            }
        }
        Ok(secrets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_given_secrets_come_first_then_the_files_lines() {
        let path = std::env::temp_dir().join(format!("weir-keyring-{}", std::process::id()));
        std::fs::write(
            &path,
            "# rotated on 2026-12-05\n\nsecond-secret-0000\n  third-secret-00000  \n",
        )
        .unwrap();
        let source = KeyringSource {
            given: vec![b"first-secret-00000".to_vec()],
            file: Some(path.clone()),
        };
        let read = source.read().unwrap();
        let read: Vec<&[u8]> = read.iter().map(Vec::as_slice).collect();
        assert_eq!(
            read,
            [
                &b"first-secret-00000"[..],
                b"second-secret-0000",
                b"third-secret-00000"
            ]
        );
        assert!(!format!("{source:?}").contains("secret-0"), "never shown");
        std::fs::write(&path, "# nothing\n").unwrap();
        let empty = KeyringSource {
            given: Vec::new(),
            file: Some(path.clone()),
        };
        assert!(empty.read().unwrap_err().contains("holds no secret"));
        let _ = std::fs::remove_file(&path);
        assert!(empty.read().unwrap_err().starts_with("reading "));
    }
}
