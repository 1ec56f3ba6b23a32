//! Authorization of statements before any of a request runs (API.md 3.8, 3.9): roles,
//! SHARED access levels, system tables in any disguise, and EXECUTE AS USER.

use super::*;

impl Engine {
    /// What `caller` may do with one statement (API.md 3.8, 3.9), checked for every
    /// statement of a batch before any of them runs.
    pub(super) fn authorize(
        &self,
        caller: &Caller,
        namespace: &str,
        stmt: &Statement,
        sql_text: &str,
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
            | Statement::Delete => self.authorize_tables(caller, namespace, sql_text),
            Statement::CreateTable(ct) => plan_create_table(ct, caller, namespace).map(|_| ()),
            Statement::AlterTable { table, .. } => match self.table(namespace, table) {
                Ok(def) => alter_allowed(caller, &def),
                Err(_) => Ok(()), // reported when it runs
            },
            Statement::ExecuteAs { user, sql } => {
                let (target, inner, inner_sql) = self.impersonate(caller, user, sql)?;
                for (ns, t, _) in named_tables(namespace, &inner_sql) {
                    if let Ok(Some(def)) = catalog::table(self.store.as_ref(), &ns, &t)
                        && def.kind == TableKind::Shared
                    {
                        return Err(Fail(
                            ErrorCode::SqlExecutionError,
                            format!(
                                "EXECUTE AS USER is not allowed on SHARED tables ({}); it applies to USER and STREAM tables",
                                def.qualified_name()
                            ),
                        ));
                    }
                }
                self.authorize(&target, namespace, &inner, &inner_sql)
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
        sql_text: &str,
    ) -> StmtResult<()> {
        if !caller.role.is_admin() && references_system(sql_text) {
            return Err(denied(
                "system tables require the dba or system role".into(),
            ));
        }
        for (ns, t, write) in named_tables(namespace, sql_text) {
            if ns == "system" || ns == "information_schema" {
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

    /// `EXECUTE AS USER`: the identity the statement runs as, the statement and its text
    /// (API.md 3.9). A regular user may only name itself; service may act as users and
    /// services, dba also as dbas, system as anyone. Ids unknown here count as regular users.
    pub(super) fn impersonate(
        &self,
        caller: &Caller,
        user: &str,
        sql_text: &str,
    ) -> StmtResult<(Caller, Statement, String)> {
        let single = || {
            Fail(
                ErrorCode::InvalidInput,
                "EXECUTE AS USER must wrap exactly one single SQL statement".into(),
            )
        };
        let stmts = crate::split::split_statements(sql_text).map_err(|_| single())?;
        let [inner_sql] = stmts.as_slice() else {
            return Err(single());
        };
        let inner = dialect::classify(inner_sql).map_err(|m| Fail(ErrorCode::InvalidSql, m))?;
        if matches!(inner, Statement::ExecuteAs { .. }) {
            return Err(Fail(
                ErrorCode::InvalidInput,
                "EXECUTE AS USER cannot be nested".into(),
            ));
        }
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
                "role {} cannot execute as user '{user}' (role {})",
                caller.role.name(),
                target_role.name()
            )));
        }
        Ok((
            Caller {
                user: user.to_owned(),
                role: Role::User,
            },
            inner,
            (*inner_sql).to_owned(),
        ))
    }
}
