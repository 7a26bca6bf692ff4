//! The imports that must never exist (`ARCHITECTURE.md`): every file under `src/` is read, and
//! each `crate::<module>` path outside a comment is checked against the table there.

use std::path::{Path, PathBuf};

/// (modules a rule applies to, modules they must never import). `*` stands for every module.
const FORBIDDEN: &[(&[&str], &[&str])] = &[
    (
        &["analytics", "clock", "model", "indicators"],
        &[
            "api",
            "feeds",
            "alerts",
            "sources",
            "ingest",
            "startup",
            "config",
            "mock_exchange",
            "replay",
        ],
    ),
    (&["units", "secret"], &["*"]),
    (
        &["feeds"],
        &[
            "api",
            "analytics",
            "alerts",
            "indicators",
            "ingest",
            "sources",
            "startup",
            "config",
        ],
    ),
    (
        &["api"],
        &[
            "feeds",
            "mock_exchange",
            "sources",
            "ingest",
            "startup",
            "config",
        ],
    ),
    (
        &[
            "alerts",
            "replay",
            "record",
            "mock_exchange",
            "sources",
            "health",
            "metrics",
            "ingest",
            "history",
            "fanout",
            "cluster",
        ],
        &["api", "startup", "config"],
    ),
];

/// Modules that may import the configuration: the wiring.
const WIRING: &[&str] = &["startup", "config", "main", "lib"];

fn rust_files(directory: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(directory).expect("src/ is readable");
    for entry in entries {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `crate::<module>` paths of a line of code (nothing for a comment).
fn crate_paths(line: &str) -> Vec<&str> {
    let code = line.trim_start();
    if code.starts_with("//") {
        return Vec::new();
    }
    code.match_indices("crate::")
        .map(|(at, _)| {
            let rest = &code[at + "crate::".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|module| !module.is_empty())
        .collect()
}

/// Every violation in the crate: `file:line: module imports target`.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut found = Vec::new();
    for file in files {
        let relative = file.strip_prefix(src).expect("under src/");
        let module = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|name| name.trim_end_matches(".rs"))
            .expect("a module name")
            .to_string();
        let text = std::fs::read_to_string(&file).expect("readable");
        for (number, line) in text.lines().enumerate() {
            for target in crate_paths(line) {
                if target == module {
                    continue;
                }
                let forbidden = FORBIDDEN.iter().any(|(from, never)| {
                    from.contains(&module.as_str())
                        && (never.contains(&"*") || never.contains(&target))
                }) || (target == "config" && !WIRING.contains(&module.as_str()));
                if forbidden {
                    found.push(format!(
                        "{}:{}: `{module}` imports `{target}`",
                        relative.display(),
                        number + 1
                    ));
                }
            }
        }
    }
    found
}

#[test]
fn no_module_imports_what_architecture_md_forbids() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(found.is_empty(), "forbidden imports:\n{}", found.join("\n"));
}

#[test]
fn the_check_finds_a_forbidden_import() {
    let dir = tempfile::tempdir().expect("tempdir");
    let analytics = dir.path().join("analytics");
    std::fs::create_dir(&analytics).expect("mkdir");
    std::fs::write(
        analytics.join("engine.rs"),
        "//! Docs may name crate::api freely.\nuse crate::api::AppState;\nuse crate::model::Trade;\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("units.rs"), "use crate::model::Trade;\n").expect("write");
    std::fs::write(dir.path().join("alerts.rs"), "let x = crate::config::X;\n").expect("write");
    let mut found = violations(dir.path());
    found.sort();
    assert_eq!(
        found,
        [
            "alerts.rs:1: `alerts` imports `config`",
            "analytics/engine.rs:2: `analytics` imports `api`",
            "units.rs:1: `units` imports `model`",
        ]
    );
}
