//! `SELECT … FROM ns.t AS OF <_seq>` (or `AS OF TIMESTAMP '…'`): a table as it was at a
//! past point within the change journal's window. A row whose current version is at or
//! below the point has not changed since and comes from the table as it is (hot and cold
//! tiers, one scan with `_seq <= point`); every other row's version at the point is the old
//! image of its first change after the point (none: the row did not exist then), read from
//! the journal (`materializer/FORMAT.md`, "`journal`").

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::union::UnionExec;
use datafusion::prelude::{col, lit};
use folddb_materializer::journal;
use folddb_materializer::{EventFold, Seq, TableDef, TableKind};

use crate::error::Error;
use crate::provider::{Caller, HotTable, View, rows_batch};

/// Changes read from the journal at a time.
const CHUNK: usize = 10_000;

/// Where an `AS OF` points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// After the version with this `_seq`.
    Seq(i64),
    /// After every version written at or before this Unix millisecond.
    UnixMs(u64),
}

impl Point {
    /// The point of a rewritten table name's suffix (`crate::dialect::AS_OF_MARK`).
    pub fn parse(text: &str) -> Option<Point> {
        match text.strip_prefix('t') {
            Some(ms) => ms.parse().ok().map(Point::UnixMs),
            None => text.parse().ok().map(Point::Seq),
        }
    }
}

/// One table as it was at a point.
#[derive(Debug)]
pub struct AsOfTable {
    hot: HotTable,
    at: i64,
    /// The versions at the point of the rows changed since.
    before: RecordBatch,
}

fn invalid(m: String) -> Error {
    Error::InvalidInput(m)
}

impl AsOfTable {
    pub fn new(
        view: View,
        def: TableDef,
        caller: &Caller,
        now_ms: u64,
        point: Point,
    ) -> Result<AsOfTable, Error> {
        if def.kind == TableKind::Stream {
            return Err(invalid(format!(
                "AS OF reads the change journal, which does not record STREAM table {}",
                def.qualified_name()
            )));
        }
        let store = view.store().clone();
        let newest = EventFold::last_seq(&store)?.unwrap_or(0);
        let at = match point {
            Point::Seq(seq) if seq > newest => {
                return Err(invalid(format!(
                    "AS OF {seq} is newer than anything applied (newest _seq {newest})"
                )));
            }
            Point::Seq(seq) => seq,
            // The last _seq of the millisecond; a time still to come is now.
            Point::UnixMs(ms) => (Seq::at_unix_ms(ms.saturating_add(1)).0 - 1).min(newest),
        };
        if let Some(horizon) = journal::horizon_seq(&store)?
            && at < horizon
        {
            return Err(invalid(format!(
                "AS OF _seq {at} is older than the change journal's horizon (_seq {horizon}): \
                 its changes are no longer kept; `folddb log replay --to-index` rebuilds any point"
            )));
        }
        let hot = HotTable::new(view, def, caller, now_ms);
        let (table, scope) = (hot.def().id, hot.scope().to_owned());
        let mut seen = HashSet::new();
        let mut versions = Vec::new();
        let mut after = at;
        loop {
            let changes = journal::after_seq(&store, table, &scope, after, CHUNK)?;
            for c in &changes {
                after = c.seq;
                // The first change of a key after the point: its old image is the key's
                // version then.
                if seen.insert(c.pk.plain())
                    && let Some(old) = c.old.as_ref().filter(|v| !v.deleted)
                {
                    versions.push(old.clone());
                }
            }
            if changes.len() < CHUNK {
                break;
            }
        }
        let before = rows_batch(hot.def(), &hot.schema(), &versions)
            .map_err(|e| Error::Internal(format!("the versions AS OF {at}: {e}")))?;
        Ok(AsOfTable { hot, at, before })
    }
}

#[async_trait]
impl TableProvider for AsOfTable {
    fn schema(&self) -> SchemaRef {
        self.hot.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Both parts see the filters; the query applies them again over the union.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut unchanged = filters.to_vec();
        unchanged.push(col("_seq").lt_eq(lit(self.at)));
        let current = self.hot.scan(state, projection, &unchanged, None).await?;
        let then = MemTable::try_new(self.schema(), vec![vec![self.before.clone()]])?
            .scan(state, projection, &[], None)
            .await?;
        UnionExec::try_new(vec![current, then])
    }
}
