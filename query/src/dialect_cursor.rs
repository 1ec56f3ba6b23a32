//! The token cursor of the dialect: FoldDB's own statements are parsed by walking the
//! tokens sqlparser's tokenizer gives, word by word.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Word};

use super::*;

/// Tokens without whitespace and comments, with a position.
pub(super) struct Cursor {
    pub(super) toks: Vec<Token>,
    pub(super) pos: usize,
}

impl Cursor {
    pub(super) fn new(sql: &str) -> Result<Cursor, ParseError> {
        let toks = Tokenizer::new(&GenericDialect {}, sql)
            .tokenize()
            .map_err(|e| format!("SQL parse error: {e}"))?;
        Ok(Cursor::from_tokens(toks.iter()))
    }

    /// Over `tokens` (as the tokenizer gave them).
    pub(super) fn from_tokens<'a>(tokens: impl Iterator<Item = &'a Token>) -> Cursor {
        let toks = tokens
            .filter(|t| !matches!(t, Token::Whitespace(_) | Token::SemiColon))
            .cloned()
            .collect();
        Cursor { toks, pos: 0 }
    }

    pub(super) fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    pub(super) fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    pub(super) fn peek_word(&self) -> Option<String> {
        match self.peek() {
            Some(Token::Word(Word {
                value,
                quote_style: None,
                ..
            })) => Some(value.to_ascii_lowercase()),
            _ => None,
        }
    }

    pub(super) fn word(&mut self) -> Option<String> {
        let w = self.peek_word()?;
        self.pos += 1;
        Some(w)
    }

    /// Consumes keyword `kw` (lowercase) if it is next.
    pub(super) fn keyword(&mut self, kw: &str) -> bool {
        if self.peek_word().as_deref() == Some(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(super) fn expect(&mut self, kw: &str) -> Result<(), ParseError> {
        if self.keyword(kw) {
            Ok(())
        } else {
            Err(format!(
                "SQL parse error: expected {}, found {}",
                kw.to_ascii_uppercase(),
                self.found()
            ))
        }
    }

    pub(super) fn found(&self) -> String {
        self.peek()
            .map_or_else(|| "end of statement".to_owned(), |t| t.to_string())
    }

    pub(super) fn token(&mut self, t: &Token) -> bool {
        if self.peek() == Some(t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(super) fn expect_token(&mut self, t: &Token, shown: &str) -> Result<(), ParseError> {
        if self.token(t) {
            Ok(())
        } else {
            Err(format!(
                "SQL parse error: expected {shown}, found {}",
                self.found()
            ))
        }
    }

    /// An identifier, lowercase (quoted ones too: identifiers are case-insensitive).
    pub(super) fn ident(&mut self) -> Result<String, ParseError> {
        match self.next() {
            Some(Token::Word(w)) => Ok(w.value.to_ascii_lowercase()),
            Some(Token::SingleQuotedString(s)) => Ok(s.to_ascii_lowercase()),
            other => Err(format!(
                "SQL parse error: expected an identifier, found {}",
                other.map_or_else(|| "end of statement".to_owned(), |t| t.to_string())
            )),
        }
    }

    /// Whether the word `n` tokens ahead is `kw` (lowercase).
    pub(super) fn word_at(&self, n: usize, kw: &str) -> bool {
        matches!(self.toks.get(self.pos + n), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
    }

    /// A user id (bare, or in single or double quotes), lowercase like logins, validated.
    pub(super) fn user_id(&mut self) -> Result<String, ParseError> {
        let id = match self.next() {
            Some(Token::Word(w)) => w.value.to_ascii_lowercase(),
            Some(Token::SingleQuotedString(s)) => s.to_ascii_lowercase(),
            other => {
                return Err(format!(
                    "SQL parse error: expected a user id, found {}",
                    other.map_or_else(|| "end of statement".to_owned(), |t| t.to_string())
                ));
            }
        };
        validate_user_id(&id)?;
        Ok(id)
    }

    /// A single-quoted string literal.
    pub(super) fn string(&mut self, what: &str) -> Result<String, ParseError> {
        match self.next() {
            Some(Token::SingleQuotedString(s)) => Ok(s),
            _ => Err(format!("SQL parse error: {what} expects a quoted string")),
        }
    }

    /// A role word, bare or quoted.
    pub(super) fn role(&mut self) -> Result<Role, ParseError> {
        let w = match self.next() {
            Some(Token::Word(w)) => w.value,
            Some(Token::SingleQuotedString(s)) => s,
            _ => String::new(),
        };
        role_word(&w).ok_or_else(|| {
            format!("Unknown role '{w}': use user, service, dba or system (or their aliases)")
        })
    }

    pub(super) fn table_name(&mut self) -> Result<TableName, ParseError> {
        let first = self.ident()?;
        if self.token(&Token::Period) {
            Ok(TableName {
                namespace: Some(first),
                name: self.ident()?,
            })
        } else {
            Ok(TableName {
                namespace: None,
                name: first,
            })
        }
    }

    pub(super) fn table_kind(&mut self) -> Option<TableKind> {
        if self.keyword("user") {
            Some(TableKind::User)
        } else if self.keyword("shared") {
            Some(TableKind::Shared)
        } else if self.keyword("stream") {
            Some(TableKind::Stream)
        } else {
            None
        }
    }

    pub(super) fn if_not_exists(&mut self) -> Result<bool, ParseError> {
        if self.keyword("if") {
            self.expect("not")?;
            self.expect("exists")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    pub(super) fn if_exists(&mut self) -> Result<bool, ParseError> {
        if self.keyword("if") {
            self.expect("exists")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    pub(super) fn end(&self) -> Result<(), ParseError> {
        match self.peek() {
            None => Ok(()),
            Some(t) => Err(format!("SQL parse error: unexpected {t} at the end")),
        }
    }
}
