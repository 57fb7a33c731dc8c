//! [`SqlSource`]: resources kept in PostgreSQL, MySQL/MariaDB or SQLite.
//!
//! Each resource is a table, a view or a SELECT statement of the configuration (used as a
//! derived table). Statements are built from names in the configuration file only (checked to
//! be plain identifiers, and quoted); every key and filter value is a bound parameter. Rows are
//! read in key order and a page resumes after the last key of the previous one, so paging is
//! stable under inserts and deletes and costs the same on the last page as on the first.
//!
//! Pools connect on first use and replace broken connections, so a database that goes down
//! makes its resources UNAVAILABLE (with the reason in the adapter's log) until it is back,
//! without a restart.
//!
//! Changes: with a `changes.column` that grows with every insert and update, a watcher is
//! sent every row whose (column, key) is past its cursor, in that order; the cursor is that
//! pair, so it outlives adapter restarts and never expires. Rows are looked for every
//! `poll_interval_ms`, and on PostgreSQL with a `notify_channel` also as soon as a
//! notification arrives on it. Deletions are not seen.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use huitong_adapter::config::sources::{QueryPiece, query_pieces};
use huitong_adapter::config::{QueryParam, SqlConfig};
use huitong_adapter::{
    Change, ChangeStream, ConfigError, Page, PageRequest, Record, Source, SourceError, Value,
};
use huitong_core::{FieldName, ResourceName, ResourceSpec, ValueKind};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::Place;
use crate::error::Error;
use crate::secret;
use crate::token::{self, Sealer};

mod db;

use db::{Db, Dialect, Param, PoolLimits, Read, Stmt};

/// Rows sent to a watcher per query.
const CHANGE_BATCH: usize = 500;
/// Changes buffered for a watcher before its poller waits for it.
const WATCH_BUFFER: usize = 256;

/// Resources kept in SQL databases. See the module documentation.
pub struct SqlSource {
    tables: HashMap<ResourceName, Arc<SqlTable>>,
    order: Vec<ResourceName>,
    sealer: Sealer,
}

impl std::fmt::Debug for SqlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSource")
            .field("resources", &self.order)
            .finish_non_exhaustive()
    }
}

struct SqlTable {
    spec: ResourceSpec,
    db: Db,
    /// `FROM` this: the quoted table, or the configured query as a derived table.
    from: Vec<From>,
    /// One read expression per field, in field order.
    select: Vec<String>,
    reads: Vec<Read>,
    /// The quoted column of each key field, in key order, and the field's position.
    keys: Vec<(String, usize)>,
    /// The quoted column of each field, in field order.
    columns: Vec<String>,
    timeout: Duration,
    changes: Option<Changes>,
}

enum From {
    Sql(String),
    Param(Param),
}

struct Changes {
    /// The quoted change column.
    column: String,
    poll: Duration,
    /// Bumped by the LISTEN task on every notification.
    wake: Option<watch::Receiver<u64>>,
}

/// One table of the load, before its pool is shared.
struct Planned {
    spec: ResourceSpec,
    config: SqlConfig,
    at: Place,
    /// The connection URL and password, read from their secrets.
    url: secret::Secret,
    password: Option<secret::Secret>,
    dialect: Dialect,
    limits: PoolLimits,
}

impl SqlSource {
    /// Checks each resource's options and secrets and, with `start`, opens the pools (one per
    /// database, shared by its resources) and the LISTEN tasks. Without `start` nothing is
    /// connected or spawned.
    pub(crate) fn load(
        resources: Vec<(ResourceSpec, SqlConfig, Place)>,
        start: bool,
    ) -> Result<Self, Error> {
        let mut planned = Vec::with_capacity(resources.len());
        for (spec, config, at) in resources {
            planned.push(plan(spec, config, at)?);
        }
        let sealer = Sealer::new().map_err(|p| {
            planned
                .first()
                .map(|p0| p0.at.error("", p.clone()))
                .unwrap_or_else(|| ConfigError::new(std::path::Path::new(""), None, p))
        })?;
        let mut pools: Vec<(String, Db)> = Vec::new();
        // channel -> (the pool it is listened on, its wake-up sender)
        let mut listens: HashMap<String, (Db, watch::Sender<u64>)> = HashMap::new();
        let mut tables = HashMap::new();
        let mut order = Vec::new();
        for p in planned {
            let options = Db::options(
                p.url.expose(),
                p.password.as_ref().map(secret::Secret::expose),
                &p.at.dir,
                p.limits,
            )
            .map_err(|e| p.at.error(url_key(&p.config), e))?;
            if !start {
                continue;
            }
            let identity = format!(
                "{}\u{0}{}",
                p.url.expose(),
                p.password.as_ref().map_or("", |s| s.expose())
            );
            let db = match pools.iter().find(|(id, _)| *id == identity) {
                Some((_, db)) => db.clone(),
                None => {
                    let db = Db::open(options, p.limits);
                    pools.push((identity, db.clone()));
                    db
                }
            };
            let table = table(&p, db.clone(), &mut listens)?;
            order.push(p.spec.id().name().clone());
            tables.insert(p.spec.id().name().clone(), Arc::new(table));
        }
        for (channel, (db, tx)) in listens {
            if let Db::Postgres(pool) = db {
                tokio::spawn(listen(pool, channel, tx));
            }
        }
        Ok(Self {
            tables,
            order,
            sealer,
        })
    }

