//! The crate's error type: why one statement failed, by kind. The kind decides the API error
//! code the client gets ([`Error::code`]) and whether a caller below dba may read the message
//! ([`Error::is_public`]); the message text itself never decides anything.

use folddb_materializer::RejectKind;

use crate::request::ErrorCode;

/// Why one statement failed. The message of each variant is the text the client reads (the
/// API's, kept as KalamDB's clients know them); the variant is what it means.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not a statement this server runs: a parse error, an unsupported statement, clause or
    /// option, a malformed definition.
    #[error("{0}")]
    InvalidSql(String),
    /// A table definition that breaks the rules of tables: a duplicate column, a primary key
    /// that is missing, composite or not a column (API.md 1.7.4 lists such messages as
    /// safe).
    #[error("{0}")]
    Definition(String),
    /// A value the request gives is out of range or malformed.
    #[error("{0}")]
    InvalidInput(String),
    /// The caller's role may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// Something the statement names is not there: a namespace, table, column, user,
    /// storage, job or live query.
    #[error("{0}")]
    NotFound(String),
    /// A name the statement would create is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// A value breaks a rule of its table: its primary key, NOT NULL.
    #[error("{0}")]
    Constraint(String),
    /// A well-formed statement asks for what its object does not allow: a primary-key or
    /// system column changed, a running job stopped.
    #[error("{0}")]
    NotAllowed(String),
    /// The log rejected the write: a precondition on the state failed when it applied.
    #[error("{message}")]
    Rejected { kind: RejectKind, message: String },
    /// A valid statement failed while it was planned or ran (a type error, an expression
    /// that cannot be evaluated, DataFusion's own errors).
    #[error("{0}")]
    Execution(String),
    /// A limit of the request or the server was reached.
    #[error("{message}")]
    Limit { code: ErrorCode, message: String },
    /// The write was not accepted (no leader, shutting down): nothing changed.
    #[error("{0}")]
    Unavailable(String),
    /// The node failed underneath (its own state, a hash), or a write's outcome is unknown.
    #[error("{0}")]
    Internal(String),
}

/// How an error sorts (STYLE.md "Errors").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The caller's mistake, or a precondition of the state: retrying the same request
    /// gives the same answer (a conflict aside).
    InvalidInput,
    /// The environment: the node, its disk or the cluster; maybe retryable.
    Io,
    /// A broken invariant of this program.
    Internal,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> Kind {
        match self {
            Error::Unavailable(_) => Kind::Io,
            Error::Internal(_) => Kind::Internal,
            _ => Kind::InvalidInput,
        }
    }

    /// The API error code (API.md 1.7.4).
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidSql(_) | Error::Definition(_) => ErrorCode::InvalidSql,
            Error::InvalidInput(_) => ErrorCode::InvalidInput,
            Error::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Error::NotFound(_)
            | Error::AlreadyExists(_)
            | Error::Constraint(_)
            | Error::NotAllowed(_)
            | Error::Rejected { .. }
            | Error::Execution(_) => ErrorCode::SqlExecutionError,
            Error::Limit { code, .. } => *code,
            Error::Unavailable(_) => ErrorCode::ClusterUnavailable,
            Error::Internal(_) => ErrorCode::InternalError,
        }
    }

    /// Whether a caller below dba may read the message (API.md 1.7.4): what it says of the
    /// caller's own statement and the objects it names (missing or taken names, its rows'
    /// keys, a permission, a limit, a conflict to retry). Parse errors, DataFusion's
    /// messages, internal failures and rejections that describe the server's configuration
    /// are replaced by a fixed text.
    pub fn is_public(&self) -> bool {
        match self {
            Error::InvalidInput(_)
            | Error::Definition(_)
            | Error::PermissionDenied(_)
            | Error::NotFound(_)
            | Error::AlreadyExists(_)
            | Error::Constraint(_)
            | Error::NotAllowed(_)
            | Error::Limit { .. }
            | Error::Unavailable(_) => true,
            Error::Rejected { kind, .. } => match kind {
                RejectKind::NotFound
                | RejectKind::AlreadyExists
                | RejectKind::Constraint
                | RejectKind::Conflict => true,
                RejectKind::Invalid => false,
            },
            Error::InvalidSql(_) | Error::Execution(_) | Error::Internal(_) => false,
        }
    }

    /// The message, whatever the variant.
    pub fn message(&self) -> &str {
        match self {
            Error::InvalidSql(m)
            | Error::Definition(m)
            | Error::InvalidInput(m)
            | Error::PermissionDenied(m)
            | Error::NotFound(m)
            | Error::AlreadyExists(m)
            | Error::Constraint(m)
            | Error::NotAllowed(m)
            | Error::Execution(m)
            | Error::Unavailable(m)
            | Error::Internal(m) => m,
            Error::Rejected { message, .. } | Error::Limit { message, .. } => message,
        }
    }
}

