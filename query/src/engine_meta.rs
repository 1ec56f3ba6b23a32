//! Statements that answer about the schema rather than rows: DESCRIBE, SHOW STATS, and
//! SUBSCRIBE TO (which checks a live query and says where to run it).

use super::*;

impl Engine {
    /// SUBSCRIBE TO (API.md 3.11): checks the query and answers where to subscribe.
    pub(super) fn subscribe_statement(
        &self,
        caller: &Caller,
        select: &str,
        options: &[(String, i64)],
    ) -> StmtResult<Out> {
        self.plan_live(caller, select).map_err(|e| match e.code {
            "UNAUTHORIZED" => Error::PermissionDenied(e.message),
            "INVALID_SQL" => Error::InvalidSql(e.message),
            "NOT_FOUND" => Error::NotFound(e.message),
            _ => Error::Execution(e.message),
        })?;
        let mut subscription = serde_json::json!({
            "id": format!("sub-{}", uuid::Uuid::now_v7().simple()),
            "sql": select,
        });
        if !options.is_empty() {
            subscription["options"] = options
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::from(*v)))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        let mut rows = Rows::new(&[
            ("status", DataType::Text),
            ("ws_url", DataType::Text),
            ("subscription", DataType::Json),
            ("message", DataType::Text),
        ]);
        rows.rows.push(vec![
            Value::Text("active".into()),
            Value::Text(self.ws_url.clone()),
            Value::Json(subscription.to_string()),
            Value::Text(
                "WebSocket subscription created. Connect to ws_url to receive updates.".into(),
            ),
        ]);
        Ok(Out::Result(table_result(caller, &rows)?))
    }

    /// DESCRIBE [HISTORY]: under the rules of SELECT.
    pub(super) fn describe(
        &self,
        caller: &Caller,
        namespace: &str,
        table: &TableName,
        history: bool,
    ) -> StmtResult<Out> {
        let def = self.table(namespace, table)?;
        may_read(caller, &def)?;
        let rows = if history {
            system::history(&self.store, &def)?
        } else {
            system::describe(&def, &catalog::vector_indexes(self.store.as_ref(), def.id)?)
        };
        Ok(Out::Result(table_result(caller, &rows)?))
    }

    /// SHOW STATS: under the rules of SELECT.
    pub(super) fn show_stats(
        &self,
        caller: &Caller,
        namespace: &str,
        table: &TableName,
    ) -> StmtResult<Out> {
        let def = self.table(namespace, table)?;
        may_read(caller, &def)?;
        // Like a SELECT: a USER or STREAM table's count is the caller's rows.
        let count = if def.kind.is_per_user() {
            system::scope_row_count(&self.store, &def, &caller.user)?
        } else {
            system::table_row_count(&self.store, &def)?
        };
        let mut rows = Rows::new(&[
            ("table_name", DataType::Text),
            ("hot_row_versions", DataType::BigInt),
            ("schema_version", DataType::Int),
        ]);
        rows.rows.push(vec![
            Value::Text(def.qualified_name()),
            Value::BigInt(i64::try_from(count).unwrap_or(i64::MAX)),
            Value::Int(def.schema_version as i32),
        ]);
        Ok(Out::Result(table_result(caller, &rows)?))
    }
}

impl Engine {
    /// `CLUSTER …` (API.md 3.13): run by the server's raft node; PURGE, CLEAR and REBALANCE
    /// are answered here, as nothing in FoldDB does what they ask.
    pub(super) async fn cluster_command(&self, command: &ClusterCommand) -> Result<String, Error> {
        match command {
            ClusterCommand::Purge => {
                return Err(Error::NotAllowed(
                    "CLUSTER PURGE: raft forgets the log before each snapshot on its own \
                     (cluster.snapshot_every_entries, cluster.snapshot_keep_entries); the log \
                     is the source of truth, and only its retention setting deletes segments"
                        .into(),
                ));
            }
            ClusterCommand::Clear => {
                return Ok("Nothing to clear: a node keeps only its latest snapshot file".into());
            }
            ClusterCommand::Rebalance => {
                return Ok(
                    "Nothing to rebalance: the cluster is one raft group with one leader".into(),
                );
            }
            _ => {}
        }
        let Some(view) = &self.node.cluster else {
            return Err(Error::NotAllowed(
                "this node runs alone: CLUSTER commands need a cluster (start the node with \
                 --cluster-secret, and --peers naming its members)"
                    .into(),
            ));
        };
        view.command(command).await
    }
}
