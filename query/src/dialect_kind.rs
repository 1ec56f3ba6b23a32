//! What kind of statement a [`Statement`] is, as `/metrics` counts them.

use super::Statement;

impl Statement {
    /// Its kind, as `/metrics` counts statements: `select`, `insert`, `update`, `delete`,
    /// `ddl`, `transaction`, `user`, `storage`, `show`, `subscribe`, `topic`, `execute_as`,
    /// `admin`.
    pub fn kind(&self) -> &'static str {
        match self {
            Statement::Query => "select",
            Statement::Insert => "insert",
            Statement::Update => "update",
            Statement::Delete => "delete",
            Statement::CreateNamespace { .. }
            | Statement::DropNamespace { .. }
            | Statement::AlterNamespace { .. }
            | Statement::CreateTable(_)
            | Statement::AlterTable { .. }
            | Statement::DropTable { .. }
            | Statement::Use(_) => "ddl",
            Statement::Begin | Statement::Commit | Statement::Rollback => "transaction",
            Statement::CreateUser { .. }
            | Statement::AlterUser { .. }
            | Statement::DropUser { .. } => "user",
            Statement::Storage { .. }
            | Statement::StorageCheck { .. }
            | Statement::CreateStorage { .. }
            | Statement::AlterStorage { .. }
            | Statement::DropStorage { .. } => "storage",
            Statement::ShowNamespaces
            | Statement::ShowTables { .. }
            | Statement::Describe { .. }
            | Statement::ShowStats(_)
            | Statement::ShowStorages
            | Statement::ShowManifest => "show",
            Statement::Subscribe { .. } => "subscribe",
            Statement::Topic(_) => "topic",
            Statement::ExecuteAs { .. } => "execute_as",
            Statement::Meta
            | Statement::KillLiveQuery(_)
            | Statement::KillJob(_)
            | Statement::Cluster(_)
            | Statement::Backup(_) => "admin",
        }
    }
}
