//! Repository conventions, checked by `cargo xtask tidy` and by this crate's tests.

use std::path::Path;

/// `cargo xtask tidy`: prints the problems, fails when there are any.
pub fn task() -> anyhow::Result<()> {
    let problems = check(&crate::workspace_root());
    for p in &problems {
        eprintln!("tidy: {p}");
    }
    anyhow::ensure!(problems.is_empty(), "{} tidy problem(s)", problems.len());
    eprintln!("tidy: ok");
    Ok(())
}

/// Returns one line per violated convention.
pub fn check(root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let Ok(entries) = std::fs::read_dir(root.join("crates")) else {
        return vec!["no crates/ folder".into()];
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        for required in ["README.md", "src/error.rs", "src/lib.rs", "Cargo.toml"] {
            if !dir.join(required).is_file() {
                problems.push(format!("crates/{name}: missing {required}"));
            }
        }
        if let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml"))
            && !manifest.contains("[lints]\nworkspace = true")
        {
            problems.push(format!("crates/{name}/Cargo.toml: add `[lints] workspace = true`"));
        }
        // Libraries return typed errors (thiserror); anyhow is for the program and xtask.
        if let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml"))
            && let Some(deps) = manifest.split("[dependencies]").nth(1)
            && deps.split("\n[").next().unwrap_or_default().lines().any(|l| l.trim_start().starts_with("anyhow"))
        {
            problems.push(format!("crates/{name}/Cargo.toml: a library depends on anyhow; return its own error type"));
        }
        scan_sources(&dir.join("src"), &name, &mut problems);
    }
    problems.sort();
    problems
}

/// Library code logs through `tracing`, never prints.
fn scan_sources(dir: &Path, krate: &str, problems: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            scan_sources(&path, krate, problems);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            // Stop at the unit-test module: tests may print.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for (i, line) in code.lines().enumerate() {
                let l = line.trim_start();
                if !l.starts_with("//") && (l.contains("println!(") || l.contains("eprintln!(") || l.contains("dbg!("))
                {
                    problems.push(format!("crates/{krate}: {}:{}: printing in library code", path.display(), i + 1));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn workspace_is_tidy() {
        let problems = super::check(&crate::workspace_root());
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
