//! Repository rules kept as tests (in the manner of rust-analyzer's `xtask tidy`): the
//! repository explains itself, so nothing in it points at material it does not contain.
//!
//! - no section sign: the behaviour once cited as sections of an outside specification is
//!   written down in `docs/original.md`, and references point at its headings;
//! - every `docs/<page>.md#<anchor>` reference names a page of `docs/` and a heading on it;
//! - no comment or document names a tracker issue by its number, nor the outside reference files;
//! - the functions build their HTTP clients through `app_builder_core::tls`, so that they trust
//!   the compiled-in root certificates and read no certificate file.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Tracked text files, relative to the workspace root; the fuzz corpus (generated inputs) aside.
fn tracked_text_files(root: &Path) -> Vec<PathBuf> {
    let output = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .expect("git ls-files runs");
    assert!(output.status.success(), "git ls-files failed");
    output
        .stdout
        .split(|byte| *byte == 0)
        .filter(|name| !name.is_empty())
        .map(|name| PathBuf::from(String::from_utf8_lossy(name).into_owned()))
        .filter(|path| !path.starts_with("fuzz/corpus"))
        .filter(|path| std::fs::read_to_string(root.join(path)).is_ok())
        .collect()
}

/// GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown page's headings.
fn anchors(page: &str) -> Vec<String> {
    page.lines()
        .filter_map(|line| line.strip_prefix('#'))
        .map(|rest| anchor(rest.trim_start_matches('#')))
        .collect()
}

/// The `docs/<page>.md#<anchor>` references in `text`.
fn doc_references(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("docs/") {
        let tail = &rest[start + "docs/".len()..];
        let page: String = tail
            .chars()
            .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
            .collect();
        let after = &tail[page.len()..];
        if let (Some(page), Some(anchor_text)) = (page.strip_suffix(".md"), after.strip_prefix('#'))
        {
            let anchor: String = anchor_text
                .chars()
                .take_while(|c| c.is_alphanumeric() || matches!(c, '-' | '_'))
                .collect();
            if !anchor.is_empty() {
                found.push((format!("{page}.md"), anchor));
            }
        }
        rest = tail;
    }
    found
}

/// Words naming a tracker issue: "issue" followed by a number.
fn names_an_issue(line: &str) -> bool {
    let lower = line.to_lowercase();
    let mut rest = lower.as_str();
    while let Some(at) = rest.find("issue") {
        let after = rest[at + "issue".len()..].trim_start_matches(['s', ' ', '#']);
        if after.starts_with(|c: char| c.is_ascii_digit()) {
            return true;
        }
        rest = &rest[at + "issue".len()..];
    }
    false
}

/// The source of what runs in a Lambda function.
const FUNCTION_SOURCES: [&str; 5] = [
    "crates/core/src",
    "crates/secrets/src",
    "crates/typeform/src",
    "crates/lansweeper/src",
    "crates/note-dispatcher/src",
];

