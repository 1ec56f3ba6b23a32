//! FoldDB's storage statements: CREATE STORAGE and ALTER STORAGE (API.md 3.10), parsed
//! from the dialect's tokens.

use super::*;

/// The clauses of CREATE STORAGE, as written (checked when the storage is built).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageSpec {
    /// `TYPE`: `filesystem`, `s3`, …, lowercase.
    pub kind: String,
    pub name: Option<String>,
    pub description: Option<String>,
    /// `PATH` or `BASE_DIRECTORY`.
    pub location: Option<String>,
    pub bucket: Option<String>,
    pub region: Option<String>,
    pub shared_tables_template: Option<String>,
    pub user_tables_template: Option<String>,
    pub credentials: Option<String>,
    pub config: Option<String>,
}

/// What ALTER STORAGE … SET changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageField {
    Name,
    Description,
    SharedTablesTemplate,
    UserTablesTemplate,
    Credentials,
    Config,
}

impl StorageField {
    fn parse(word: &str) -> Option<StorageField> {
        Some(match word {
            "name" => StorageField::Name,
            "description" => StorageField::Description,
            "shared_tables_template" => StorageField::SharedTablesTemplate,
            "user_tables_template" => StorageField::UserTablesTemplate,
            "credentials" => StorageField::Credentials,
            "config" => StorageField::Config,
            _ => return None,
        })
    }
}

/// A storage id: lowercase letters, digits and `_`, starting with a letter, at most 64.
pub(super) fn validate_storage_id(id: &str) -> Result<(), ParseError> {
    let ok = id.len() <= 64
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Invalid storage id '{id}': use lowercase letters, digits and '_', starting with a letter"
        ))
    }
}

pub(super) fn parse_create_storage(c: &mut Cursor) -> Result<Statement, ParseError> {
    let if_not_exists = c.if_not_exists()?;
    let id = c.ident()?;
    validate_storage_id(&id)?;
    let mut spec = StorageSpec::default();
    while let Some(word) = c.word() {
        let word = word.to_ascii_lowercase();
        let slot = match word.as_str() {
            "type" => {
                spec.kind = match c.next() {
                    Some(Token::SingleQuotedString(s)) => s.to_ascii_lowercase(),
                    Some(Token::Word(w)) => w.value.to_ascii_lowercase(),
                    _ => return Err("CREATE STORAGE … TYPE expects a storage type".into()),
                };
                continue;
            }
            "name" => &mut spec.name,
            "description" => &mut spec.description,
            "path" | "base_directory" => &mut spec.location,
            "bucket" => &mut spec.bucket,
            "region" => &mut spec.region,
            "shared_tables_template" => &mut spec.shared_tables_template,
            "user_tables_template" => &mut spec.user_tables_template,
            "credentials" => &mut spec.credentials,
            "config" => &mut spec.config,
            other => {
                return Err(format!(
                    "CREATE STORAGE does not know '{}': expected TYPE, NAME, DESCRIPTION, PATH, BASE_DIRECTORY, BUCKET, REGION, SHARED_TABLES_TEMPLATE, USER_TABLES_TEMPLATE, CREDENTIALS or CONFIG",
                    other.to_ascii_uppercase()
                ));
            }
        };
        if slot.is_some() {
            return Err(format!(
                "CREATE STORAGE gives {} twice",
                word.to_ascii_uppercase()
            ));
        }
        *slot = Some(c.string(&format!("CREATE STORAGE … {}", word.to_ascii_uppercase()))?);
    }
    c.end()?;
    if spec.kind.is_empty() {
        return Err("CREATE STORAGE needs a TYPE ('filesystem' or 's3')".into());
    }
    Ok(Statement::CreateStorage {
        id,
        if_not_exists,
        spec,
    })
}

pub(super) fn parse_alter_storage(c: &mut Cursor) -> Result<Statement, ParseError> {
    let id = c.ident()?;
    let mut changes = Vec::new();
    while c.keyword("set") {
        let word = c.word().unwrap_or_default().to_ascii_lowercase();
        let field = StorageField::parse(&word).ok_or_else(|| {
            format!(
                "ALTER STORAGE … SET expects NAME, DESCRIPTION, SHARED_TABLES_TEMPLATE, USER_TABLES_TEMPLATE, CREDENTIALS or CONFIG, found '{word}'"
            )
        })?;
        let value = c.string(&format!(
            "ALTER STORAGE … SET {}",
            word.to_ascii_uppercase()
        ))?;
        changes.push((field, value));
        c.token(&Token::Comma);
    }
    c.end()?;
    if changes.is_empty() {
        return Err("ALTER STORAGE expects SET <field> '<value>'".into());
    }
    Ok(Statement::AlterStorage { id, changes })
}
