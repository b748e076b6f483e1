//! The README's quick start is `examples/counter.rs`, word for word, so the
//! code a new user copies is the code that CI compiles and runs; and the
//! README's test command is the one CI runs.

#[test]
fn readme_quick_start_is_the_counter_example() {
    let readme = include_str!("../../README.md");
    let example = include_str!("../../examples/counter.rs");
    let start = readme
        .find("```rust,no_run\n")
        .map(|at| at + "```rust,no_run\n".len())
        .expect("the README has a rust code block");
    let end = readme[start..].find("```").expect("the code block ends") + start;
    assert_eq!(&readme[start..end], example);
}

#[test]
fn ci_runs_the_readme_test_command() {
    let readme = include_str!("../../README.md");
    assert!(readme.contains("\n./scripts/test\n"));
    let ci = include_str!("../../.ci/run");
    assert!(
        ci.contains("\n./scripts/test\n"),
        ".ci/run runs the README's test command"
    );
    let script = include_str!("../../scripts/test");
    assert!(script.contains("\nexec cargo test --all-features \"$@\"\n"));
}
