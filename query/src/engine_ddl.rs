//! Planning table DDL (API.md 3.2–3.3): CREATE TABLE with its columns, defaults and `WITH`
//! options into a [`TableDef`], and each ALTER TABLE change applied to one. Pure: no state.

use super::*;

/// A literal DEFAULT typed against its column.
pub(super) fn typed_default(spec: &DefaultSpec, c: &ColumnSpec) -> StmtResult<DefaultExpr> {
    Ok(match spec {
        DefaultSpec::Expr(e) => e.clone(),
        DefaultSpec::Literal(l) => DefaultExpr::Literal(
            coerce(l, c.data_type).map_err(|m| format!("DEFAULT for column '{}': {m}", c.name))?,
        ),
    })
}

pub(super) fn column_def(c: &ColumnSpec, id: u32, pk: bool) -> StmtResult<ColumnDef> {
    dialect::validate_name("column", &c.name).map_err(Error::InvalidSql)?;
    if RESERVED_COLUMNS.contains(&c.name.as_str()) {
        return Err(Error::InvalidSql(format!(
            "Column name '{}' is reserved",
            c.name
        )));
    }
    Ok(ColumnDef {
        id,
        name: c.name.clone(),
        data_type: c.data_type,
        nullable: !(c.not_null || pk),
        default: c
            .default
            .as_ref()
            .map(|d| typed_default(d, c))
            .transpose()?,
        unique: c.unique || pk,
    })
}

pub(super) fn plan_create_table(
    ct: &CreateTable,
    caller: &Caller,
    namespace: &str,
) -> StmtResult<TableDef> {
    let invalid = |m: String| Error::InvalidSql(m);
    let ns = ct
        .table
        .namespace
        .clone()
        .unwrap_or_else(|| namespace.to_owned());
    dialect::validate_name("table", &ct.table.name).map_err(invalid)?;
    let mut options = TableOptions {
        storage_id: "local".into(),
        use_user_storage: false,
        flush_policy: None,
        deleted_retention_hours: None,
        ttl_seconds: None,
        access_level: None,
    };
    let mut type_option = None;
    for (k, v) in &ct.options {
        let int = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| invalid(format!("{k} must be a non-negative integer, got '{v}'")))
        };
        match k.as_str() {
            "TYPE" => {
                type_option = Some(match v.to_ascii_uppercase().as_str() {
                    "USER" => TableKind::User,
                    "SHARED" => TableKind::Shared,
                    "STREAM" => TableKind::Stream,
                    _ => return Err(invalid(format!("Unknown table TYPE '{v}'"))),
                })
            }
            "STORAGE_ID" => options.storage_id = v.to_ascii_lowercase(),
            "USE_USER_STORAGE" => {
                options.use_user_storage = match v.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(invalid(format!(
                            "USE_USER_STORAGE must be TRUE or FALSE, got '{v}'"
                        )));
                    }
                }
            }
            "FLUSH_POLICY" => {
                validate_flush_policy(v).map_err(invalid)?;
                options.flush_policy = Some(v.clone());
            }
            "DELETED_RETENTION_HOURS" => options.deleted_retention_hours = Some(int(v)?),
            "TTL_SECONDS" => {
                let ttl = int(v)?;
                if ttl == 0 {
                    return Err(invalid("TTL_SECONDS must be positive".into()));
                }
                options.ttl_seconds = Some(ttl);
            }
            "ACCESS_LEVEL" => {
                options.access_level = Some(
                    AccessLevel::parse(v)
                        .ok_or_else(|| invalid(format!("Unknown ACCESS_LEVEL '{v}'")))?,
                )
            }
            _ => return Err(invalid(format!("Unknown table option '{k}'"))),
        }
    }
    let kind = match (ct.kind, type_option) {
        (Some(a), Some(b)) if a != b => {
            return Err(invalid(format!(
                "Table type conflict: CREATE {} TABLE with TYPE = '{}'",
                a.name(),
                b.name()
            )));
        }
        (Some(k), _) | (None, Some(k)) => k,
        (None, None) => {
            if matches!(caller.role, Role::User | Role::Service) && ns == caller.user {
                TableKind::User
            } else {
                TableKind::Shared
            }
        }
    };
    let allowed = match caller.role {
        Role::User => matches!(kind, TableKind::User | TableKind::Stream),
        Role::Service | Role::Dba | Role::System => true,
    };
    if !allowed {
        return Err(Error::PermissionDenied(format!(
            "Permission denied: role {} cannot create {} tables",
            caller.role.name(),
            kind.name()
        )));
    }
    if kind == TableKind::Stream && options.ttl_seconds.is_none() {
        return Err(invalid("STREAM tables require TTL_SECONDS".into()));
    }
    if kind != TableKind::Stream && options.ttl_seconds.is_some() {
        return Err(invalid("TTL_SECONDS applies to STREAM tables only".into()));
    }
    if kind != TableKind::Shared && options.access_level.is_some() {
        return Err(invalid("ACCESS_LEVEL applies to SHARED tables only".into()));
    }
    if kind == TableKind::Shared && options.access_level.is_none() {
        options.access_level = Some(AccessLevel::Private);
    }
    let mut pk_names: Vec<String> = ct
        .columns
        .iter()
        .filter(|c| c.primary_key)
        .map(|c| c.name.clone())
        .collect();
    pk_names.extend(ct.primary_key.iter().cloned());
    pk_names.dedup();
    if pk_names.len() > 1 {
        return Err(Error::Definition(
            "Composite primary keys are not supported".into(),
        ));
    }
    if pk_names.is_empty() && kind != TableKind::Stream {
        return Err(Error::Definition(format!(
            "{} tables require a PRIMARY KEY column",
            kind.name()
        )));
    }
    if ct.columns.is_empty() {
        return Err(invalid("A table needs at least one column".into()));
    }
    let mut columns = Vec::with_capacity(ct.columns.len());
    for (i, c) in ct.columns.iter().enumerate() {
        if ct.columns[..i].iter().any(|p| p.name == c.name) {
            return Err(Error::Definition(format!("Duplicate column '{}'", c.name)));
        }
        let pk = pk_names.first() == Some(&c.name);
        columns.push(column_def(c, i as u32 + 1, pk)?);
    }
    let primary_key = match pk_names.first() {
        Some(n) => Some(
            columns
                .iter()
                .find(|c| &c.name == n)
                .map(|c| c.id)
                .ok_or_else(|| {
                    Error::Definition(format!("PRIMARY KEY column '{n}' is not a column"))
                })?,
        ),
        None => None,
    };
    if let Some(pk) = primary_key.and_then(|id| columns.iter().find(|c| c.id == id))
        && matches!(
            pk.data_type,
            DataType::Embedding(_) | DataType::Json | DataType::File
        )
    {
        return Err(Error::Definition(format!(
            "Column '{}' cannot be a primary key",
            pk.name
        )));
    }
    Ok(TableDef {
        id: TableId(0),
        namespace: ns,
        name: ct.table.name.clone(),
        kind,
        next_column_id: columns.len() as u32 + 1,
        columns,
        primary_key,
        options,
        schema_version: 0,
        created_at_ms: 0,
        updated_at_ms: 0,
        change: "created".into(),
    })
}

