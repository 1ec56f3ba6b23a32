//! Authorization of statements before any of a request runs (API.md 3.8, 3.9): roles,
//! SHARED access levels, system tables in any disguise, and EXECUTE AS USER.

use datafusion::sql::sqlparser::tokenizer::Token;

use super::*;
use crate::prepared::Prepared;

impl Engine {
    /// What `caller` may do with one statement (API.md 3.8, 3.9), checked for every
    /// statement of a batch before any of them runs.
    pub(super) fn authorize(
        &self,
        caller: &Caller,
        namespace: &str,
        stmt: &Statement,
        p: &Prepared,
    ) -> StmtResult<()> {
        if stmt.admin_only() && !caller.role.is_admin() {
            return Err(denied(
                "this statement requires the dba or system role".into(),
            ));
        }
        match stmt {
            Statement::Query
            | Statement::Meta
            | Statement::Insert
            | Statement::Update
            | Statement::Delete => self.authorize_tables(caller, namespace, p),
            Statement::CreateTable(ct) => plan_create_table(ct, caller, namespace).map(|_| ()),
            Statement::AlterTable { table, .. } => match self.table(namespace, table) {
                Ok(def) => alter_allowed(caller, &def),
                Err(_) => Ok(()), // reported when it runs
            },
            Statement::ExecuteAs { user, sql } => {
                let (target, inner, inner_p) = self.impersonate(caller, user, sql)?;
                for (ns, t, _) in named_tables(namespace, &inner_p) {
                    if let Ok(Some(def)) = catalog::table(self.store.as_ref(), &ns, &t)
                        && def.kind == TableKind::Shared
                    {
                        return Err(Error::Execution(format!(
                            "EXECUTE AS USER is not allowed on SHARED tables ({}); it applies to USER and STREAM tables",
                            def.qualified_name()
                        )));
                    }
                }
                self.authorize(&target, namespace, &inner, &inner_p)
            }
            _ => Ok(()),
        }
    }

    /// The tables a query or DML statement names, in any disguise (joins, subqueries, CTEs,
    /// UNION, INSERT … SELECT): `system` only for dba and system and never as a write
    /// target; SHARED tables by their access level.
    pub(super) fn authorize_tables(
        &self,
        caller: &Caller,
        namespace: &str,
        p: &Prepared,
    ) -> StmtResult<()> {
        if !caller.role.is_admin() && references_system(p.tokens()) {
            return Err(denied(
                "system tables require the dba or system role".into(),
            ));
        }
        for (ns, t, write) in named_tables(namespace, p) {
            if ns == "information_schema" {
                // Every role reads it; it lists only what the caller may read.
                if write {
                    return Err(denied("system tables cannot be written".into()));
                }
                continue;
            }
            if ns == "system" {
                if write {
                    return Err(denied("system tables cannot be written".into()));
                }
                if !caller.role.is_admin() {
                    return Err(denied(
                        "system tables require the dba or system role".into(),
                    ));
                }
                continue;
            }
            if let Ok(Some(def)) = catalog::table(self.store.as_ref(), &ns, &t) {
                shared_allowed(caller, &def, write)?;
            }
        }
        Ok(())
    }

    /// `EXECUTE AS USER`: the identity the statement runs as, the statement and its tokens
    /// (API.md 3.9). A regular user may only name itself; service may act as users and
    /// services, dba also as dbas, system as anyone. Ids unknown here count as regular users.
    pub(super) fn impersonate(
        &self,
        caller: &Caller,
        user: &str,
        sql_text: &str,
    ) -> StmtResult<(Caller, Statement, Prepared)> {
        let single = || {
            Error::InvalidInput("EXECUTE AS USER must wrap exactly one single SQL statement".into())
        };
        let stmts = crate::split::split_statements(sql_text).map_err(|_| single())?;
        let [inner_sql] = stmts.as_slice() else {
            return Err(single());
        };
        let inner_p = Prepared::new(inner_sql).map_err(Error::InvalidSql)?;
        let inner = dialect::classify_typed(&inner_p)?;
        if matches!(inner, Statement::ExecuteAs { .. }) {
            return Err(Error::InvalidInput(
                "EXECUTE AS USER cannot be nested".into(),
            ));
        }
        self.may_act_as(caller, user)?;
        Ok((
            Caller {
                user: user.to_owned(),
                role: Role::User,
            },
            inner,
            inner_p,
        ))
    }
}

