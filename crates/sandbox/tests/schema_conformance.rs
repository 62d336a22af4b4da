//! The sandbox serves a part of the real 4me schema and nothing else: every type, field,
//! argument, input field and enum value it serves exists in the committed snapshot with the
//! same type (outputs may be stricter about null).

use app_builder_schema::{Contract, conformance, snapshot};

#[test]
fn everything_the_sandbox_serves_is_in_the_4me_snapshot_with_the_same_type() {
    let served = Contract::parse(&app_builder_sandbox::schema_sdl(), "sandbox.graphql")
        .expect("the sandbox SDL is a valid schema");
    let problems = conformance(served.schema(), snapshot().schema());
    assert!(
        problems.is_empty(),
        "{} departures from the 4me schema:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
