//! Every GraphQL document the engine sends to 4me as a literal — in core, the functions and
//! xtask — is valid against the committed 4me schema snapshot. The sandbox checks every request
//! the tests make at run time; this scan also covers documents no test happens to send. Format
//! templates (`{{`, `{}`) are assembled at run time and covered by the sandbox's check only.
//! Lansweeper's own API documents (`crates/lansweeper/src/api`) and the sandbox are not 4me
//! clients and are not scanned; test modules (after `#[cfg(test)]`) are not either.

use std::path::{Path, PathBuf};

use app_builder_schema::snapshot;

fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The string literals of `source` (before its test module) that start like a GraphQL operation,
/// with the line they start on. Escapes and `\`-newline continuations are resolved as Rust does.
fn documents(source: &str) -> Vec<(usize, String)> {
    let code = source.split("#[cfg(test)]").next().unwrap_or_default();
    let mut found = Vec::new();
    let mut chars = code.char_indices().peekable();
    let mut line = 1;
    let mut in_comment = false;
    while let Some((i, c)) = chars.next() {
        match c {
            '\n' => {
                line += 1;
                in_comment = false;
            }
            '/' if code[i..].starts_with("//") => in_comment = true,
            '"' if !in_comment && !code[..i].ends_with('\'') => {
                let start = line;
                let mut text = String::new();
                while let Some((_, c)) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some((_, '\n')) => {
                                line += 1;
                                while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                                    if chars.next().is_some_and(|(_, c)| c == '\n') {
                                        line += 1;
                                    }
                                }
                            }
                            Some((_, 'n')) => text.push('\n'),
                            Some((_, other)) => text.push(other),
                            None => break,
                        },
                        '\n' => {
                            line += 1;
                            text.push('\n');
                        }
                        other => text.push(other),
                    }
                }
                let operation = text.starts_with("query ")
                    || text.starts_with("query{")
                    || text.starts_with("mutation ")
                    || text.starts_with("mutation{");
                if operation && !text.contains("{{") && !text.contains("{}") {
                    found.push((start, text));
                }
            }
            _ => {}
        }
    }
    found
}

#[test]
fn every_literal_4me_document_of_the_engine_is_valid_against_the_snapshot() {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in std::fs::read_dir(root.join("crates"))
        .expect("crates/")
        .flatten()
    {
        let name = dir.file_name();
        if name != "sandbox" && name != "schema" {
            rust_files(&dir.path().join("src"), &mut files);
        }
    }
    rust_files(&root.join("xtask/src"), &mut files);
    let lansweeper_api = root.join("crates/lansweeper/src/api");
    files.retain(|f| !f.starts_with(&lansweeper_api));

    let mut checked = 0;
    let mut problems = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).expect("readable source");
        for (line, document) in documents(&source) {
            checked += 1;
            if let Err(e) = snapshot().check_document(&document) {
                let shown = file.strip_prefix(&root).unwrap_or(file);
                problems.push(format!("{}:{line}: {e}", shown.display()));
            }
        }
    }
    assert!(
        checked >= 10,
        "found only {checked} documents: the scan is broken"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_scan_reads_literals_as_rust_does_and_a_broken_document_fails() {
    let source = r#"
        // "query Commented { nope }"
        const A: &str = "query A { configurationItems(first: 1) { nodes { id } } }";
        const B: &str = "mutation B($input: WebhookPolicyCreateInput!) { \
                         webhookPolicyCreate(input: $input) { webhookPolicy { id name } } }";
        let t = format!("query T {{ {x} }}");
        const C: &str = "query C { node(id: \"x\") { ... on WebhookPolicy { publicKeyPem } } }";
        #[cfg(test)]
        const D: &str = "query D { nope }";
    "#;
    let found = documents(source);
    let names: Vec<&str> = found
        .iter()
        .map(|(_, d)| {
            d.split(|c: char| !c.is_alphanumeric())
                .nth(1)
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(names, ["A", "B", "C"]);
    assert_eq!(found[1].0, 4, "B starts on line 4");
    assert!(
        found[1].1.contains("{ webhookPolicyCreate"),
        "{}",
        found[1].1
    );
    assert!(snapshot().check_document(&found[0].1).is_ok());
    assert!(snapshot().check_document(&found[1].1).is_ok());
    let err = snapshot()
        .check_document(&found[2].1)
        .expect_err("WebhookPolicy has no publicKeyPem");
    assert!(err.to_string().contains("publicKeyPem"), "{err}");
}