impl Engine {
    /// Whether `caller` may act as `user` (`EXECUTE AS USER`, a download's `user_id`): a
    /// regular user only as itself; service also as users and services, dba also as dbas,
    /// system as anyone. Ids unknown here count as regular users.
    pub(super) fn may_act_as(&self, caller: &Caller, user: &str) -> StmtResult<()> {
        let target_role = catalog::user(self.store.as_ref(), user)?
            .filter(|u| u.deleted_at_ms.is_none())
            .map_or(Role::User, |u| u.role);
        let allowed = match caller.role {
            Role::User => user == caller.user,
            Role::Service => matches!(target_role, Role::User | Role::Service),
            Role::Dba => target_role != Role::System,
            Role::System => true,
        };
        if !allowed {
            return Err(denied(format!(
                "role {} cannot act as user '{user}' (role {})",
                caller.role.name(),
                target_role.name()
            )));
        }
        Ok(())
    }
}

/// Only system grants (or changes users of) the system role.
pub(super) fn grant_allowed(caller: &Caller, role: Role) -> StmtResult<()> {
    if role == Role::System && caller.role != Role::System {
        return Err(denied(
            "only the system role manages users of role system".into(),
        ));
    }
    Ok(())
}

/// An audit-log entry by `caller`, to go in the same command as the change it records.
pub fn audit(caller: &Caller, action: &str, target: &str, details: Option<&str>) -> Op {
    Op::Audit {
        actor: caller.user.clone(),
        action: action.to_owned(),
        target: target.to_owned(),
        details: details.map(str::to_owned),
        ip: None,
        subject: None,
    }
}

pub(super) fn denied(m: String) -> Error {
    Error::PermissionDenied(format!("Permission denied: {m}"))
}

/// DESCRIBE and SHOW STATS follow SELECT's rules: a SHARED table by its access level.
pub(super) fn may_read(caller: &Caller, def: &TableDef) -> StmtResult<()> {
    shared_allowed(caller, def, false)
}

/// A SHARED table is read or written by its access level.
pub(super) fn shared_allowed(caller: &Caller, def: &TableDef, write: bool) -> StmtResult<()> {
    if def.kind == TableKind::Shared && !crate::provider::shared_access(def, caller.role, write) {
        return Err(denied(format!(
            "{} SHARED table {} (access level {}) is not allowed for role {}",
            if write { "writing to" } else { "reading" },
            def.qualified_name(),
            def.options
                .access_level
                .unwrap_or(AccessLevel::Private)
                .name(),
            caller.role.name()
        )));
    }
    Ok(())
}

/// ALTER TABLE: role service and up, whatever the table's type. A table's schema is every
/// user's: a column one user dropped from a USER table would be gone for all of them. (The
/// reference lets role user alter USER and STREAM tables; FoldDB is stricter.)
pub(super) fn alter_allowed(caller: &Caller, def: &TableDef) -> StmtResult<()> {
    if caller.role == Role::User {
        return Err(denied(format!(
            "altering {} table {} requires the service, dba or system role: its schema is \
             shared by every user",
            def.kind.name(),
            def.qualified_name()
        )));
    }
    Ok(())
}

/// The tables a query or DML statement names, in any disguise (joins, subqueries, CTEs,
/// UNION, INSERT … SELECT), as (namespace, table, written); none when it does not parse
/// (that is reported when it runs, and the providers check access again then).
pub(super) fn named_tables(namespace: &str, p: &Prepared) -> Vec<(String, String, bool)> {
    let Ok(parsed) = p.ast() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let target = write_target(parsed);
    let _ = sql::visit_relations(parsed, |r: &sql::ObjectName| {
        let parts: Vec<String> =
            r.0.iter()
                .filter_map(|p| p.as_ident())
                .map(|i| i.value.to_ascii_lowercase())
                .collect();
        let resolved = match parts.as_slice() {
            [t] => Some((namespace.to_owned(), t.clone())),
            [ns, t] | [_, ns, t] => Some((ns.clone(), t.clone())),
            _ => None,
        };
        if let Some((ns, t)) = resolved {
            out.push((ns, t, target.as_ref() == Some(r)));
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    out
}

/// The table an INSERT, UPDATE or DELETE writes.
pub(super) fn write_target(s: &sql::Statement) -> Option<sql::ObjectName> {
    let relation = match s {
        sql::Statement::Insert(i) => match &i.table {
            TableObject::TableName(n) => return Some(n.clone()),
            _ => return None,
        },
        sql::Statement::Update(u) => &u.table.relation,
        sql::Statement::Delete(d) => match &d.from {
            FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => &t.first()?.relation,
        },
        _ => return None,
    };
    match relation {
        TableFactor::Table { name, .. } => Some(name.clone()),
        _ => None,
    }
}

/// Whether a statement names `system.<table>` anywhere (a token `system` then `.`: not
/// inside a string literal or a longer name).
pub(super) fn references_system<'a>(tokens: impl Iterator<Item = &'a Token>) -> bool {
    let toks: Vec<&Token> = tokens
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    toks.windows(2).any(|w| {
        matches!(w[0], Token::Word(word) if word.value.eq_ignore_ascii_case("system"))
            && matches!(w[1], Token::Period)
    })
}

#[cfg(test)]
#[path = "engine_authz_test.rs"]
mod tests;
