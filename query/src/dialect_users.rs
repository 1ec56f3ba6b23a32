//! The user statements (API.md 3.8): CREATE USER and ALTER USER, parsed from the
//! dialect's tokens.

use super::*;

/// The rest of `CREATE USER`.
pub(super) fn parse_create_user(c: &mut Cursor) -> Result<Statement, ParseError> {
    let id = c.user_id()?;
    c.expect("with")?;
    let auth = if c.keyword("password") {
        UserAuth::Password(c.string("PASSWORD")?)
    } else if c.keyword("internal") {
        UserAuth::Internal
    } else if c.keyword("oauth") {
        UserAuth::OAuth(c.string("OAUTH")?)
    } else {
        return Err(format!(
            "SQL parse error: expected PASSWORD, INTERNAL or OAUTH, found {}",
            c.found()
        ));
    };
    let mut role = Role::User;
    let mut email = None;
    loop {
        if c.keyword("role") {
            role = c.role()?;
        } else if c.keyword("email") {
            email = Some(c.string("EMAIL")?);
        } else {
            break;
        }
    }
    c.end()?;
    Ok(Statement::CreateUser {
        id,
        auth,
        role,
        email,
    })
}

/// The rest of `ALTER USER`.
pub(super) fn parse_alter_user(c: &mut Cursor) -> Result<Statement, ParseError> {
    let id = c.user_id()?;
    c.expect("set")?;
    let change = if c.keyword("password") {
        UserChange::Password(c.string("PASSWORD")?)
    } else if c.keyword("role") {
        UserChange::Role(c.role()?)
    } else if c.keyword("email") {
        if c.keyword("null") {
            UserChange::Email(None)
        } else {
            UserChange::Email(Some(c.string("EMAIL")?))
        }
    } else {
        return Err(format!(
            "SQL parse error: expected PASSWORD, ROLE or EMAIL, found {}",
            c.found()
        ));
    };
    c.end()?;
    Ok(Statement::AlterUser { id, change })
}
