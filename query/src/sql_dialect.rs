//! The SQL dialect FoldDB parses with: sqlparser's generic dialect, with JSON operators
//! read as PostgreSQL reads them. `doc->>'status' = 'active'` compares the extracted
//! text (the generic dialect binds `->>` looser than `=`, making it
//! `doc ->> ('status' = 'active')`), and `doc ? 'key'` is the key-exists operator, not a
//! positional parameter (FoldDB's parameters are `$1`, `$2`, …).

use std::any::TypeId;

use datafusion::sql::sqlparser::dialect::{Dialect, GenericDialect};
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, TokenizerError};

/// sqlparser's generic dialect, JSON operators apart.
#[derive(Debug, Default, Clone, Copy)]
pub struct FoldDialect;

/// Where PostgreSQL places its "other" operators (`->`, `->>`, `?`, `||`, …), on the
/// generic dialect's scale: tighter than comparisons, `LIKE`, `IS` and `BETWEEN` (20
/// and below), looser than `+` and `-` (30).
const JSON_OPERATOR_PRECEDENCE: u8 = 25;

macro_rules! as_generic {
    ($($name:ident,)*) => {
        $(fn $name(&self) -> bool {
            GenericDialect {}.$name()
        })*
    };
}

impl Dialect for FoldDialect {
    /// Parsers and tokenizers that ask which dialect this is are told "generic".
    fn dialect(&self) -> TypeId {
        TypeId::of::<GenericDialect>()
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        GenericDialect {}.is_delimited_identifier_start(ch)
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        GenericDialect {}.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        GenericDialect {}.is_identifier_part(ch)
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        match &parser.peek_token_ref().token {
            Token::Arrow
            | Token::LongArrow
            | Token::HashArrow
            | Token::HashLongArrow
            | Token::AtArrow
            | Token::ArrowAt
            | Token::HashMinus
            | Token::Question
            | Token::StringConcat => Some(Ok(JSON_OPERATOR_PRECEDENCE)),
            _ => None,
        }
    }

    as_generic! {
        supports_unicode_string_literal,
        supports_partition_by_after_order_by,
        supports_array_join_syntax,
        supports_group_by_expr,
        supports_group_by_with_modifier,
        supports_left_associative_joins_without_parens,
        supports_connect_by,
        supports_match_recognize,
        supports_pipe_operator,
        supports_start_transaction_modifier,
        supports_window_function_null_treatment_arg,
        supports_dictionary_syntax,
        supports_window_clause_named_window_reference,
        supports_parenthesized_set_variables,
        supports_select_wildcard_except,
        support_map_literal_syntax,
        allow_extract_custom,
        allow_extract_single_quotes,
        supports_extract_comma_syntax,
        supports_create_view_comment_syntax,
        supports_parens_around_table_factor,
        supports_values_as_table_factor,
        supports_create_index_with_clause,
        supports_explain_with_utility_options,
        supports_limit_comma,
        supports_update_order_by,
        supports_from_first_select,
        supports_projection_trailing_commas,
        supports_asc_desc_in_column_definition,
        supports_try_convert,
        supports_bitwise_shift_operators,
        supports_comment_on,
        supports_load_extension,
        supports_named_fn_args_with_assignment_operator,
        supports_struct_literal,
        supports_empty_projections,
        supports_nested_comments,
        supports_multiline_comment_hints,
        supports_user_host_grantee,
        supports_string_escape_constant,
        supports_array_typedef_with_brackets,
        supports_match_against,
        supports_set_names,
        supports_comma_separated_set_assignments,
        supports_filter_during_aggregation,
        supports_select_wildcard_exclude,
        supports_data_type_signed_suffix,
        supports_interval_options,
        supports_quote_delimited_string,
        supports_select_wildcard_replace,
        supports_select_wildcard_ilike,
        supports_select_wildcard_rename,
        supports_optimize_table,
        supports_install,
        supports_detach,
        supports_prewhere,
        supports_with_fill,
        supports_limit_by,
        supports_interpolate,
        supports_settings,
        supports_select_format,
        supports_comment_optimizer_hint,
        supports_constraint_keyword_without_name,
        supports_key_column_option,
        supports_comma_separated_trim,
        supports_cte_without_as,
        supports_select_item_multi_column_alias,
        supports_xml_expressions,
    }
}

/// `sql` as FoldDB's tokens: `?` is the key-exists operator.
pub fn tokenize(sql: &str) -> Result<Vec<TokenWithSpan>, TokenizerError> {
    let mut tokens = Tokenizer::new(&FoldDialect, sql).tokenize_with_location()?;
    for t in &mut tokens {
        if matches!(&t.token, Token::Placeholder(p) if p == "?") {
            t.token = Token::Question;
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

    fn parse(sql: &str) -> Result<Vec<Statement>, ParserError> {
        let tokens = tokenize(sql).map_err(|e| ParserError::TokenizerError(e.to_string()))?;
        Parser::new(&FoldDialect)
            .with_tokens_with_locations(tokens)
            .parse_statements()
    }

    /// `sql` parses as PostgreSQL's dialect parses it.
    fn as_postgres(sql: &str) {
        let got = parse(sql).expect(sql);
        let want = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect(sql);
        assert_eq!(got, want, "{sql}");
    }

    #[test]
    fn json_operators_bind_as_postgres_binds_them() {
        for sql in [
            "SELECT * FROM t WHERE doc->>'status' = 'active'",
            "SELECT * FROM t WHERE doc->'a'->>'b' LIKE 'x%' AND n > 1",
            "SELECT doc->>'n' IS NULL, doc->>'k' IN ('a', 'b') FROM t",
            "SELECT doc->>'a' || '!' FROM t",
            "SELECT * FROM t WHERE doc ? 'k' AND doc->>'k' <> 'x'",
            // Arithmetic binds tighter.
            "SELECT a->>1 + 1 FROM t",
        ] {
            as_postgres(sql);
        }
        // Not a no-op: the generic dialect reads it the other way.
        let sql = "SELECT * FROM t WHERE doc->>'status' = 'active'";
        assert_ne!(
            parse(sql).expect(sql),
            Parser::parse_sql(&GenericDialect {}, sql).expect(sql)
        );
    }

    #[test]
    fn question_mark_is_key_exists() {
        let stmts = parse("SELECT * FROM t WHERE doc ? 'status' AND n = $1").expect("parses");
        let text = stmts[0].to_string();
        assert_eq!(text, "SELECT * FROM t WHERE doc ? 'status' AND n = $1");
    }

    #[test]
    fn everything_else_parses_as_the_generic_dialect_parses_it() {
        for sql in [
            "SELECT a, b + 1 * 2, 'x' || 'y' FROM ns.t WHERE a = 1 OR b BETWEEN 1 AND 2 ORDER BY 1 LIMIT 5",
            "SELECT count(*) FILTER (WHERE x > 1) FROM t GROUP BY ALL",
            "SELECT * EXCLUDE (a) FROM t",
            "WITH c AS (SELECT 1 AS x) SELECT x FROM c UNION ALL SELECT 2",
            "INSERT INTO t (id, v) VALUES ($1, $2)",
            "UPDATE t SET v = v || 'x' WHERE id = 1",
            "SELECT \"key\", CAST(v AS BIGINT), v::TEXT, a[1] FROM t",
        ] {
            assert_eq!(
                parse(sql).expect(sql),
                Parser::parse_sql(&GenericDialect {}, sql).expect(sql),
                "{sql}"
            );
        }
    }
}
