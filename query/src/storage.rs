//! The storage DDL (API.md 3.10): CREATE STORAGE and ALTER STORAGE turned into a checked
//! [`StorageDef`]; the backends themselves are the materializer's
//! (`folddb_materializer::cold::backend`).

use std::path::Path;

use folddb_materializer::cold::backend::{BackendResult, check};
use folddb_materializer::{StorageDef, StorageKind, catalog};

use crate::dialect::{StorageField, StorageSpec};

/// The storage CREATE STORAGE `id` describes, checked: a known type with the location it
/// needs, valid templates, JSON settings the backend accepts. Times are set at apply.
pub fn define(id: &str, spec: &StorageSpec) -> BackendResult<StorageDef> {
    let kind = match spec.kind.as_str() {
        "filesystem" | "local" => StorageKind::Filesystem,
        "s3" => StorageKind::S3,
        "gcs" | "azure" => {
            return Err(format!(
                "Storage type '{}' is not supported by this build: use 'filesystem' or 's3'",
                spec.kind
            ));
        }
        other => {
            return Err(format!(
                "Unknown storage type '{other}': use 'filesystem' or 's3'"
            ));
        }
    };
    let base_directory = match kind {
        StorageKind::Filesystem => {
            if spec.bucket.is_some() || spec.region.is_some() {
                return Err("A filesystem storage takes PATH, not BUCKET or REGION".into());
            }
            let path = spec
                .location
                .clone()
                .ok_or("A filesystem storage needs PATH '<absolute directory>'")?;
            if !Path::new(&path).is_absolute() {
                return Err(format!(
                    "PATH '{path}' must be an absolute directory (the node's own files are the 'local' storage)"
                ));
            }
            path.trim_end_matches('/').to_owned()
        }
        StorageKind::S3 => match (&spec.bucket, &spec.location) {
            (Some(bucket), None) => format!("s3://{}", bucket.trim_matches('/')),
            (None, Some(url)) => url.trim_end_matches('/').to_owned(),
            _ => {
                return Err(
                    "An s3 storage needs BUCKET '<bucket>' or PATH 's3://bucket/prefix'".into(),
                );
            }
        },
    };
    let def = StorageDef {
        id: id.to_owned(),
        name: spec.name.clone().unwrap_or_else(|| id.to_owned()),
        description: spec.description.clone(),
        kind,
        base_directory,
        region: spec.region.clone(),
        credentials: spec.credentials.clone(),
        config: spec.config.clone().unwrap_or_else(|| "{}".into()),
        shared_tables_template: spec.shared_tables_template.as_deref().map_or_else(
            || catalog::DEFAULT_SHARED_TEMPLATE.into(),
            |t| catalog::normalize_template(t, false),
        ),
        user_tables_template: spec.user_tables_template.as_deref().map_or_else(
            || catalog::DEFAULT_USER_TEMPLATE.into(),
            |t| catalog::normalize_template(t, true),
        ),
        created_at_ms: 0,
        updated_at_ms: 0,
    };
    check(&def)?;
    Ok(def)
}

/// `current` with ALTER STORAGE's `changes`, checked like a new one.
pub fn alter(
    current: &StorageDef,
    changes: &[(StorageField, String)],
) -> BackendResult<StorageDef> {
    let mut def = current.clone();
    for (field, value) in changes {
        match field {
            StorageField::Name => def.name = value.clone(),
            StorageField::Description => def.description = Some(value.clone()),
            StorageField::SharedTablesTemplate => {
                def.shared_tables_template = catalog::normalize_template(value, false)
            }
            StorageField::UserTablesTemplate => {
                def.user_tables_template = catalog::normalize_template(value, true)
            }
            StorageField::Credentials => def.credentials = Some(value.clone()),
            StorageField::Config => def.config = value.clone(),
        }
    }
    check(&def)?;
    Ok(def)
}
