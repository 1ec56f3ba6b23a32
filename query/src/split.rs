//! Splitting a request's SQL into statements on `;`, aware of quotes, comments and
//! parentheses (API.md 3.1): a `;` inside parentheses never ends a statement, so that
//! `EXECUTE AS USER 'u' (a; b)` reaches its own check as one statement. Pure; property-tested.

/// Why a batch could not be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("unterminated quoted text starting at byte {0}")]
    UnterminatedQuote(usize),
    #[error("unterminated block comment starting at byte {0}")]
    UnterminatedComment(usize),
}

/// The statements of `sql`, trimmed, empty ones dropped.
pub fn split_statements(sql: &str) -> Result<Vec<&str>, SplitError> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut depth = 0usize;
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'\'' | b'"' | b'`') => {
                let open = i;
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return Err(SplitError::UnterminatedQuote(open)),
                        // A doubled quote is an escaped quote.
                        Some(&c) if c == q && bytes.get(i + 1) == Some(&q) => i += 2,
                        Some(&c) if c == q => break,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let open = i;
                match sql[i + 2..].find("*/") {
                    Some(end) => i += 2 + end + 2,
                    None => return Err(SplitError::UnterminatedComment(open)),
                }
            }
            b'(' => {
                depth += 1;
                i += 1;
            }
            b')' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b';' if depth == 0 => {
                push(&mut out, &sql[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    push(&mut out, &sql[start..]);
    Ok(out)
}

fn push<'a>(out: &mut Vec<&'a str>, stmt: &'a str) {
    let trimmed = stmt.trim();
    if !is_blank(trimmed) {
        out.push(trimmed);
    }
}

/// Whether `stmt` holds nothing but whitespace and comments.
fn is_blank(stmt: &str) -> bool {
    let mut rest = stmt.trim_start();
    loop {
        if rest.is_empty() {
            return true;
        }
        if let Some(r) = rest.strip_prefix("--") {
            rest = r
                .split_once('\n')
                .map_or("", |(_, after)| after)
                .trim_start();
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r
                .split_once("*/")
                .map_or("", |(_, after)| after)
                .trim_start();
        } else {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_on_top_level_semicolons_only() {
        let sql = "INSERT INTO t VALUES ('a;b'); -- c;d\n SELECT \"x;y\" /* ; */ FROM t;;  ";
        assert_eq!(
            split_statements(sql),
            Ok(vec![
                "INSERT INTO t VALUES ('a;b')",
                "-- c;d\n SELECT \"x;y\" /* ; */ FROM t"
            ])
        );
        assert_eq!(
            split_statements("EXECUTE AS USER 'u' (SELECT 1; SELECT ')'); SELECT 2"),
            Ok(vec![
                "EXECUTE AS USER 'u' (SELECT 1; SELECT ')')",
                "SELECT 2"
            ])
        );
        assert_eq!(
            split_statements("SELECT 'it''s;'"),
            Ok(vec!["SELECT 'it''s;'"])
        );
        assert_eq!(split_statements(" ; ;\n"), Ok(vec![]));
        assert_eq!(split_statements("-- only a comment"), Ok(vec![]));
        assert_eq!(
            split_statements("SELECT 'x"),
            Err(SplitError::UnterminatedQuote(7))
        );
    }

    proptest! {
        #[test]
        fn never_panics_and_pieces_come_from_the_input(sql in ".{0,200}") {
            if let Ok(parts) = split_statements(&sql) {
                for p in parts {
                    prop_assert!(sql.contains(p));
                }
            }
        }

        #[test]
        fn joined_simple_statements_split_back(parts in proptest::collection::vec("[a-z0-9 ]{1,20}", 1..5)) {
            let parts: Vec<String> = parts.into_iter().filter(|p| !p.trim().is_empty()).collect();
            let sql = parts.join(";");
            let want: Vec<&str> = parts.iter().map(|p| p.trim()).collect();
            prop_assert_eq!(split_statements(&sql), Ok(want));
        }
    }
}
