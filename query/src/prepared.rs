//! One statement's text, tokenized once and parsed into sqlparser's tree at most once: what
//! classification ([`crate::dialect::classify_prepared`]), authorization (the tables it
//! names, the system tables it touches) and write planning share, instead of each reading
//! the text again.

use std::sync::OnceLock;

use datafusion::sql::sqlparser::ast::Statement as Ast;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

/// A tokenized statement.
#[derive(Debug)]
pub struct Prepared {
    text: String,
    tokens: Vec<TokenWithSpan>,
    ast: OnceLock<Result<Ast, String>>,
}

impl Prepared {
    /// `text` tokenized; the error is the tokenizer's, as a parse error.
    pub fn new(text: &str) -> Result<Prepared, String> {
        let tokens =
            crate::sql_dialect::tokenize(text).map_err(|e| format!("SQL parse error: {e}"))?;
        Ok(Prepared {
            text: text.to_owned(),
            tokens,
            ast: OnceLock::new(),
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Every token, whitespace and comments included.
    pub fn tokens(&self) -> impl Iterator<Item = &Token> + Clone {
        self.tokens.iter().map(|t| &t.token)
    }

    /// The statement as sqlparser's tree, parsed on first use; an error unless the text is
    /// exactly one statement.
    pub fn ast(&self) -> Result<&Ast, &str> {
        self.ast
            .get_or_init(|| {
                let mut stmts = Parser::new(&crate::sql_dialect::FoldDialect)
                    .with_tokens_with_locations(self.tokens.clone())
                    .parse_statements()
                    .map_err(|e| format!("SQL parse error: {e}"))?;
                if stmts.len() != 1 {
                    return Err("expected exactly one statement".to_owned());
                }
                Ok(stmts.remove(0))
            })
            .as_ref()
            .map_err(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    #[test]
    fn parses_once_as_parse_sql_would() {
        let sql = "INSERT INTO app.t (id, v) VALUES (1, 'a''b') -- note\n";
        let p = Prepared::new(sql).expect("tokenizes");
        let direct = Parser::parse_sql(&GenericDialect {}, sql).expect("parses");
        assert_eq!(p.ast().expect("parses"), &direct[0]);
        assert!(std::ptr::eq(
            p.ast().expect("cached"),
            p.ast().expect("cached")
        ));
        assert_eq!(p.text(), sql);
    }

    #[test]
    fn errors_read_as_the_parser_gives_them() {
        let sql = "SELECT (1 +";
        let direct = Parser::parse_sql(&GenericDialect {}, sql).expect_err("bad");
        let p = Prepared::new(sql).expect("tokenizes");
        assert_eq!(
            p.ast().expect_err("bad"),
            format!("SQL parse error: {direct}")
        );
        assert_eq!(
            Prepared::new("SELECT 1; SELECT 2")
                .expect("tokenizes")
                .ast(),
            Err("expected exactly one statement")
        );
        assert!(Prepared::new("SELECT 'unterminated").is_err());
    }
}
