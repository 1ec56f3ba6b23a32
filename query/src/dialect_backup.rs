//! `BACKUP DATABASE`, `RESTORE DATABASE`, `SHOW BACKUPS`, `EXPORT USER DATA` and `SHOW
//! EXPORT` (API.md 3.13), parsed from the dialect's tokens.

use super::*;

/// One statement moving a database or a user's data out of the server or back in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupCommand {
    /// `BACKUP DATABASE [[IF EXISTS] ns] TO '/path'`: `None` is the whole database.
    Backup {
        namespace: Option<String>,
        if_exists: bool,
        path: String,
    },
    /// `RESTORE DATABASE [[IF NOT EXISTS] ns] FROM '/path'`: `None` restores every
    /// namespace the backup holds.
    Restore {
        namespace: Option<String>,
        if_not_exists: bool,
        path: String,
    },
    /// `SHOW BACKUP[S] FOR DATABASE ns`.
    ShowBackups { namespace: String },
    /// `EXPORT USER DATA`: the caller's own rows and files.
    ExportUserData,
    /// `SHOW EXPORT[S]`: the caller's exports.
    ShowExport,
}

/// The rest of a statement after `BACKUP`.
pub(super) fn parse_backup(c: &mut Cursor) -> Result<Statement, ParseError> {
    expect_database(c, "BACKUP")?;
    let if_exists = c.if_exists()?;
    let namespace = if c.peek_word().as_deref() == Some("to") && !if_exists {
        None
    } else {
        Some(c.ident()?)
    };
    c.expect("to")?;
    let path = c.string("BACKUP DATABASE … TO")?;
    c.end().map(|_| {
        Statement::Backup(BackupCommand::Backup {
            namespace,
            if_exists,
            path,
        })
    })
}

/// The rest of a statement after `RESTORE`.
pub(super) fn parse_restore(c: &mut Cursor) -> Result<Statement, ParseError> {
    expect_database(c, "RESTORE")?;
    let if_not_exists = c.if_not_exists()?;
    let namespace = if c.peek_word().as_deref() == Some("from") && !if_not_exists {
        None
    } else {
        Some(c.ident()?)
    };
    c.expect("from")?;
    let path = c.string("RESTORE DATABASE … FROM")?;
    c.end().map(|_| {
        Statement::Backup(BackupCommand::Restore {
            namespace,
            if_not_exists,
            path,
        })
    })
}

/// `SHOW BACKUP[S] FOR DATABASE ns`, after `SHOW BACKUP[S]`.
pub(super) fn parse_show_backups(c: &mut Cursor) -> Result<Statement, ParseError> {
    c.expect("for")?;
    expect_database(c, "SHOW BACKUPS FOR")?;
    let namespace = c.ident()?;
    c.end()
        .map(|_| Statement::Backup(BackupCommand::ShowBackups { namespace }))
}

/// The rest of a statement after `EXPORT`.
pub(super) fn parse_export(c: &mut Cursor) -> Result<Statement, ParseError> {
    c.expect("user")?;
    c.expect("data")?;
    c.end()
        .map(|_| Statement::Backup(BackupCommand::ExportUserData))
}

fn expect_database(c: &mut Cursor, what: &str) -> Result<(), ParseError> {
    if c.keyword("database") || c.keyword("namespace") {
        Ok(())
    } else {
        Err(format!("SQL parse error: {what} expects DATABASE"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> Result<BackupCommand, String> {
        match classify(sql) {
            Ok(Statement::Backup(b)) => Ok(b),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn backup_and_restore_statements_parse() {
        assert_eq!(
            parsed("BACKUP DATABASE TO '/b/all'"),
            Ok(BackupCommand::Backup {
                namespace: None,
                if_exists: false,
                path: "/b/all".into()
            })
        );
        assert_eq!(
            parsed("backup database if exists App to '/b/app';"),
            Ok(BackupCommand::Backup {
                namespace: Some("app".into()),
                if_exists: true,
                path: "/b/app".into()
            })
        );
        assert_eq!(
            parsed("RESTORE DATABASE FROM '/b/all'"),
            Ok(BackupCommand::Restore {
                namespace: None,
                if_not_exists: false,
                path: "/b/all".into()
            })
        );
        assert_eq!(
            parsed("RESTORE DATABASE IF NOT EXISTS app FROM '/b/app'"),
            Ok(BackupCommand::Restore {
                namespace: Some("app".into()),
                if_not_exists: true,
                path: "/b/app".into()
            })
        );
        assert_eq!(
            parsed("SHOW BACKUPS FOR DATABASE app"),
            Ok(BackupCommand::ShowBackups {
                namespace: "app".into()
            })
        );
        assert_eq!(
            parsed("show backup for database app"),
            Ok(BackupCommand::ShowBackups {
                namespace: "app".into()
            })
        );
        assert_eq!(
            parsed("EXPORT USER DATA"),
            Ok(BackupCommand::ExportUserData)
        );
        assert_eq!(parsed("SHOW EXPORT"), Ok(BackupCommand::ShowExport));
        assert_eq!(parsed("SHOW EXPORTS"), Ok(BackupCommand::ShowExport));
    }

    #[test]
    fn malformed_backup_statements_are_refused() {
        for sql in [
            "BACKUP DATABASE app TO /b/app",
            "BACKUP DATABASE app",
            "BACKUP TABLE app.t TO '/x'",
            "BACKUP DATABASE IF EXISTS TO '/x'",
            "RESTORE DATABASE app FROM '/x' now",
            "RESTORE DATABASE app TO '/x'",
            "SHOW BACKUPS app",
            "EXPORT USER",
            "EXPORT USER DATA now",
        ] {
            assert!(parsed(sql).is_err(), "{sql} parsed");
        }
    }
}
