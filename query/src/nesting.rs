//! A bound on how deeply a statement's syntax tree can nest, computed from its tokens before
//! anything parses it.
//!
//! A left-deep chain such as `1+1+…+1`, `a OR b OR …` or `SELECT 1 UNION ALL SELECT 1 …`
//! parses (without recursion) into a tree as deep as the chain is long, and every later
//! pass over that tree — DataFusion's planning, cloning, printing, even dropping it — recurses
//! once per level. A few kilobytes of SQL were enough to overflow a server thread's stack.
//! So the depth is bounded first, on the tokens, iteratively, with a bound that never
//! underestimates: each operator adds one level at most, and each bracketed group one more.
//!
//! Within a group (the statement itself, or a `(…)` / `[…]`), the items separated by commas
//! are independent: an item's operators and its deepest subgroup add up, and the group is as
//! deep as its deepest item. Words that join expressions (`AND`, `OR`, `NOT`, `IS`, `IN`,
//! `LIKE`, `BETWEEN`, `UNION`, `CASE`…) count as operators, as does every symbol that is not
//! a separator; names, literals and other keywords do not.

use datafusion::sql::sqlparser::tokenizer::Token;

/// The deepest a statement may nest, by [`depth_bound`]: more than hand-written SQL needs
/// (a `WHERE` of 200 `col = value` terms joined by `OR` is about 400; longer lists belong in
/// `IN (…)`), small enough that planning stays well inside a server thread's stack and
/// quick: DataFusion's planning time grows with the square of a chain's length (a debug
/// build took 0.4 s for 500 terms, 1.2 s for 1,000).
pub const MAX_DEPTH: usize = 500;

/// The most query blocks (`SELECT`s) one statement may hold: each CTE, subquery and UNION
/// branch is one, and planning cost grows faster than their number (20,000 CTEs planned for
/// a minute, unstoppable, since planning does not yield).
pub const MAX_QUERY_BLOCKS: usize = 256;

/// Words that combine expressions, and so can nest one level each.
const OPERATOR_WORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "xor",
    "is",
    "in",
    "like",
    "ilike",
    "similar",
    "rlike",
    "regexp",
    "between",
    "union",
    "intersect",
    "except",
    "minus",
    "case",
    "when",
    "then",
    "else",
    "collate",
    "at",
    "overlaps",
    "div",
    "any",
    "all",
    "some",
    "exists",
];

/// One group being scanned: the operators of its current item, that item's deepest
/// subgroup, and the deepest item finished so far.
#[derive(Debug, Default, Clone, Copy)]
struct Group {
    ops: usize,
    deepest_sub: usize,
    deepest_item: usize,
}

impl Group {
    fn end_item(&mut self) {
        self.deepest_item = self.deepest_item.max(self.ops + self.deepest_sub);
        self.ops = 0;
        self.deepest_sub = 0;
    }

    fn depth(mut self) -> usize {
        self.end_item();
        self.deepest_item
    }
}

/// An upper bound on the depth of any syntax tree `tokens` can parse into (whitespace may
/// be included; it is skipped). Linear time, constant stack.
pub fn depth_bound<'a>(tokens: impl IntoIterator<Item = &'a Token>) -> usize {
    let mut stack = vec![Group::default()];
    for t in tokens {
        match t {
            Token::LParen | Token::LBracket | Token::LBrace => stack.push(Group::default()),
            // An unbalanced closer is a parse error later; here it just ends nothing.
            Token::RParen | Token::RBracket | Token::RBrace if stack.len() > 1 => {
                let inner = stack.pop().map_or(0, Group::depth);
                if let Some(outer) = stack.last_mut() {
                    outer.deepest_sub = outer.deepest_sub.max(inner + 1);
                }
            }
            Token::RParen | Token::RBracket | Token::RBrace => {}
            Token::Comma => {
                if let Some(g) = stack.last_mut() {
                    g.end_item();
                }
            }
            t if adds_a_level(t) => {
                if let Some(g) = stack.last_mut() {
                    g.ops += 1;
                }
            }
            _ => {}
        }
    }
    // Unclosed groups nest inside one another.
    let mut inner: Option<usize> = None;
    for mut g in stack.into_iter().rev() {
        if let Some(d) = inner {
            g.deepest_sub = g.deepest_sub.max(d + 1);
        }
        inner = Some(g.depth());
    }
    inner.unwrap_or(0)
}

