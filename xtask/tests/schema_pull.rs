//! `cargo xtask schema pull` end to end: the real `xtask` binary introspects the sandbox 4me
//! (which serves a part of the real schema) with the provider's OAuth application, prints the
//! difference with the committed snapshot and writes the pulled schema.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use app_builder_sandbox::Sandbox;
use app_builder_schema::Contract;

async fn pull(sandbox: &Sandbox, args: &[&str]) -> (bool, String) {
    let creds = sandbox.add_oauth_application("wdc");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["schema", "pull", "--yes", "--domain", sandbox.domain()])
        .args(["--account", "wdc", "--client-id", &creds.client_id])
        .args(args)
        .env("FOURME_OAUTH_URL", sandbox.oauth_url())
        .env("FOURME_GRAPHQL_URL", sandbox.graphql_url())
        .env("FOURME_REST_URL", sandbox.rest_url())
        .env("FOURME_CLIENT_SECRET", &creds.client_secret)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !text.contains(&creds.client_secret),
        "the client secret was printed"
    );
    (output.status.success(), text)
}

#[tokio::test]
async fn pulls_the_sandbox_schema_by_introspection_and_prints_the_difference() {
    let sandbox = Sandbox::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("4me.graphql");
    let (ok, text) = pull(&sandbox, &["--out", out.to_str().unwrap()]).await;
    assert!(ok, "{text}");
    // The sandbox serves a part of the snapshot and nothing else: members are only removed
    // (the parts it does not emulate) or stricter about null, never added.
    let summary = text
        .lines()
        .find(|l| l.starts_with("schema: "))
        .unwrap_or_else(|| panic!("no summary in {text}"));
    assert!(summary.starts_with("schema: 0 added, "), "{summary}");
    assert!(text.contains("  - Query.affectedSlas"), "{text}");
    assert!(!text.contains("\n  + "), "{text}");
    // The written snapshot keeps the provenance header, says where it came from and is a
    // valid schema with the operations the sandbox serves.
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(
        written.starts_with("# The 4me (Xurrent) GraphQL schema"),
        "{written}"
    );
    assert!(written.contains(
        "# Refreshed by `cargo xtask schema pull`: introspection of wdc on 4me-sandbox.test"
    ));
    let pulled = Contract::parse(&written, "pulled.graphql").unwrap();
    let mutation = pulled.schema().get_object("Mutation").unwrap();
    assert!(mutation.fields.contains_key("webhookPolicyCreate"));
    assert!(mutation.fields.contains_key("discoveredConfigurationItems"));

    // --check prints the same difference and writes nothing.
    let unwritten = dir.path().join("not-written.graphql");
    let (ok, checked) = pull(&sandbox, &["--check", "--out", unwritten.to_str().unwrap()]).await;
    assert!(ok, "{checked}");
    assert!(checked.contains(summary), "{checked}");
    assert!(!unwritten.exists());
}

#[tokio::test]
async fn wrong_credentials_fail_with_a_clear_error() {
    let sandbox = Sandbox::start().await.unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["schema", "pull", "--yes", "--domain", sandbox.domain()])
        .args(["--account", "wdc", "--client-id", "nobody", "--check"])
        .env("FOURME_OAUTH_URL", sandbox.oauth_url())
        .env("FOURME_GRAPHQL_URL", sandbox.graphql_url())
        .env("FOURME_REST_URL", sandbox.rest_url())
        .env("FOURME_CLIENT_SECRET", "wrong")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("xtask schema: error:"), "{stderr}");
    assert!(!stderr.contains("wrong"), "{stderr}");
}