pub(super) fn validate_flush_policy(v: &str) -> Result<(), String> {
    flush_policy(v).map(|_| ())
}

/// A FLUSH_POLICY's row threshold and interval (seconds), validated (API.md 3.3).
pub(super) fn flush_policy(v: &str) -> Result<(Option<u64>, Option<u64>), String> {
    let (mut rows, mut interval) = (None, None);
    for part in v.split(',') {
        let (k, n) = part.trim().split_once(':').ok_or_else(|| {
            format!("Invalid FLUSH_POLICY '{v}': expected 'rows:N', 'interval:S' or both")
        })?;
        let n: u64 = n
            .trim()
            .parse()
            .map_err(|_| format!("Invalid FLUSH_POLICY '{v}': '{n}' is not a number"))?;
        match k.trim().to_ascii_lowercase().as_str() {
            "rows" if (1..=999_999).contains(&n) => rows = Some(n),
            "interval" if (1..=86_399).contains(&n) => interval = Some(n),
            "rows" => return Err(format!("FLUSH_POLICY rows must be 1..999999, got {n}")),
            "interval" => {
                return Err(format!(
                    "FLUSH_POLICY interval must be 1..86399 seconds, got {n}"
                ));
            }
            _ => return Err(format!("Invalid FLUSH_POLICY '{v}'")),
        }
    }
    if rows.is_none() && interval.is_none() {
        return Err(format!("Invalid FLUSH_POLICY '{v}'"));
    }
    Ok((rows, interval))
}

