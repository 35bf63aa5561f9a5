//! Running the `resa` program (release build) with the cargo features a task asks for.

use crate::workspace_root;

/// Splits cargo feature flags off a task's arguments: `--features x`, `--features=x`,
/// `-F x` and `-Fx`, repeated or comma-separated. Returns (features, the other arguments in
/// order). `--` ends the search: what follows goes to `resa` untouched.
pub fn split_features(args: &[String]) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let mut features = Vec::new();
    let mut rest = Vec::new();
    let mut i = 0;
    let push = |list: &str, features: &mut Vec<String>| {
        features.extend(list.split([',', ' ']).filter(|f| !f.is_empty()).map(str::to_string));
    };
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--" {
            rest.extend(args[i..].iter().cloned());
            break;
        }
        if a == "--features" || a == "-F" {
            let Some(list) = args.get(i + 1) else {
                anyhow::bail!("`{a}` needs a feature list (for example `{a} cuda`)");
            };
            push(list, &mut features);
            i += 2;
            continue;
        }
        if let Some(list) = a.strip_prefix("--features=").or_else(|| a.strip_prefix("-F").filter(|l| !l.is_empty())) {
            push(list, &mut features);
        } else {
            rest.push(a.to_string());
        }
        i += 1;
    }
    Ok((features, rest))
}

/// Runs `resa CMD… EXTRA…` (release build) from the workspace root, with `features`; a `--`
/// in `extra` is dropped (everything is `resa`'s).
pub fn resa(cmd: &[&str], extra: &[String], features: &[String]) -> anyhow::Result<()> {
    let mut c = cargo_resa("run", features);
    let extra: Vec<&String> = extra.iter().filter(|a| a.as_str() != "--").collect();
    let status = c.arg("--").args(cmd).args(extra).status()?;
    anyhow::ensure!(status.success(), "resa {} failed ({status})", cmd.join(" "));
    Ok(())
}

/// `cargo ACTION --release --bin resa [--features F]` (`run`, `build`) from the workspace root.
pub fn cargo_resa(action: &str, features: &[String]) -> std::process::Command {
    let mut c = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root()).args([action, "--release", "--bin", "resa"]);
    if !features.is_empty() {
        c.args(["--features", &features.join(",")]);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn both_spellings_of_features_are_accepted() {
        let (f, rest) = split_features(&s(&["--features", "cuda", "--only", "prefill"])).expect("ok");
        assert_eq!((f, rest), (s(&["cuda"]), s(&["--only", "prefill"])));
        let (f, rest) = split_features(&s(&["--features=cuda,hub", "x"])).expect("ok");
        assert_eq!((f, rest), (s(&["cuda", "hub"]), s(&["x"])));
        let (f, rest) = split_features(&s(&["-F", "wgpu", "-Fhub", "--", "--features", "y"])).expect("ok");
        assert_eq!((f, rest), (s(&["wgpu", "hub"]), s(&["--", "--features", "y"])));
        assert!(split_features(&s(&["--features"])).is_err());
    }
}