fn adds_a_level(t: &Token) -> bool {
    match t {
        Token::Word(w) => {
            w.quote_style.is_none()
                && OPERATOR_WORDS
                    .iter()
                    .any(|k| w.value.eq_ignore_ascii_case(k))
        }
        Token::Whitespace(_)
        | Token::Number(..)
        | Token::Char(_)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::TripleSingleQuotedString(_)
        | Token::TripleDoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::DoubleQuotedByteStringLiteral(_)
        | Token::TripleSingleQuotedByteStringLiteral(_)
        | Token::TripleDoubleQuotedByteStringLiteral(_)
        | Token::SingleQuotedRawStringLiteral(_)
        | Token::DoubleQuotedRawStringLiteral(_)
        | Token::TripleSingleQuotedRawStringLiteral(_)
        | Token::TripleDoubleQuotedRawStringLiteral(_)
        | Token::NationalStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::Placeholder(_)
        | Token::Period
        | Token::SemiColon
        | Token::EOF => false,
        _ => true,
    }
}

/// How many query blocks (`SELECT` keywords) `tokens` hold.
pub fn query_blocks<'a>(tokens: impl IntoIterator<Item = &'a Token>) -> usize {
    tokens
        .into_iter()
        .filter(|t| {
            matches!(t, Token::Word(w) if w.quote_style.is_none()
                && w.value.eq_ignore_ascii_case("select"))
        })
        .count()
}