/// A line that builds a `reqwest` client of its own.
fn builds_an_http_client(line: &str) -> bool {
    [
        "reqwest::Client::builder",
        "reqwest::Client::new",
        "reqwest::ClientBuilder::new",
    ]
    .iter()
    .any(|call| line.contains(call))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        crate::test::workspace_root()
    }

    #[test]
    fn no_file_cites_sections_of_a_document_the_repository_lacks() {
        let root = root();
        let section_sign = '\u{a7}';
        let offending: Vec<String> = tracked_text_files(&root)
            .into_iter()
            .filter(|path| {
                std::fs::read_to_string(root.join(path))
                    .is_ok_and(|text| text.contains(section_sign))
            })
            .map(|path| path.display().to_string())
            .collect();
        assert!(
            offending.is_empty(),
            "section references (write the behaviour in docs/ and point there): {offending:?}"
        );
    }

    #[test]
    fn every_docs_reference_names_an_existing_heading() {
        let root = root();
        let mut checked = 0;
        for path in tracked_text_files(&root) {
            let text = std::fs::read_to_string(root.join(&path)).unwrap_or_default();
            for (page, anchor) in doc_references(&text) {
                let target = root.join("docs").join(&page);
                let headings = std::fs::read_to_string(&target)
                    .map(|page| anchors(&page))
                    .unwrap_or_default();
                assert!(
                    headings.contains(&anchor),
                    "{}: docs/{page}#{anchor} names no heading of {}",
                    path.display(),
                    target.display()
                );
                checked += 1;
            }
        }
        assert!(
            checked > 20,
            "only {checked} references found: is the scan broken?"
        );
    }

    #[test]
    fn no_file_names_a_tracker_issue_or_outside_reference_files() {
        let root = root();
        let outside = [
            concat!("../", "shared"),
            concat!("original", "-spec"),
            concat!("apis", ".md"),
        ];
        let mut offending = Vec::new();
        // This file names what it looks for.
        let this_file = Path::new(file!());
        for path in tracked_text_files(&root) {
            if this_file.ends_with(&path) || path.ends_with(this_file) {
                continue;
            }
            let text = std::fs::read_to_string(root.join(&path)).unwrap_or_default();
            for (number, line) in text.lines().enumerate() {
                if names_an_issue(line) || outside.iter().any(|name| line.contains(name)) {
                    offending.push(format!("{}:{}: {line}", path.display(), number + 1));
                }
            }
        }
        assert!(offending.is_empty(), "{offending:#?}");
    }

    #[test]
    fn the_functions_build_http_clients_on_the_compiled_in_roots() {
        let root = root();
        // The one builder, and the 4me client of the tools, which run on a provider's machine.
        let allowed = [
            Path::new("crates/core/src/tls.rs"),
            Path::new("crates/core/src/fourme/client.rs"),
        ];
        let mut scanned = 0;
        let mut offending = Vec::new();
        for path in tracked_text_files(&root) {
            let in_function = FUNCTION_SOURCES.iter().any(|dir| path.starts_with(dir));
            if !in_function || path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            scanned += 1;
            if allowed.contains(&path.as_path()) {
                continue;
            }
            let text = std::fs::read_to_string(root.join(&path)).unwrap_or_default();
            // Test modules close a file and may build any client.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (number, line) in code.lines().enumerate() {
                if builds_an_http_client(line) {
                    offending.push(format!("{}:{}: {line}", path.display(), number + 1));
                }
            }
        }
        assert!(
            scanned > 50,
            "only {scanned} files scanned: is the scan broken?"
        );
        assert!(
            offending.is_empty(),
            "build with app_builder_core::tls::http_client_builder(): {offending:#?}"
        );
    }

    #[test]
    fn the_checks_find_what_they_look_for() {
        assert!(builds_an_http_client(
            "let http = reqwest::Client::builder()"
        ));
        assert!(builds_an_http_client("reqwest::Client::new()"));
        assert!(!builds_an_http_client(
            "app_builder_core::tls::http_client_builder()"
        ));
        let word = "issue";
        assert!(names_an_issue(&format!("with the fixes of {word} 3")));
        assert!(names_an_issue(&format!("see {}s #12", word.to_uppercase())));
        assert!(!names_an_issue("the issuer of the token"));
        assert!(!names_an_issue("an issue with the token"));
        assert_eq!(anchor(" 4me client"), "4me-client");
        assert_eq!(anchor("Tests of the original"), "tests-of-the-original");
        assert_eq!(
            doc_references(
                "see docs/original.md#fixed-bugs item 3 and (docs/original.md#contexts)."
            ),
            vec![
                ("original.md".to_owned(), "fixed-bugs".to_owned()),
                ("original.md".to_owned(), "contexts".to_owned())
            ]
        );
        assert!(doc_references("docs/console.png").is_empty());
    }
}