    fn table(&self, resource: &ResourceName) -> Result<&Arc<SqlTable>, SourceError> {
        self.tables.get(resource).ok_or_else(|| {
            SourceError::Internal(format!("no database is configured for {resource}"))
        })
    }
}

fn url_key(c: &SqlConfig) -> &'static str {
    if c.url_file.is_some() {
        "url_file"
    } else if c.url_env.is_some() {
        "url_env"
    } else {
        "url"
    }
}

/// Reads a resource's secrets and checks what needs them.
fn plan(spec: ResourceSpec, config: SqlConfig, at: Place) -> Result<Planned, Error> {
    let url = match &config.url {
        Some(u) => secret::Secret::from_config(u),
        None => secret::read(
            &at,
            config.url_file.as_deref(),
            "url_file",
            config.url_env.as_deref(),
            "url_env",
        )?
        .ok_or_else(|| at.error("", "give one of url, url_file and url_env"))?,
    };
    let key = url_key(&config);
    let url_text = url.expose().trim().to_owned();
    huitong_adapter::config::sources::check_database_url(&url_text, false)
        .map_err(|p| at.error(key, p))?;
    let url = secret::Secret::from_config(&url_text);
    let dialect = Db::dialect_of(&url_text)
        .ok_or_else(|| at.error(key, "it is not a postgres://, mysql:// or sqlite: URL"))?;
    if let Some(ch) = &config.changes
        && ch.notify_channel.is_some()
        && dialect != Dialect::Postgres
    {
        return Err(at
            .error(
                "changes.notify_channel",
                "LISTEN/NOTIFY is PostgreSQL's; this source's database is not PostgreSQL",
            )
            .into());
    }
    let password = secret::read(
        &at,
        config.password_file.as_deref(),
        "password_file",
        config.password_env.as_deref(),
        "password_env",
    )?;
    let limits = PoolLimits {
        max_connections: config.max_connections.unwrap_or(5),
        connect_timeout: Duration::from_millis(config.connect_timeout_ms.unwrap_or(5000)),
        query_timeout: Duration::from_millis(config.query_timeout_ms.unwrap_or(5000)),
    };
    Ok(Planned {
        spec,
        config,
        at,
        url,
        password,
        dialect,
        limits,
    })
}

