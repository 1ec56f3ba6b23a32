//! FILE cells (API.md 3.5): which stored files a table scope still references. A FILE cell
//! holds a `FileRef` as JSON text; the file it names may still be read while a visible row
//! holds it, or while the change journal holds a version of a row that did (`AS OF`, log
//! tails). Any other file of the scope — replaced or deleted past the journal's reach, or
//! stored for a statement that never committed — can go.

use std::collections::{HashMap, HashSet};

use arrow::array::{Array, AsArray};

use crate::cold::ColdStore;
use crate::error::{Error, Result};
use crate::hot::HotStore;
use crate::scan::{ScanSpec, scan_scope};
use crate::value::{DataType, Value};
use crate::{TableDef, convert, journal};

/// Journal changes read at a time.
const JOURNAL_PAGE: usize = 4096;

/// The `id` of the `FileRef` JSON `text`, if it is one.
pub fn file_id(text: &str) -> Option<String> {
    let parsed: serde_json::Value = serde_json::from_str(text).ok()?;
    parsed.get("id")?.as_str().map(str::to_owned)
}

/// The ids of the files `scope` of `def` references: in its visible rows, hot and cold, and
/// in the row versions its journal still holds.
pub fn referenced(
    store: &HotStore,
    cold: Option<&ColdStore>,
    def: &TableDef,
    scope: &str,
) -> Result<HashSet<String>> {
    Ok(references(store, cold, def, scope)?.into_keys().collect())
}

/// The same, each id with its `FileRef` JSON text.
pub fn references(
    store: &HotStore,
    cold: Option<&ColdStore>,
    def: &TableDef,
    scope: &str,
) -> Result<HashMap<String, String>> {
    let columns: Vec<&crate::ColumnDef> = def
        .columns
        .iter()
        .filter(|c| c.data_type == DataType::File)
        .collect();
    let mut ids = HashMap::new();
    if columns.is_empty() {
        return Ok(ids);
    }
    let schema = convert::table_schema(def);
    let projection: Vec<usize> = columns
        .iter()
        .filter_map(|c| schema.index_of(&c.name).ok())
        .collect();
    let spec = ScanSpec::visible(def, &projection);
    scan_scope(store, None, cold, scope, &spec, &mut |batch| {
        for column in batch.columns() {
            if let Some(texts) = column.as_string_opt::<i32>() {
                for row in 0..texts.len() {
                    if texts.is_valid(row)
                        && let Some(id) = file_id(texts.value(row))
                    {
                        ids.insert(id, texts.value(row).to_owned());
                    }
                }
            }
        }
        true
    })
    .map_err(|e| Error::ColdRead {
        reason: format!("scanning {}: {e}", def.qualified_name()),
    })?;
    let mut after = (0, 0);
    loop {
        let changes = journal::after_position(store, def.id, scope, after, JOURNAL_PAGE)?;
        for change in &changes {
            for version in [&change.old, &change.new].into_iter().flatten() {
                for c in &columns {
                    if let Some(Value::File(text) | Value::Text(text)) = version.cell(c.id)
                        && let Some(id) = file_id(text)
                    {
                        ids.insert(id, text.clone());
                    }
                }
            }
        }
        match changes.last() {
            Some(last) if changes.len() == JOURNAL_PAGE => after = last.scope_position(),
            _ => return Ok(ids),
        }
    }
}
