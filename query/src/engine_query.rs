//! Reads: the DataFusion session each statement plans in (the caller's catalog, identity
//! functions and `vector_search`), queries as whole answers or streams, and point selects
//! by primary key.

use super::*;

impl Engine {
    pub(super) fn session(&self, caller: &Caller, view: &View, namespace: &str) -> SessionContext {
        // A copy of the prepared state (no re-registration of every function, which
        // rebuilding through `SessionStateBuilder` would do), with this statement's own
        // catalog list.
        let mut state = self.base.clone();
        let catalog = &mut state.config_mut().options_mut().catalog;
        catalog.default_catalog = CATALOG.into();
        catalog.default_schema = namespace.into();
        state.register_catalog_list(Arc::new(MemoryCatalogProviderList::new()));
        let ctx = SessionContext::new_with_state(state);
        for f in crate::functions::identity(&caller.user, caller.role.name()) {
            ctx.register_udf(f);
        }
        let catalog = Arc::new(FoldCatalog {
            live: self.live.clone(),
            node: self.node.clone(),
            jobs: Some(self.jobs.clone()),
            view: view.clone(),
            caller: caller.clone(),
            now_ms: now_ms(),
        });
        ctx.register_catalog(CATALOG, catalog.clone());
        ctx.register_udtf(
            "vector_search",
            Arc::new(crate::vector_search::VectorSearch { catalog }),
        );
        ctx
    }

    /// Runs one query in DataFusion as `caller` (DDL and DML refused; other statements
    /// such as SET and EXPLAIN only when `allow_statements`): its schema and batches, at
    /// most `max_bytes` of them (the batches stream in, and the query stops there).
    pub(super) async fn query(
        &self,
        at: &At<'_>,
        sql_text: &str,
        params: &[Literal],
        allow_statements: bool,
        max_bytes: Option<usize>,
    ) -> StmtResult<(Arc<Schema>, Vec<RecordBatch>)> {
        self.query_parsed(at, sql_text, None, params, allow_statements, max_bytes)
            .await
    }

    /// [`Engine::query`] of a statement already parsed (`ast`, from `sql_text`): DataFusion
    /// plans the tree instead of parsing the text again.
    pub(super) async fn query_parsed(
        &self,
        at: &At<'_>,
        sql_text: &str,
        ast: Option<&sql::Statement>,
        params: &[Literal],
        allow_statements: bool,
        max_bytes: Option<usize>,
    ) -> StmtResult<(Arc<Schema>, Vec<RecordBatch>)> {
        let (schema, stream) = self
            .query_stream(at, sql_text, ast, params, allow_statements)
            .await?;
        let batches = collect_capped(stream, None, max_bytes).await?;
        Ok((schema, batches))
    }