pub(super) fn plan_alter(mut def: TableDef, change: &AlterChange) -> StmtResult<TableDef> {
    let find = |def: &TableDef, n: &str| -> StmtResult<usize> {
        if RESERVED_COLUMNS.contains(&n) {
            return Err(format!("System column '{n}' cannot be altered").into());
        }
        def.columns.iter().position(|c| c.name == n).ok_or_else(|| {
            Error::NotFound(format!(
                "Column '{n}' not found in table {}",
                def.qualified_name()
            ))
        })
    };
    def.change = match change {
        AlterChange::AddColumn(spec) => {
            if def.column(&spec.name).is_some() {
                return Err(Error::AlreadyExists(format!(
                    "Column '{}' already exists",
                    spec.name
                )));
            }
            if spec.primary_key {
                return Err(Error::NotAllowed(
                    "ALTER TABLE cannot add a PRIMARY KEY column".into(),
                ));
            }
            let c = column_def(spec, def.next_column_id, false)?;
            if !c.nullable && !matches!(c.default, Some(DefaultExpr::Literal(_))) {
                return Err("Adding a NOT NULL column requires a literal DEFAULT".into());
            }
            def.next_column_id += 1;
            def.columns.push(c);
            format!("added column {}", spec.name)
        }
        AlterChange::DropColumn(n) => {
            let i = find(&def, n)?;
            if def.primary_key == Some(def.columns[i].id) {
                return Err(Error::NotAllowed(format!(
                    "Cannot drop primary key column '{n}'"
                )));
            }
            def.columns.remove(i);
            format!("dropped column {n}")
        }
        AlterChange::ModifyColumn {
            name,
            data_type,
            not_null,
        } => {
            let i = find(&def, name)?;
            if def.primary_key == Some(def.columns[i].id) {
                return Err(Error::NotAllowed(format!(
                    "Cannot modify primary key column '{name}'"
                )));
            }
            def.columns[i].data_type = *data_type;
            if let Some(nn) = not_null {
                def.columns[i].nullable = !nn;
            }
            format!("modified column {name}")
        }
        AlterChange::SetNotNull(n, nn) => {
            let i = find(&def, n)?;
            if def.primary_key == Some(def.columns[i].id) && !nn {
                return Err(Error::NotAllowed(format!(
                    "Primary key column '{n}' must stay NOT NULL"
                )));
            }
            def.columns[i].nullable = !nn;
            format!("{} NOT NULL on {n}", if *nn { "set" } else { "dropped" })
        }
        AlterChange::SetDefault(n, d) => {
            let i = find(&def, n)?;
            let spec = ColumnSpec {
                name: n.clone(),
                data_type: def.columns[i].data_type,
                not_null: false,
                default: None,
                primary_key: false,
                unique: false,
            };
            def.columns[i].default = d.as_ref().map(|d| typed_default(d, &spec)).transpose()?;
            format!(
                "{} default on {n}",
                if d.is_some() { "set" } else { "dropped" }
            )
        }
        AlterChange::RenameColumn { from, to } => {
            let i = find(&def, from)?;
            dialect::validate_name("column", to).map_err(Error::InvalidSql)?;
            if RESERVED_COLUMNS.contains(&to.as_str()) || def.column(to).is_some() {
                return Err(Error::AlreadyExists(format!(
                    "Column '{to}' already exists or is reserved"
                )));
            }
            def.columns[i].name = to.clone();
            format!("renamed column {from} to {to}")
        }
        AlterChange::SetAccessLevel(level) => {
            if def.kind != TableKind::Shared {
                return Err("ACCESS_LEVEL applies to SHARED tables only".into());
            }
            let l = AccessLevel::parse(level)
                .ok_or_else(|| format!("Unknown ACCESS_LEVEL '{level}'"))?;
            def.options.access_level = Some(l);
            format!("set access level {}", l.name())
        }
        AlterChange::CreateIndex { .. } | AlterChange::DropIndex(_) => {
            return Err(Error::Internal(
                "a vector index change is not a schema change".into(),
            ));
        }
    };
    Ok(def)
}

impl Engine {
    /// USE ns: later statements of the request default to `ns`.
    pub(super) fn use_namespace(
        &self,
        caller: &Caller,
        namespace: &mut String,
        ns: &str,
    ) -> StmtResult<Out> {
        if catalog::namespace(self.store.as_ref(), ns)?.is_none() {
            return Err(Error::NotFound(format!("Namespace '{ns}' does not exist")));
        }
        *namespace = ns.to_owned();
        msg(caller, format!("Using namespace '{ns}'"))
    }

    /// CREATE NAMESPACE.
    pub(super) async fn create_namespace(
        &self,
        caller: &Caller,
        name: &str,
        if_not_exists: bool,
    ) -> StmtResult<Out> {
        let op = Op::CreateNamespace {
            name: name.to_owned(),
            description: None,
            if_not_exists,
        };
        let m = self
            .propose_catalog(
                caller,
                op,
                format!("Namespace '{name}' already exists"),
                format!("Namespace '{name}' created successfully"),
            )
            .await?;
        msg(caller, m)
    }