/// The statements' pieces for one resource.
fn table(
    p: &Planned,
    db: Db,
    listens: &mut HashMap<String, (Db, watch::Sender<u64>)>,
) -> Result<SqlTable, Error> {
    let d = p.dialect;
    let c = &p.config;
    let column_of =
        |field: &str| -> String { d.quote(c.columns.get(field).map_or(field, String::as_str)) };
    let from = match (&c.table, &c.query) {
        (Some(t), _) => {
            let quoted: Vec<String> = t.split('.').map(|part| d.quote(part)).collect();
            vec![From::Sql(quoted.join("."))]
        }
        (None, Some(q)) => {
            let mut out = vec![From::Sql("(".into())];
            for piece in query_pieces(q.trim()) {
                match piece {
                    QueryPiece::Text(t) | QueryPiece::Quoted(t) => out.push(From::Sql(t.into())),
                    QueryPiece::Param(name) => {
                        let value = c.params.get(name).ok_or_else(|| {
                            p.at.error(
                                "query",
                                format!("its placeholder :{name} has no value in params"),
                            )
                        })?;
                        out.push(From::Param(match value {
                            QueryParam::Bool(b) => Param::Bool(*b),
                            QueryParam::Int(i) => Param::Int(*i),
                            QueryParam::String(s) => Param::Str(s.clone()),
                        }));
                    }
                }
            }
            out.push(From::Sql(") AS huitong_resource".into()));
            out
        }
        (None, None) => return Err(p.at.error("", "give a table or a query").into()),
    };
    let fields = p.spec.fields();
    let columns: Vec<String> = fields.iter().map(|f| column_of(f.name.as_str())).collect();
    let select = fields
        .iter()
        .zip(&columns)
        .map(|(f, col)| d.read_as(col, f.ty))
        .collect();
    let reads = fields.iter().map(|f| Read::Field(f.ty)).collect();
    let keys = p
        .spec
        .key_fields()
        .iter()
        .filter_map(|k| {
            let i = fields.iter().position(|f| &f.name == k)?;
            Some((columns.get(i)?.clone(), i))
        })
        .collect();
    let changes = c.changes.as_ref().map(|ch| {
        let wake = ch.notify_channel.as_ref().map(|channel| {
            listens
                .entry(channel.clone())
                .or_insert_with(|| (db.clone(), watch::channel(0).0))
                .1
                .subscribe()
        });
        Changes {
            column: d.quote(&ch.column),
            poll: Duration::from_millis(ch.poll_interval_ms.unwrap_or(1000)),
            wake,
        }
    });
    Ok(SqlTable {
        spec: p.spec.clone(),
        db,
        from,
        select,
        reads,
        keys,
        columns,
        timeout: p.limits.query_timeout,
        changes,
    })
}

impl SqlTable {
    fn dialect(&self) -> Dialect {
        self.db.dialect()
    }

    /// `SELECT <fields>[, extra] FROM <from>`.
    fn select(&self, extra: Option<&str>) -> Stmt {
        let mut s = Stmt::new(self.dialect());
        s.push("SELECT ").push(&self.select.join(", "));
        if let Some(e) = extra {
            s.push(", ").push(e);
        }
        s.push(" FROM ");
        for piece in &self.from {
            match piece {
                From::Sql(text) => {
                    s.push(text);
                }
                From::Param(p) => {
                    s.bind(p.clone());
                }
            }
        }
        s
    }

    /// `(k1 > v1) OR (k1 = v1 AND k2 > v2) OR …`: rows after a key in key order. Spelt out
    /// rather than as a row comparison, which not every database plans with its index.
    fn after_key(&self, s: &mut Stmt, key: &[Param]) {
        s.push("(");
        for i in 0..self.keys.len() {
            if i > 0 {
                s.push(" OR ");
            }
            s.push("(");
            for (j, ((col, _), value)) in self.keys.iter().zip(key).take(i + 1).enumerate() {
                if j > 0 {
                    s.push(" AND ");
                }
                s.push(col).push(if j == i { " > " } else { " = " });
                s.bind(value.clone());
            }
            s.push(")");
        }
        s.push(")");
    }

    fn order_by_key(&self, s: &mut Stmt) {
        let keys: Vec<&str> = self.keys.iter().map(|(c, _)| c.as_str()).collect();
        s.push(" ORDER BY ").push(&keys.join(", "));
    }

    fn record(&self, row: &[Value]) -> Record {
        let mut r = Record::default();
        for (f, v) in self.spec.fields().iter().zip(row) {
            r.fields.insert(f.name.to_string(), v.clone());
        }
        r
    }

    fn key_values(&self, row: &[Value]) -> Vec<Value> {
        self.keys
            .iter()
            .map(|(_, i)| row.get(*i).cloned().unwrap_or_else(Value::null))
            .collect()
    }

    /// Rows whose (change column, key) is after `after`, oldest first, at most `limit`; each
    /// with its change-column value last.
    async fn changed_after(
        &self,
        changes: &Changes,
        after: Option<&(Value, Vec<Value>)>,
        limit: usize,
    ) -> Result<Vec<Vec<Value>>, SourceError> {
        let d = self.dialect();
        let mut s = self.select(Some(&changes.column));
        if let Some((at, key)) = after {
            let bad = || SourceError::Internal("a cursor value cannot be bound".into());
            let at = Param::of(d, at).ok_or_else(bad)?;
            let key: Vec<Param> = key
                .iter()
                .map(|v| Param::of(d, v).ok_or_else(bad))
                .collect::<Result<_, _>>()?;
            s.push(" WHERE (").push(&changes.column).push(" > ");
            s.bind(at.clone());
            s.push(" OR (").push(&changes.column).push(" = ");
            s.bind(at);
            s.push(" AND ");
            self.after_key(&mut s, &key);
            s.push("))");
        }
        s.push(" ORDER BY ").push(&changes.column);
        for (col, _) in &self.keys {
            s.push(", ").push(col);
        }
        s.push(&format!(" LIMIT {limit}"));
        let mut reads = self.reads.clone();
        reads.push(Read::Any);
        self.db.rows(s, &reads, self.timeout).await
    }
}