/// Refuses a statement that could nest deeper than [`MAX_DEPTH`] or holds more than
/// [`MAX_QUERY_BLOCKS`] query blocks.
pub fn check<'a, I>(tokens: I) -> Result<(), String>
where
    I: IntoIterator<Item = &'a Token>,
    I::IntoIter: Clone,
{
    let tokens = tokens.into_iter();
    let blocks = query_blocks(tokens.clone());
    if blocks > MAX_QUERY_BLOCKS {
        return Err(format!(
            "Statement holds {blocks} query blocks (SELECTs: CTEs, subqueries, UNION \
             branches), more than the limit of {MAX_QUERY_BLOCKS}; split it"
        ));
    }
    let depth = depth_bound(tokens);
    if depth > MAX_DEPTH {
        return Err(format!(
            "Statement is too deeply nested: its expressions could nest {depth} levels deep, \
             more than the limit of {MAX_DEPTH} (long chains of operators, OR / AND terms or \
             UNIONs); split it, or use IN (…) lists"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::ast::{Expr, SetExpr, Statement};
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;
    use proptest::prelude::*;

    fn bound(sql: &str) -> usize {
        let toks = Tokenizer::new(&GenericDialect {}, sql)
            .tokenize()
            .expect("tokens");
        depth_bound(&toks)
    }

    #[test]
    fn chains_count_once_per_operator_and_lists_do_not_add_up() {
        assert_eq!(bound("SELECT 1"), 0);
        assert_eq!(bound("SELECT 1+1+1"), 2);
        assert_eq!(bound("SELECT a, b, c FROM t"), 0);
        // UNION and ALL both count (ALL also joins a comparison to a subquery).
        assert_eq!(bound("SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3"), 4);
        assert_eq!(bound("SELECT f(g(h(1)))"), 3);
        // `*` is a symbol, and symbols count (over-counting is safe).
        assert_eq!(bound("SELECT * FROM t WHERE a = 1 OR a = 2"), 4);
        // Rows of a VALUES list are siblings: a long INSERT is shallow.
        let rows: Vec<String> = (0..5000).map(|i| format!("({i}, 'x')")).collect();
        assert_eq!(
            bound(&format!("INSERT INTO t VALUES {}", rows.join(", "))),
            1
        );
        // Unbalanced groups still count.
        assert_eq!(bound("SELECT ((1+1"), 3);
        assert_eq!(bound("SELECT 1))+1"), 1);
    }

    #[test]
    fn long_chains_are_refused_with_a_reason() {
        let chain = vec!["1"; 2000].join("+");
        let toks = Tokenizer::new(&GenericDialect {}, &format!("SELECT {chain}"))
            .tokenize()
            .expect("tokens");
        let e = check(&toks).expect_err("too deep");
        assert!(e.contains("1999 levels"), "{e}");
        let ctes: Vec<String> = (0..300).map(|i| format!("c{i} AS (SELECT {i})")).collect();
        let toks = Tokenizer::new(
            &GenericDialect {},
            &format!("WITH {} SELECT 1", ctes.join(", ")),
        )
        .tokenize()
        .expect("tokens");
        let e = check(&toks).expect_err("too many blocks");
        assert!(e.contains("301 query blocks"), "{e}");
        let ok = vec!["1"; 400].join("+");
        let toks = Tokenizer::new(&GenericDialect {}, &format!("SELECT {ok}"))
            .tokenize()
            .expect("tokens");
        assert!(check(&toks).is_ok());
    }

    /// The depth of a parsed expression (recursive: only for the small trees below).
    fn depth(e: &Expr) -> usize {
        match e {
            Expr::BinaryOp { left, right, .. } => 1 + depth(left).max(depth(right)),
            Expr::UnaryOp { expr, .. }
            | Expr::Nested(expr)
            | Expr::IsNull(expr)
            | Expr::IsNotNull(expr) => 1 + depth(expr),
            Expr::InList { expr, list, .. } => {
                1 + list.iter().map(depth).max().unwrap_or(0).max(depth(expr))
            }
            Expr::Between {
                expr, low, high, ..
            } => 1 + depth(expr).max(depth(low)).max(depth(high)),
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let parts = operand.iter().chain(else_result).map(|e| depth(e)).chain(
                    conditions
                        .iter()
                        .map(|w| depth(&w.condition).max(depth(&w.result))),
                );
                1 + parts.max().unwrap_or(0)
            }
            _ => 0,
        }
    }

    fn expr() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("1".to_owned()),
            Just("a".to_owned()),
            Just("'x'".to_owned())
        ];
        leaf.prop_recursive(8, 64, 4, |inner| {
            prop_oneof![
                (
                    inner.clone(),
                    inner.clone(),
                    prop_oneof![
                        Just("+"),
                        Just("*"),
                        Just("="),
                        Just("AND"),
                        Just("OR"),
                        Just("||")
                    ]
                )
                    .prop_map(|(a, b, op)| format!("{a} {op} {b}")),
                inner.clone().prop_map(|a| format!("({a})")),
                inner.clone().prop_map(|a| format!("NOT {a}")),
                inner.clone().prop_map(|a| format!("-{a}")),
                inner.clone().prop_map(|a| format!("{a} IS NULL")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} IN ({b}, 1)")),
                (inner.clone(), inner.clone(), inner.clone())
                    .prop_map(|(a, b, c)| format!("{a} BETWEEN {b} AND {c}")),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| format!("CASE WHEN {a} THEN {b} ELSE 0 END")),
            ]
        })
    }

    proptest! {
        /// The bound is never below the depth of what the parser actually builds.
        #[test]
        fn the_bound_never_underestimates(e in expr()) {
            let sql = format!("SELECT {e}");
            if let Ok(stmts) = Parser::parse_sql(&GenericDialect {}, &sql) {
                let Statement::Query(q) = &stmts[0] else { panic!("a query") };
                let SetExpr::Select(s) = q.body.as_ref() else { panic!("a select") };
                // (A trailing name may parse as an alias: then there is nothing to compare.)
                if let datafusion::sql::sqlparser::ast::SelectItem::UnnamedExpr(x) =
                    &s.projection[0] {
                    prop_assert!(bound(&sql) >= depth(x), "{sql}: {} < {}", bound(&sql), depth(x));
                }
            }
        }
    }
}
