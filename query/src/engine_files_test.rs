//! Tests of `engine_files`, kept beside it (STYLE.md: a sibling `*_test.rs`).
use super::*;

fn names(sql: &str) -> Vec<String> {
    placeholders(sql)
        .expect("well-formed")
        .into_iter()
        .map(|p| p.name)
        .collect()
}

#[test]
fn placeholders_are_found_outside_literals_and_comments() {
    assert_eq!(
        names(r#"INSERT INTO app.docs (id, f, g) VALUES (1, FILE("a"), file ( 'b.pdf' ))"#),
        ["a", "b.pdf"]
    );
    // In a string, a comment or a quoted identifier, FILE(…) is text; FILE as a type or a
    // column name is no call.
    assert_eq!(
        names(
            "INSERT INTO t (\"FILE(x)\", note, file) VALUES ('FILE(\"no\")', 'it''s FILE(\"no\")', \
             FILE(\"yes\")) -- FILE(\"no\")\n /* FILE('no') */"
        ),
        ["yes"]
    );
    assert_eq!(
        names("CREATE TABLE t (id BIGINT, f FILE)"),
        Vec::<String>::new()
    );
    assert_eq!(names("SELECT profile FROM t"), Vec::<String>::new());
    for bad in [
        "INSERT INTO t VALUES (FILE(a))",
        "INSERT INTO t VALUES (FILE(\"a\"",
        "INSERT INTO t VALUES (FILE(\"a)",
        "INSERT INTO t VALUES (FILE(''))",
    ] {
        assert!(placeholders(bad).is_err(), "{bad}");
    }
    let sql = r#"UPDATE t SET f = FILE("x") WHERE id = 1"#;
    let found = placeholders(sql).expect("found");
    assert_eq!(
        substitute(sql, &found, |n| sql_string(&format!(
            "{{\"name\":\"{n}'s\"}}"
        ))),
        r#"UPDATE t SET f = '{"name":"x''s"}' WHERE id = 1"#
    );
}

#[test]
fn stored_names_are_the_id_and_a_tame_form_of_the_name() {
    assert_eq!(stored_name("42", "Report Q3.PDF"), "42-report-q3.pdf");
    assert_eq!(stored_name("42", "../../etc/passwd"), "42-passwd");
    assert_eq!(stored_name("42", "C:\\Users\\me\\cv.docx"), "42-cv.docx");
    assert_eq!(stored_name("42", ".bashrc"), "42-bashrc");
    assert_eq!(stored_name("42", "été.tar.gz"), "42-t-tar.gz");
    assert_eq!(stored_name("42", "a.b c"), "42-a-b-c");
    assert_eq!(stored_name("42", "???.png"), "42.png");
    assert_eq!(stored_name("42", "noext"), "42-noext");
    let long = "x".repeat(80) + ".txt";
    assert_eq!(
        stored_name("42", &long),
        format!("42-{}.txt", "x".repeat(50))
    );
    for name in ["a/b", "a\\b", "a\0b", "..", "x/../../y"] {
        let stored = stored_name("1", name);
        assert!(valid_download_path("f0001", &stored), "{name} → {stored}");
    }
}

#[test]
fn download_paths_are_a_subfolder_and_a_plain_name() {
    assert!(valid_download_path("f0001", "1-report.pdf"));
    assert!(valid_download_path("f9999", "1"));
    for (sub, file) in [
        ("f001", "a"),
        ("g0001", "a"),
        ("f00a1", "a"),
        ("f0001", ""),
        ("f0001", ".."),
        ("f0001", "a/b"),
        ("f0001", "a\\b"),
        ("f0001", "a\0b"),
        ("f0001", "..%2f"),
        ("f0001", "a b"),
    ] {
        assert!(!valid_download_path(sub, file), "{sub}/{file}");
    }
}