/// `s1.` and the resource name, change-column value and key, as typed text.
fn cursor(resource: &ResourceName, at: &Value, key: &[Value]) -> String {
    let mut values = vec![Value::string(resource.as_str()), at.clone()];
    values.extend(key.iter().cloned());
    format!("s1.{}", token::encode_values(&values))
}

fn parse_cursor(text: &str, resource: &ResourceName, keys: usize) -> Option<(Value, Vec<Value>)> {
    let mut values = token::decode_values(text.strip_prefix("s1.")?)?.into_iter();
    if values.len() != keys + 2 || values.next()?.as_str()? != resource.as_str() {
        return None;
    }
    let at = values.next()?;
    let key: Vec<Value> = values.collect();
    let nulls = std::iter::once(&at)
        .chain(&key)
        .any(|v| v.value_kind() == ValueKind::Null);
    (!nulls).then_some((at, key))
}

#[tonic::async_trait]
impl Source for SqlSource {
    fn resources(&self) -> Vec<ResourceSpec> {
        self.order
            .iter()
            .filter_map(|n| self.tables.get(n))
            .map(|t| t.spec.clone())
            .collect()
    }

    fn kind(&self) -> &str {
        "sql"
    }

    async fn fetch(
        &self,
        resource: &ResourceName,
        key: &[(FieldName, Value)],
        _fields: &[FieldName],
    ) -> Result<Option<Record>, SourceError> {
        let t = self.table(resource)?;
        let d = t.dialect();
        let mut s = t.select(None);
        s.push(" WHERE ");
        for (i, ((col, _), (_, value))) in t.keys.iter().zip(key).enumerate() {
            if i > 0 {
                s.push(" AND ");
            }
            // A null or unbindable key value matches no record.
            let Some(p) = Param::of(d, value) else {
                return Ok(None);
            };
            s.push(col).push(" = ");
            s.bind(p);
        }
        s.push(" LIMIT 1");
        let rows = t.db.rows(s, &t.reads, t.timeout).await?;
        Ok(rows.first().map(|row| t.record(row)))
    }

    async fn search(
        &self,
        resource: &ResourceName,
        filters: &[(FieldName, Value)],
        _fields: &[FieldName],
        page: PageRequest,
    ) -> Result<Page, SourceError> {
        let t = self.table(resource)?;
        let d = t.dialect();
        let digest = token::search_digest(resource.as_str(), filters);
        let after: Option<Vec<Param>> = match page.token.as_deref() {
            None => None,
            Some(tok) => {
                let opened = self.sealer.open(tok).ok_or(SourceError::BadPageToken)?;
                if opened["q"].as_str() != Some(digest.as_str()) {
                    return Err(SourceError::BadPageToken);
                }
                let key = opened["k"]
                    .as_str()
                    .and_then(token::decode_values)
                    .filter(|k| k.len() == t.keys.len())
                    .ok_or(SourceError::BadPageToken)?;
                Some(
                    key.iter()
                        .map(|v| Param::of(d, v))
                        .collect::<Option<Vec<_>>>()
                        .ok_or(SourceError::BadPageToken)?,
                )
            }
        };
        let mut s = t.select(None);
        let mut first = true;
        let mut and = |s: &mut Stmt| {
            s.push(if first { " WHERE " } else { " AND " });
            first = false;
        };
        for (name, value) in filters {
            let Some(i) = t.spec.fields().iter().position(|f| &f.name == name) else {
                return Err(SourceError::Internal(format!(
                    "field {name} is not a field of {}",
                    t.spec.id()
                )));
            };
            let col = t.columns.get(i).map_or("", String::as_str);
            and(&mut s);
            match Param::of(d, value) {
                Some(p) => {
                    s.push(col).push(" = ");
                    s.bind(p);
                }
                None if value.value_kind() == ValueKind::Null => {
                    s.push(col).push(" IS NULL");
                }
                // A date or time no database can hold matches nothing.
                None => return Ok(Page::default()),
            }
        }
        if let Some(key) = &after {
            and(&mut s);
            t.after_key(&mut s, key);
        }
        t.order_by_key(&mut s);
        let size = usize::try_from(page.size)
            .unwrap_or(usize::MAX)
            .clamp(1, 100_000);
        s.push(&format!(" LIMIT {}", size + 1));
        let mut rows = t.db.rows(s, &t.reads, t.timeout).await?;
        let more = rows.len() > size;
        rows.truncate(size);
        let next_token = match rows.last() {
            Some(last) if more => Some(
                self.sealer
                    .seal(&json!({
                        "q": digest,
                        "k": token::encode_values(&t.key_values(last)),
                    }))
                    .map_err(SourceError::Internal)?,
            ),
            _ => None,
        };
        Ok(Page {
            records: rows.iter().map(|r| t.record(r)).collect(),
            next_token,
        })
    }