    /// DROP NAMESPACE.
    pub(super) async fn drop_namespace(
        &self,
        caller: &Caller,
        name: &str,
        if_exists: bool,
    ) -> StmtResult<Out> {
        let op = Op::DropNamespace {
            name: name.to_owned(),
            if_exists,
        };
        let tables = catalog::tables(self.store.as_ref(), Some(name))?;
        let m = self
            .propose_catalog(
                caller,
                op,
                format!("Namespace '{name}' does not exist"),
                format!("Namespace '{name}' dropped successfully"),
            )
            .await?;
        self.remove_dropped(self.gone(tables));
        msg(caller, m)
    }

    /// ALTER NAMESPACE.
    pub(super) async fn alter_namespace(
        &self,
        caller: &Caller,
        name: &str,
        description: &Option<String>,
    ) -> StmtResult<Out> {
        self.propose(
            &caller.user,
            vec![Op::AlterNamespace {
                name: name.to_owned(),
                description: description.clone(),
            }],
        )
        .await?;
        msg(caller, format!("Namespace '{name}' altered successfully"))
    }

    /// CREATE TABLE.
    pub(super) async fn create_table(
        &self,
        caller: &Caller,
        namespace: &str,
        ct: &CreateTable,
    ) -> StmtResult<Out> {
        let def = plan_create_table(ct, caller, namespace)?;
        let kind = def.kind;
        let qualified = def.qualified_name();
        let kind = match kind {
            TableKind::User => "User",
            TableKind::Shared => "Shared",
            TableKind::Stream => "Stream",
        };
        let op = Op::CreateTable {
            table: def,
            if_not_exists: ct.if_not_exists,
        };
        let m = self
            .propose_catalog(
                caller,
                op,
                format!("Table {qualified} already exists"),
                format!(
                    "CREATE TABLE via Raft consensus: {kind} table {qualified} created successfully"
                ),
            )
            .await?;
        msg(caller, m)
    }

    /// ALTER TABLE: role service or above (see `alter_allowed`).
    pub(super) async fn alter_table(
        &self,
        caller: &Caller,
        namespace: &str,
        table: &TableName,
        change: &AlterChange,
    ) -> StmtResult<Out> {
        let current = self.table(namespace, table)?;
        alter_allowed(caller, &current)?;
        let qualified = current.qualified_name();
        let (namespace, name) = (current.namespace.clone(), current.name.clone());
        match change {
            AlterChange::CreateIndex { column, metric } => {
                let op = Op::CreateVectorIndex {
                    namespace,
                    table: name,
                    column: column.clone(),
                    metric: *metric,
                };
                self.propose(&caller.user, vec![op]).await?;
                return msg(
                    caller,
                    format!(
                        "Vector index on {qualified}.{column} created (USING {})",
                        metric.name()
                    ),
                );
            }
            AlterChange::DropIndex(column) => {
                let op = Op::DropVectorIndex {
                    namespace,
                    table: name,
                    column: column.clone(),
                };
                self.propose(&caller.user, vec![op]).await?;
                return msg(
                    caller,
                    format!("Vector index on {qualified}.{column} dropped"),
                );
            }
            _ => {}
        }
        let expected = current.schema_version;
        let def = plan_alter(current, change)?;
        let what = def.change.clone();
        let mut ops = vec![Op::AlterTable {
            table: def,
            expected_version: expected,
        }];
        if matches!(change, AlterChange::SetAccessLevel(_)) {
            ops.push(audit(caller, "alter_table_access", &qualified, Some(&what)));
        }
        let r = self.propose(&caller.user, ops).await?;
        let version = r
            .first()
            .and_then(|r| r.schema_version)
            .unwrap_or(expected + 1);
        msg(
            caller,
            format!("Table {qualified} altered successfully: {what} (version {version})"),
        )
    }

    /// DROP TABLE.
    pub(super) async fn drop_table(
        &self,
        caller: &Caller,
        namespace: &str,
        table: &TableName,
        if_exists: bool,
    ) -> StmtResult<Out> {
        let ns = table
            .namespace
            .clone()
            .unwrap_or_else(|| namespace.to_owned());
        let op = Op::DropTable {
            namespace: ns.to_owned(),
            name: table.name.clone(),
            if_exists,
        };
        let dropped = catalog::table(self.store.as_ref(), &ns, &table.name)?;
        let m = self
            .propose_catalog(
                caller,
                op,
                format!("Table {ns}.{} does not exist", table.name),
                format!("Table {ns}.{} dropped successfully", table.name),
            )
            .await?;
        self.remove_dropped(self.gone(dropped.into_iter().collect()));
        msg(caller, m)
    }

    /// Of `tables`, the ones the catalog no longer holds (under the same id).
    fn gone(&self, tables: Vec<TableDef>) -> Vec<TableDef> {
        tables
            .into_iter()
            .filter(|t| {
                catalog::table(self.store.as_ref(), &t.namespace, &t.name)
                    .is_ok_and(|now| now.is_none_or(|n| n.id != t.id))
            })
            .collect()
    }
}
