//! The config file a node reads at start and again on SIGHUP, and what
//! became of the last reload: `/readyz` and `/metrics` show it.
//!
//! A reload that finds the file as it was last read changes nothing, so a
//! SIGHUP sent for another reason (a new TLS certificate) does not wipe a
//! runtime edit made with `PUT /v1/config`, on this node or in the cluster.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;
use serde_json::{json, Value};

use super::{hex, Config, ConfigError};

/// Why the config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// It could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not a valid config.
    #[error("invalid config {path}:\n{source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem, with its line.
        source: ConfigError,
    },
}

impl LoadError {
    /// One line per problem, for logs.
    pub fn lines(&self) -> Vec<String> {
        match self {
            LoadError::Read { .. } => vec![self.to_string()],
            LoadError::Invalid { path, source } => source
                .problems
                .iter()
                .map(|problem| format!("{}:{problem}", path.display()))
                .collect(),
        }
    }
}

/// What a reload did.
#[derive(Debug)]
pub enum Reloaded {
    /// The file changed: run this config (boxed: a config is large, the
    /// other outcomes small).
    Changed(Box<Config>),
    /// The file is as it was last read; nothing to do.
    Unchanged,
    /// weir runs the built-in config; there is no file to read.
    NoFile,
    /// The file could not be used; the running config stays.
    Failed(LoadError),
}

/// The last reload, as `/readyz` shows it.
#[derive(Debug, Clone, Serialize)]
struct LastReload {
    /// `reloaded`, `unchanged` or `failed`.
    result: &'static str,
    /// When, Unix ms.
    at_ms: u64,
    /// For a failure: every problem, one per entry.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<String>,
}

#[derive(Debug)]
struct State {
    /// The fingerprint of the file as last read.
    read: u64,
    failures: u64,
    last: Option<LastReload>,
}

/// The config file of one node (or the built-in config when there is none).
#[derive(Debug)]
pub struct ConfigSource {
    path: Option<PathBuf>,
    state: Mutex<State>,
}

impl ConfigSource {
    /// Reads the config at `path`, or takes the built-in one without a path.
    ///
    /// # Errors
    /// [`LoadError`] when the file cannot be read or is not a valid config.
    pub fn open(path: Option<PathBuf>) -> Result<(Self, Config), LoadError> {
        let config = match path.as_deref() {
            Some(path) => read(path)?,
            None => Config::builtin(),
        };
        Ok((Self::read_from(path, &config), config))
    }

    /// A source for an engine built from `config` in code: no file.
    pub fn none(config: &Config) -> Self {
        Self::read_from(None, config)
    }

    /// The source at `path` (if any), from which `config` was just read.
    fn read_from(path: Option<PathBuf>, config: &Config) -> Self {
        Self {
            path,
            state: Mutex::new(State {
                read: config.fingerprint,
                failures: 0,
                last: None,
            }),
        }
    }

    /// The file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is a whole-field assignment.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the file again (SIGHUP) at `now_ms`, Unix ms.
    pub fn reload(&self, now_ms: u64) -> Reloaded {
        let Some(path) = self.path.as_deref() else {
            return Reloaded::NoFile;
        };
        let outcome = read(path);
        let mut state = self.state();
        let (result, problems, reloaded) = match outcome {
            Ok(config) if config.fingerprint == state.read => ("unchanged", Vec::new(), Reloaded::Unchanged),
            Ok(config) => {
                state.read = config.fingerprint;
                ("reloaded", Vec::new(), Reloaded::Changed(Box::new(config)))
            }
            Err(error) => {
                state.failures += 1;
                ("failed", error.lines(), Reloaded::Failed(error))
            }
        };
        state.last = Some(LastReload {
            result,
            at_ms: now_ms,
            problems,
        });
        reloaded
    }

    /// Reloads that failed since the start.
    pub fn failures(&self) -> u64 {
        self.state().failures
    }

    /// What `/readyz` shows: the file, the fingerprint of what was last read
    /// from it, and the last reload.
    pub fn describe(&self) -> Value {
        let state = self.state();
        json!({
            "file": self.path.as_ref().map(|p| p.display().to_string()),
            "file_fingerprint": hex(state.read),
            "reload_failures": state.failures,
            "last_reload": state.last,
        })
    }
}

fn read(path: &Path) -> Result<Config, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    Config::parse(&text).map_err(|source| LoadError::Invalid {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fingerprint;

    const A: &str = "[policies.p]\nkey = [\"user\"]\ndefault_tier = \"t\"\n[policies.p.tiers.t]\nlimits = [{ algorithm = \"sliding_window\", rate = \"1/m\" }]\n";

    #[test]
    fn a_reload_tells_an_unchanged_file_from_a_changed_and_a_broken_one() {
        let dir = std::env::temp_dir().join(format!("weir-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("weir.toml");
        std::fs::write(&path, A).unwrap();
        let (source, config) = ConfigSource::open(Some(path.clone())).unwrap();
        assert_eq!(config.fingerprint, fingerprint(A));
        assert!(matches!(source.reload(1), Reloaded::Unchanged));
        std::fs::write(&path, A.replace("1/m", "2/m")).unwrap();
        assert!(matches!(source.reload(2), Reloaded::Changed(c) if c.source.contains("2/m")));
        assert!(matches!(source.reload(3), Reloaded::Unchanged));
        let broken = A
            .replace("default_tier = \"t\"", "default_tier = \"gold\"")
            .replace("1/m", "1/forever");
        std::fs::write(&path, broken).unwrap();
        let Reloaded::Failed(error) = source.reload(4) else {
            panic!("a broken file is a failed reload");
        };
        assert!(
            error.lines().len() >= 2,
            "one line per problem: {:?}",
            error.lines()
        );
        assert_eq!(source.failures(), 1);
        let shown = source.describe();
        assert_eq!(shown["last_reload"]["result"], "failed");
        assert_eq!(
            shown["last_reload"]["problems"].as_array().unwrap().len(),
            error.lines().len()
        );
        assert_eq!(
            shown["file_fingerprint"],
            hex(fingerprint(&A.replace("1/m", "2/m")))
        );
    }
}