    async fn watch(
        &self,
        resource: &ResourceName,
        cursor: Option<&str>,
    ) -> Result<ChangeStream, SourceError> {
        let t = Arc::clone(self.table(resource)?);
        if t.changes.is_none() {
            return Err(SourceError::ChangesUnsupported);
        }
        let after = match cursor {
            None => None,
            Some(c) => Some(parse_cursor(c, resource, t.keys.len()).ok_or(SourceError::BadCursor)?),
        };
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(poll_changes(t, after, tx));
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}

/// Sends a watcher every row changed after its position, looking again every poll interval or
/// on a notification, until the watcher goes away or the database fails (which ends the
/// stream with the error; the watcher resumes from its last cursor).
async fn poll_changes(
    t: Arc<SqlTable>,
    mut after: Option<(Value, Vec<Value>)>,
    tx: mpsc::Sender<Result<Change, SourceError>>,
) {
    let Some(changes) = &t.changes else {
        return;
    };
    let mut wake = changes.wake.clone();
    let resource = t.spec.id().name().clone();
    loop {
        // Any notification until now is covered by the query below.
        if let Some(w) = &mut wake {
            w.borrow_and_update();
        }
        let rows = match t.changed_after(changes, after.as_ref(), CHANGE_BATCH).await {
            Ok(rows) => rows,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let full = rows.len() == CHANGE_BATCH;
        for mut row in rows {
            let Some(at) = row.pop() else { continue };
            if at.value_kind() == ValueKind::Null {
                // A row whose change column is null cannot be placed; it is skipped, as it
                // would be by the comparison of the next query anyway.
                continue;
            }
            let key = t.key_values(&row);
            let change = Change {
                key: t
                    .spec
                    .key_fields()
                    .iter()
                    .map(FieldName::to_string)
                    .zip(key.iter().cloned())
                    .collect(),
                record: Some(t.record(&row)),
                cursor: cursor(&resource, &at, &key),
            };
            if tx.send(Ok(change)).await.is_err() {
                return;
            }
            after = Some((at, key));
        }
        if full {
            continue;
        }
        let notified = async {
            match &mut wake {
                Some(w) => {
                    if w.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(changes.poll) => {}
            () = notified => {}
            () = tx.closed() => return,
        }
    }
}

/// Listens on a PostgreSQL channel for as long as anyone may watch, bumping `wake` on every
/// notification. Connections lost are re-established; notifications missed meanwhile only
/// delay changes until the next poll.
async fn listen(pool: sqlx::PgPool, channel: String, wake: watch::Sender<u64>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        if wake.is_closed() {
            return;
        }
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(%channel, error = %e, "cannot LISTEN yet; polling meanwhile");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        if let Err(e) = listener.listen(&channel).await {
            tracing::warn!(%channel, error = %e, "cannot LISTEN yet; polling meanwhile");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
            continue;
        }
        tracing::info!(%channel, "listening for notifications");
        backoff = Duration::from_millis(200);
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => {
                    wake.send_modify(|n| *n = n.wrapping_add(1));
                }
                // The connection was lost and is being re-established; whatever was
                // notified meanwhile is found by the next look.
                Ok(None) => {
                    wake.send_modify(|n| *n = n.wrapping_add(1));
                }
                Err(e) => {
                    tracing::warn!(%channel, error = %e, "lost the LISTEN connection; reconnecting");
                    break;
                }
            }
            if wake.is_closed() {
                return;
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

#[cfg(test)]
mod tests;
