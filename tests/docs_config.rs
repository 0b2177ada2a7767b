//! Every TOML block in the README and docs/ passes `weir check-config` as
//! written. A block that defines policies is a whole config and is checked
//! alone; one that does not (an `[alerts]` section, say) is what the text
//! says to put into the built-in config, and is checked there in place of
//! the built-in section it replaces.

use std::path::{Path, PathBuf};
use std::process::Command;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A fenced TOML block: where it starts and its text.
struct Block {
    file: PathBuf,
    line: usize,
    text: String,
}

fn toml_blocks(file: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (number, line) in text.lines().enumerate() {
        match (&mut open, line.trim_start()) {
            (None, "```toml") => open = Some((number + 1, String::new())),
            (Some((start, body)), "```") => {
                blocks.push(Block {
                    file: file.to_owned(),
                    line: *start,
                    text: std::mem::take(body),
                });
                open = None;
            }
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// The built-in config with its top-level `section` (from its header to the
/// next top-level table of another name, or the end) replaced by `block`.
fn builtin_with(section: &str, block: &str) -> String {
    let builtin = weir::config::DEFAULT_CONFIG;
    let mut kept = String::new();
    let mut inside = false;
    for line in builtin.lines() {
        if line.starts_with('[') {
            inside = table_name(line) == section;
        }
        if !inside {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    format!("{kept}\n{block}")
}

/// The top-level table a header line opens: `alerts` for `[[alerts.rules]]`.
fn table_name(line: &str) -> &str {
    line.trim_start_matches('[')
        .split(['.', ']'])
        .next()
        .unwrap_or_default()
}

/// Runs the real `weir check-config` on `text`; its output when it fails.
fn check_config(text: &str, name: &str) -> Result<(), String> {
    let path = std::env::temp_dir().join(format!("weir-docs-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    match output.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&output.stderr).into_owned()),
    }
}

#[test]
fn every_config_block_in_the_readme_and_docs_passes_check_config() {
    let mut files = vec![Path::new(REPO).join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(Path::new(REPO).join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let blocks: Vec<Block> = files.iter().flat_map(|f| toml_blocks(f)).collect();
    assert!(blocks.len() >= 3, "the README's and alerts.md's blocks at least");
    let mut failures = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let whole = block.text.contains("[policies.");
        let checked = match whole {
            true => block.text.clone(),
            false => {
                let first = block
                    .text
                    .lines()
                    .find(|l| l.starts_with('['))
                    .unwrap_or_default();
                builtin_with(table_name(first), &block.text)
            }
        };
        if let Err(problems) = check_config(&checked, &i.to_string()) {
            let place = format!("{}:{}", block.file.display(), block.line);
            failures.push(format!("{place} (whole config: {whole}):\n{problems}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
