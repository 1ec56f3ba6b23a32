//! A SQL request and what answers it (API.md 1.7): the request, its limits, the results,
//! and the error codes with their redaction for roles below dba.

use folddb_materializer::Role;
use serde::Serialize;
use serde_json::Value as Json;

/// The limits of API.md 1.7.1 and 6.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest `sql` text, bytes (default 1 MiB).
    pub max_sql_bytes: usize,
    /// Most `params` (default 50).
    pub max_params: usize,
    /// Largest single parameter, bytes of its JSON (default 512 KiB).
    pub max_param_bytes: usize,
    /// bcrypt cost of the passwords CREATE / ALTER USER hash (default 12).
    pub bcrypt_cost: u32,
    /// Most statements in one request (default 1,000).
    pub max_statements: usize,
    /// Longest a request's statements may run, together (default 30 s). A statement still
    /// running then is cancelled; one that proposed a write has an unknown outcome.
    pub statement_timeout: std::time::Duration,
    /// Largest result one query may return, bytes of Arrow data (default 64 MiB).
    pub max_result_bytes: usize,
    /// Memory all running queries may hold for sorts, aggregations and joins (default
    /// 2 GiB); past it they fail with a clear error.
    pub query_memory_bytes: usize,
    /// Largest value one call of `repeat`, `lpad`, `rpad` or `array_repeat` may build
    /// (default 64 MiB).
    pub max_value_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_sql_bytes: 1 << 20,
            max_params: 50,
            max_param_bytes: 512 << 10,
            bcrypt_cost: 12,
            max_statements: 1000,
            statement_timeout: std::time::Duration::from_secs(30),
            max_result_bytes: 64 << 20,
            query_memory_bytes: 2 << 30,
            max_value_bytes: 64 << 20,
        }
    }
}

/// A SQL request (API.md 1.7.1).
#[derive(Debug, Clone, Default)]
pub struct SqlRequest {
    pub sql: String,
    pub params: Option<Vec<Json>>,
    pub namespace: Option<String>,
}

/// The error codes of API.md 1.7.4 that the engine produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidParameter,
    ParamsWithBatch,
    EmptySql,
    BatchParseError,
    InvalidSql,
    PermissionDenied,
    InvalidInput,
    SqlExecutionError,
    ClusterUnavailable,
    InternalError,
    /// The request ran past its statement timeout (FoldDB's own code).
    StatementTimeout,
    /// A query's result is larger than the configured limit (FoldDB's own code).
    ResultTooLarge,
    /// Uploads (API.md 1.7.1): a file over the size limit, more files than allowed, a
    /// placeholder without its part, a part without its placeholder.
    FileTooLarge,
    TooManyFiles,
    MissingFile,
    ExtraFile,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidParameter => "INVALID_PARAMETER",
            ErrorCode::ParamsWithBatch => "PARAMS_WITH_BATCH",
            ErrorCode::EmptySql => "EMPTY_SQL",
            ErrorCode::BatchParseError => "BATCH_PARSE_ERROR",
            ErrorCode::InvalidSql => "INVALID_SQL",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::InvalidInput => "INVALID_INPUT",
            ErrorCode::SqlExecutionError => "SQL_EXECUTION_ERROR",
            ErrorCode::ClusterUnavailable => "CLUSTER_UNAVAILABLE",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::StatementTimeout => "STATEMENT_TIMEOUT",
            ErrorCode::ResultTooLarge => "RESULT_TOO_LARGE",
            ErrorCode::FileTooLarge => "FILE_TOO_LARGE",
            ErrorCode::TooManyFiles => "TOO_MANY_FILES",
            ErrorCode::MissingFile => "MISSING_FILE",
            ErrorCode::ExtraFile => "EXTRA_FILE",
        }
    }
}

/// A failed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub code: ErrorCode,
    pub message: String,
    /// The failing statement's SQL (shown to dba and system only).
    pub details: Option<String>,
    /// Whether a caller below dba may read `message` ([`crate::error::Error::is_public`]).
    pub public: bool,
}

impl SqlError {
    /// An error of the request itself (its parameters, its size, its batch): its message is
    /// for every caller unless `code` is one whose messages may carry more.
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> SqlError {
        SqlError {
            code,
            message: message.into(),
            details: None,
            public: !matches!(
                code,
                ErrorCode::SqlExecutionError
                    | ErrorCode::InvalidSql
                    | ErrorCode::BatchParseError
                    | ErrorCode::InternalError
            ),
        }
    }

    /// The error as statement `index` (0-based) of the request, `sql`, failed with it.
    pub(crate) fn in_statement(mut self, index: usize, sql: &str) -> SqlError {
        self.message = format!("Statement {} failed: {}", index + 1, self.message);
        self.details = Some(sql.to_owned());
        self
    }

    /// The error as a caller of `role` may see it (API.md 1.7.4): dba and system see
    /// everything; others get a fixed text unless the error's kind says its message is
    /// theirs to read.
    pub fn for_role(mut self, role: Role) -> SqlError {
        if role.is_admin() {
            return self;
        }
        self.details = None;
        if !self.public {
            self.message = match self.code {
                ErrorCode::SqlExecutionError => "SQL statement failed".into(),
                ErrorCode::InvalidSql => "SQL statement is invalid or not allowed".into(),
                ErrorCode::BatchParseError => "Failed to parse SQL batch".into(),
                ErrorCode::InternalError => "SQL request failed".into(),
                _ => self.message,
            };
        }
        self
    }
}

impl From<crate::error::Error> for SqlError {
    fn from(e: crate::error::Error) -> SqlError {
        SqlError {
            code: e.code(),
            public: e.is_public(),
            message: match e {
                crate::error::Error::Rejected { message, .. }
                | crate::error::Error::Limit { message, .. } => message,
                other => other.message().to_owned(),
            },
            details: None,
        }
    }
}

/// One column of a result's schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnInfo {
    pub name: String,
    pub data_type: Json,
    pub index: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

/// One entry of `results` (API.md 1.7.3).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryResult {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schema: Vec<ColumnInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<Vec<Vec<Json>>>,
    pub row_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub as_user: String,
}

/// What a request produced.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlResponse {
    pub results: Vec<QueryResult>,
    /// Exactly one statement, and it returned rows (the streamed shape, with `"error":null`).
    pub single_query: bool,
}
