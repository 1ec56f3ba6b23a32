//! ALTER TABLE's changes (API.md 3.3): columns, defaults, access level, vector indexes.

use super::*;

pub(super) fn parse_alter(c: &mut Cursor) -> Result<AlterChange, ParseError> {
    if c.keyword("add") {
        c.keyword("column");
        let spec = parse_column(c)?;
        return Ok(AlterChange::AddColumn(spec));
    }
    if c.keyword("create") {
        c.keyword("vector");
        c.expect("index")?;
        let column = c.ident()?;
        let metric = if c.keyword("using") {
            let name = c.ident()?;
            folddb_materializer::VectorMetric::parse(&name).ok_or_else(|| {
                format!("Unknown vector index metric {name}: use COSINE, L2 or DOT")
            })?
        } else {
            folddb_materializer::VectorMetric::Cosine
        };
        return Ok(AlterChange::CreateIndex { column, metric });
    }
    if c.keyword("drop") {
        if c.keyword("vector") {
            c.expect("index")?;
            return Ok(AlterChange::DropIndex(c.ident()?));
        }
        if c.keyword("index") {
            return Ok(AlterChange::DropIndex(c.ident()?));
        }
        c.keyword("column");
        return Ok(AlterChange::DropColumn(c.ident()?));
    }
    if c.keyword("modify") {
        c.keyword("column");
        let name = c.ident()?;
        let (data_type, _) = parse_type(c)?;
        let not_null = if c.keyword("not") {
            c.expect("null")?;
            Some(true)
        } else if c.keyword("null") {
            Some(false)
        } else {
            None
        };
        return Ok(AlterChange::ModifyColumn {
            name,
            data_type,
            not_null,
        });
    }
    if c.keyword("rename") {
        c.keyword("column");
        let from = c.ident()?;
        c.expect("to")?;
        let to = c.ident()?;
        return Ok(AlterChange::RenameColumn { from, to });
    }
    if c.keyword("alter") {
        c.keyword("column");
        let name = c.ident()?;
        if c.keyword("set") {
            if c.keyword("not") {
                c.expect("null")?;
                return Ok(AlterChange::SetNotNull(name, true));
            }
            c.expect("default")?;
            return Ok(AlterChange::SetDefault(name, parse_default(c)?));
        }
        c.expect("drop")?;
        if c.keyword("not") {
            c.expect("null")?;
            return Ok(AlterChange::SetNotNull(name, false));
        }
        c.expect("default")?;
        return Ok(AlterChange::SetDefault(name, None));
    }
    if c.keyword("set") {
        if c.keyword("access") {
            c.expect("level")?;
            return Ok(AlterChange::SetAccessLevel(c.ident()?));
        }
        c.expect("tblproperties")?;
        c.expect_token(&Token::LParen, "(")?;
        let key = c.ident()?;
        if key != "access_level" {
            return Err(format!("unsupported table property {key}"));
        }
        c.expect_token(&Token::Eq, "=")?;
        let level = match c.next() {
            Some(Token::SingleQuotedString(s)) => s,
            Some(Token::Word(w)) => w.value,
            _ => return Err("ACCESS_LEVEL needs a value".into()),
        };
        c.expect_token(&Token::RParen, ")")?;
        return Ok(AlterChange::SetAccessLevel(level));
    }
    Err("Unsupported ALTER TABLE operation".into())
}