/// A message with no more specific kind: a statement that failed while it ran.
impl From<String> for Error {
    fn from(message: String) -> Error {
        Error::Execution(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Error {
        Error::Execution(message.to_owned())
    }
}

/// DataFusion's errors are its own texts (not the caller's to read), except a limit it
/// enforces, and this crate's own errors raised inside a plan (a table provider's), which
/// travel as `External` and come back as they were.
impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Error {
        use datafusion::error::DataFusionError as Df;
        match e.find_root() {
            Df::External(inner) if inner.is::<Error>() => inner
                .downcast_ref::<Error>()
                .cloned()
                .unwrap_or_else(|| Error::Internal("a typed error could not be read back".into())),
            Df::ResourcesExhausted(_) => Error::Limit {
                code: ErrorCode::SqlExecutionError,
                message: e.strip_backtrace(),
            },
            _ => Error::Execution(e.strip_backtrace()),
        }
    }
}

impl From<folddb_materializer::Error> for Error {
    fn from(e: folddb_materializer::Error) -> Error {
        Error::Internal(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_decides_code_and_visibility() {
        let rejected = |kind| Error::Rejected {
            kind,
            message: "m".into(),
        };
        assert!(rejected(RejectKind::Constraint).is_public());
        assert!(rejected(RejectKind::Conflict).is_public());
        assert!(!rejected(RejectKind::Invalid).is_public());
        assert_eq!(
            rejected(RejectKind::NotFound).code(),
            ErrorCode::SqlExecutionError
        );
        // The text does not matter: a parse error that mentions a permission stays hidden.
        let parse = Error::InvalidSql("permission denied: not found".into());
        assert!(!parse.is_public());
        assert_eq!(parse.code(), ErrorCode::InvalidSql);
        assert!(Error::NotFound("x".into()).is_public());
        assert_eq!(Error::Unavailable("no leader".into()).kind(), Kind::Io);
        assert_eq!(
            Error::Internal("disk".into()).code(),
            ErrorCode::InternalError
        );
        assert!(!Error::Internal("/data/rocksdb: I/O error".into()).is_public());
    }

    #[test]
    fn a_caller_below_dba_reads_only_public_messages() {
        use crate::request::SqlError;
        use folddb_materializer::Role;
        let shown = |e: Error, role| SqlError::from(e).in_statement(1, "SELECT 1").for_role(role);
        let missing = shown(
            Error::NotFound("Table app.t does not exist".into()),
            Role::User,
        );
        assert_eq!(
            missing.message,
            "Statement 2 failed: Table app.t does not exist"
        );
        assert_eq!(missing.details, None, "the SQL is for dba and system");
        let internal = Error::Internal("RocksDB failed in /srv/data".into());
        let hidden = shown(internal.clone(), Role::Service);
        assert_eq!(
            (hidden.code, hidden.message.as_str()),
            (ErrorCode::InternalError, "SQL request failed")
        );
        let dba = shown(internal, Role::Dba);
        assert!(dba.message.contains("/srv/data"), "{}", dba.message);
        assert_eq!(dba.details.as_deref(), Some("SELECT 1"));
        // DataFusion's texts are hidden, this crate's errors raised inside a plan are not.
        let df = datafusion::error::DataFusionError::Plan("no such field".into());
        assert_eq!(shown(df.into(), Role::User).message, "SQL statement failed");
        let ours = datafusion::error::DataFusionError::External(Box::new(Error::PermissionDenied(
            "Permission denied: x".into(),
        )));
        let back = Error::from(ours);
        assert_eq!(back, Error::PermissionDenied("Permission denied: x".into()));
    }
}