    /// [`Engine::query_parsed`] before any batch is pulled: the schema, and the batches as
    /// DataFusion produces them.
    pub(super) async fn query_stream(
        &self,
        at: &At<'_>,
        sql_text: &str,
        ast: Option<&sql::Statement>,
        params: &[Literal],
        allow_statements: bool,
    ) -> StmtResult<(Arc<Schema>, SendableRecordBatchStream)> {
        let At {
            caller,
            view,
            namespace,
        } = *at;
        let ctx = self.session(caller, view, namespace);
        let ast = ast.cloned();
        let sql_text = sql_text.to_owned();
        let params: Vec<ScalarValue> = params.iter().map(scalar).collect();
        // Planning is work too (DataFusion's optimizer passes): it runs with the execution.
        let plan = async move {
            let options = SQLOptions::new()
                .with_allow_ddl(false)
                .with_allow_dml(false)
                .with_allow_statements(allow_statements);
            let df = match ast {
                Some(ast) => {
                    let statement = datafusion::sql::parser::Statement::Statement(Box::new(ast));
                    let plan = ctx.state().statement_to_plan(statement).await?;
                    options.verify_plan(&plan)?;
                    ctx.execute_logical_plan(plan).await?
                }
                None => ctx.sql_with_options(&sql_text, options).await?,
            };
            if params.is_empty() {
                Ok(df)
            } else {
                df.with_param_values(params)
            }
        };
        let Some(executor) = &self.executor else {
            let df = plan.await?;
            let schema = Arc::new(df.schema().as_arrow().clone());
            return Ok((schema, df.execute_stream().await?));
        };
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let (planned, schema) = tokio::sync::oneshot::channel();
        executor.spawn(async move {
            let df = match plan.await {
                Ok(df) => df,
                Err(e) => {
                    let _ = planned.send(Err(e));
                    return;
                }
            };
            if planned
                .send(Ok(Arc::new(df.schema().as_arrow().clone())))
                .is_err()
            {
                return;
            }
            let mut batches = match df.execute_stream().await {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            // Ends when the stream does, or as soon as the reader is gone (a LIMIT met, a
            // client away, the statement timeout), even while a batch is being computed.
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    next = futures::StreamExt::next(&mut batches) => match next {
                        Some(batch) => {
                            if tx.send(batch).await.is_err() {
                                return;
                            }
                        }
                        None => return,
                    },
                }
            }
        });
        let schema: Arc<Schema> = schema
            .await
            .map_err(|_| Error::Internal("the query runtime dropped a query".into()))??;
        let received = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|batch| (batch, rx))
        });
        let stream = RecordBatchStreamAdapter::new(schema.clone(), received);
        Ok((schema, Box::pin(stream)))
    }

    /// `SELECT <columns or *> FROM <table> WHERE <pk> = <literal or $n>`, answered with one
    /// key read instead of the planner. `None` when the query is anything else (it then
    /// runs in DataFusion, which gives the same answer, only slower).
    pub(super) fn point_select(
        &self,
        at: &At<'_>,
        p: &Prepared,
        params: &[Literal],
    ) -> Option<StmtResult<QueryResult>> {
        let At {
            caller,
            view,
            namespace,
        } = *at;
        let sql::Statement::Query(q) = p.ast().ok()? else {
            return None;
        };
        let SetExpr::Select(sel) = q.body.as_ref() else {
            return None;
        };
        let [from] = sel.from.as_slice() else {
            return None;
        };
        let TableFactor::Table {
            name, alias: None, ..
        } = &from.relation
        else {
            return None;
        };
        let Some(Expr::BinaryOp {
            left,
            op: sql::BinaryOperator::Eq,
            right,
        }) = &sel.selection
        else {
            return None;
        };
        let Expr::Identifier(column) = left.as_ref() else {
            return None;
        };
        // Nothing else may be in the query: it must print back as exactly these parts.
        let items: Vec<String> = sel.projection.iter().map(|i| i.to_string()).collect();
        let canonical = format!(
            "SELECT {} FROM {name} WHERE {left} = {right}",
            items.join(", ")
        );
        if q.to_string() != canonical || column.quote_style.is_some() || !from.joins.is_empty() {
            return None;
        }
        let def = self.table_of_object(namespace, name).ok()?;
        let pk = def.pk_column()?;
        if pk.name != column.value.to_ascii_lowercase() {
            return None;
        }
        let Ok(Evaluated::Literal(lit)) = eval_literal(right, params) else {
            return None;
        };
        let key = coerce(&lit, pk.data_type).ok()?;
        let table = crate::provider::HotTable::new(view.clone(), def, caller, now_ms());
        let schema = crate::provider::table_schema(table.def());
        let mut picks = Vec::new();
        for item in &sel.projection {
            match item {
                sql::SelectItem::Wildcard(o) if o.to_string().is_empty() => {
                    picks.extend(0..schema.fields().len())
                }
                sql::SelectItem::UnnamedExpr(Expr::Identifier(id)) if id.quote_style.is_none() => {
                    picks.push(schema.index_of(&id.value.to_ascii_lowercase()).ok()?)
                }
                _ => return None,
            }
        }
        Some((|| {
            let batch = table
                .point(&key)?
                .project(&picks)
                .map_err(|e| Error::from(e.to_string()))?;
            rows_result(caller, &batch.schema(), &[batch])
        })())
    }
}
