//! The three databases behind one type: connection pools, statements with bound parameters,
//! rows decoded to typed values, and failures sorted into "try later" and "our fault".

use std::str::FromStr;
use std::time::Duration;

use huitong_adapter::{SourceError, Value};
use huitong_core::FieldType;
use huitong_proto::v1::value::Kind;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{ConnectOptions, Row, TypeInfo, ValueRef};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime};

/// Which SQL the database speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    MySql,
    Sqlite,
}

impl Dialect {
    /// A name from the configuration file, quoted. Names were checked to be ASCII letters,
    /// digits and `_`; doubling the quote character is there all the same.
    pub(crate) fn quote(self, name: &str) -> String {
        match self {
            Dialect::MySql => format!("`{}`", name.replace('`', "``")),
            _ => format!("\"{}\"", name.replace('"', "\"\"")),
        }
    }

    /// The expression that reads a column as a value of a field's type, so that every
    /// database hands back the same few types whatever the column's own (varchar, numeric,
    /// uuid, datetime…). SQLite has no column types to speak of; its values are converted as
    /// they come.
    pub(crate) fn read_as(self, column: &str, ty: FieldType) -> String {
        let cast = match (self, ty) {
            (Dialect::Sqlite, _) => return column.to_owned(),
            (Dialect::Postgres, FieldType::String) => "TEXT",
            (Dialect::Postgres, FieldType::Int) => "BIGINT",
            (Dialect::Postgres, FieldType::Double) => "DOUBLE PRECISION",
            (Dialect::Postgres, FieldType::Bool) => "BOOLEAN",
            (Dialect::Postgres, FieldType::Bytes) => "BYTEA",
            (Dialect::Postgres, FieldType::Date) => "DATE",
            (Dialect::Postgres, FieldType::Timestamp) => "TIMESTAMPTZ",
            (Dialect::MySql, FieldType::String) => "CHAR",
            (Dialect::MySql, FieldType::Int | FieldType::Bool) => "SIGNED",
            (Dialect::MySql, FieldType::Double) => "DOUBLE",
            (Dialect::MySql, FieldType::Bytes) => "BINARY",
            (Dialect::MySql, FieldType::Date) => "DATE",
            (Dialect::MySql, FieldType::Timestamp) => "DATETIME(6)",
        };
        format!("CAST({column} AS {cast})")
    }
}

/// A value bound to a statement.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    Bytes(Vec<u8>),
    Date(Date),
    Timestamp(OffsetDateTime),
}

impl Param {
    /// The parameter for a value; `None` for null (compared with IS NULL, never bound) and for
    /// a value no row of the database can hold (a date or time out of range, text with NUL in
    /// PostgreSQL), which matches nothing.
    pub(crate) fn of(dialect: Dialect, v: &Value) -> Option<Param> {
        Some(match &v.kind {
            None | Some(Kind::NullValue(_)) => return None,
            // PostgreSQL text cannot hold NUL, so no row can equal such a value.
            Some(Kind::StringValue(s)) if dialect == Dialect::Postgres && s.contains('\0') => {
                return None;
            }
            Some(Kind::StringValue(s)) => Param::Str(s.clone()),
            Some(Kind::IntValue(i)) => Param::Int(*i),
            Some(Kind::DoubleValue(d)) => Param::Double(*d),
            Some(Kind::BoolValue(b)) => Param::Bool(*b),
            Some(Kind::BytesValue(b)) => Param::Bytes(b.clone()),
            // SQLite keeps dates and times as text; they are compared as written.
            Some(Kind::DateValue(d)) if dialect == Dialect::Sqlite => {
                Param::Str(huitong_proto::value::format_date(d))
            }
            Some(Kind::TimestampValue(t)) if dialect == Dialect::Sqlite => {
                Param::Str(huitong_proto::value::format_timestamp(t))
            }
            Some(Kind::DateValue(d)) => Param::Date(
                Date::from_calendar_date(
                    d.year,
                    Month::try_from(u8::try_from(d.month).ok()?).ok()?,
                    u8::try_from(d.day).ok()?,
                )
                .ok()?,
            ),
            Some(Kind::TimestampValue(t)) => Param::Timestamp(
                OffsetDateTime::from_unix_timestamp(t.seconds)
                    .ok()?
                    .replace_nanosecond(u32::try_from(t.nanos).ok()?)
                    .ok()?,
            ),
        })
    }
}

/// A statement and its parameters, placeholders written as the dialect wants them.
#[derive(Debug, Clone)]
pub(crate) struct Stmt {
    pub(crate) dialect: Dialect,
    pub(crate) sql: String,
    pub(crate) params: Vec<Param>,
}

impl Stmt {
    pub(crate) fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            sql: String::new(),
            params: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    pub(crate) fn bind(&mut self, p: Param) -> &mut Self {
        self.params.push(p);
        match self.dialect {
            Dialect::Postgres => {
                let n = self.params.len();
                self.sql.push_str(&format!("${n}"));
            }
            _ => self.sql.push('?'),
        }
        self
    }
}

/// How to read one selected column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// As a value of the field's type (see [`Dialect::read_as`]).
    Field(FieldType),
    /// As whatever it is: the change column (an integer, a timestamp or text).
    Any,
}

/// A connection pool to one database.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    Postgres(PgPool),
    MySql(MySqlPool),
    Sqlite(SqlitePool),
}

/// How to open a pool.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolLimits {
    pub(crate) max_connections: u32,
    pub(crate) connect_timeout: Duration,
    pub(crate) query_timeout: Duration,
}

impl Db {
    /// The dialect of a database URL, or `None` if it is none of the three.
    pub(crate) fn dialect_of(url: &str) -> Option<Dialect> {
        match url.split_once(':').map(|(s, _)| s) {
            Some("postgres" | "postgresql") => Some(Dialect::Postgres),
            Some("mysql" | "mariadb") => Some(Dialect::MySql),
            Some("sqlite") => Some(Dialect::Sqlite),
            _ => None,
        }
    }

    /// Parses a URL into connection options, checking it without connecting. Problems never
    /// quote the URL, which may hold a password.
    pub(crate) fn options(
        url: &str,
        password: Option<&str>,
        dir: &std::path::Path,
        limits: PoolLimits,
    ) -> Result<Options, String> {
        let bad = |what: &str| format!("it is not a valid {what} URL");
        Ok(match Self::dialect_of(url) {
            Some(Dialect::Postgres) => {
                let mut o = PgConnectOptions::from_str(url).map_err(|_| bad("PostgreSQL"))?;
                if let Some(p) = password {
                    o = o.password(p);
                }
                // The server stops a query the adapter has given up on, too.
                let ms = limits.query_timeout.as_millis().to_string();
                o = o
                    .options([("statement_timeout", ms.as_str())])
                    .application_name("huitong-adapter");
                Options::Postgres(o.disable_statement_logging())
            }
            Some(Dialect::MySql) => {
                let url = url.replacen("mariadb:", "mysql:", 1);
                let mut o = MySqlConnectOptions::from_str(&url).map_err(|_| bad("MySQL"))?;
                if let Some(p) = password {
                    o = o.password(p);
                }
                Options::MySql(o.disable_statement_logging())
            }
            Some(Dialect::Sqlite) => {
                let o = SqliteConnectOptions::from_str(url).map_err(|_| bad("SQLite"))?;
                let file = o.get_filename().to_owned();
                let o = if file.is_relative() && file.as_os_str() != ":memory:" {
                    o.filename(dir.join(file))
                } else {
                    o
                };
                Options::Sqlite(o.disable_statement_logging())
            }
            None => {
                return Err("it is not a postgres://, mysql://, mariadb:// or sqlite: URL".into());
            }
        })
    }

    /// A pool that connects on first use and reconnects after failures. Must be called
    /// within a Tokio runtime.
    pub(crate) fn open(options: Options, limits: PoolLimits) -> Db {
        macro_rules! pool {
            ($opts:ty, $o:expr) => {
                <$opts>::new()
                    .max_connections(limits.max_connections)
                    .min_connections(0)
                    .acquire_timeout(limits.connect_timeout)
                    .idle_timeout(Some(Duration::from_secs(300)))
                    .test_before_acquire(true)
                    .connect_lazy_with($o)
            };
        }
        match options {
            Options::Postgres(o) => Db::Postgres(pool!(PgPoolOptions, o)),
            Options::MySql(o) => Db::MySql(pool!(MySqlPoolOptions, o)),
            Options::Sqlite(o) => Db::Sqlite(pool!(SqlitePoolOptions, o)),
        }
    }

    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Db::Postgres(_) => Dialect::Postgres,
            Db::MySql(_) => Dialect::MySql,
            Db::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Runs a query, reading each row's columns as `reads` says; gives up after `timeout`.
    pub(crate) async fn rows(
        &self,
        stmt: Stmt,
        reads: &[Read],
        timeout: Duration,
    ) -> Result<Vec<Vec<Value>>, SourceError> {
        macro_rules! run {
            ($pool:expr, $decode:ident) => {{
                let mut q = sqlx::query(&stmt.sql);
                for p in stmt.params {
                    q = match p {
                        Param::Str(v) => q.bind(v),
                        Param::Int(v) => q.bind(v),
                        Param::Double(v) => q.bind(v),
                        Param::Bool(v) => q.bind(v),
                        Param::Bytes(v) => q.bind(v),
                        Param::Date(v) => q.bind(v),
                        Param::Timestamp(v) => q.bind(v),
                    };
                }
                let rows = tokio::time::timeout(timeout, q.fetch_all($pool))
                    .await
                    .map_err(|_| {
                        SourceError::Unavailable(format!(
                            "a query took longer than {} ms",
                            timeout.as_millis()
                        ))
                    })?
                    .map_err(failure)?;
                rows.iter()
                    .map(|r| $decode(r, reads))
                    .collect::<Result<Vec<_>, String>>()
                    .map_err(SourceError::Internal)
            }};
        }
        match self {
            Db::Postgres(pool) => run!(pool, pg_row),
            Db::MySql(pool) => run!(pool, mysql_row),
            Db::Sqlite(pool) => run!(pool, sqlite_row),
        }
    }
}

/// Connection options of one of the three databases.
#[derive(Debug, Clone)]
pub(crate) enum Options {
    Postgres(PgConnectOptions),
    MySql(MySqlConnectOptions),
    Sqlite(SqliteConnectOptions),
}

/// "Try again later" for a database that cannot be reached, is shutting down or is
/// overloaded; "our fault" for the rest (a wrong column name, a type the config got wrong).
pub(crate) fn failure(e: sqlx::Error) -> SourceError {
    use sqlx::Error as E;
    match &e {
        E::Io(_)
        | E::Tls(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed
        | E::Protocol(_) => {
            SourceError::Unavailable(format!("the database cannot be reached: {e}"))
        }
        E::Database(db) => {
            let code = db.code().unwrap_or_default();
            // SQLSTATE 08: connection; 53: resources; 57: operator intervention (shutdown,
            // statement timeout); HY000 with MySQL's "too many connections" is 08004.
            if ["08", "53", "57"].iter().any(|c| code.starts_with(c)) {
                SourceError::Unavailable(format!("the database is not answering: {e}"))
            } else {
                SourceError::Internal(format!("the database refused a query: {e}"))
            }
        }
        _ => SourceError::Internal(format!("reading from the database failed: {e}")),
    }
}

fn timestamp(t: OffsetDateTime) -> Value {
    Value {
        kind: Some(Kind::TimestampValue(prost_types::Timestamp {
            seconds: t.unix_timestamp(),
            nanos: i32::try_from(t.nanosecond()).unwrap_or(0),
        })),
    }
}

fn date(d: Date) -> Value {
    Value::date(d.year(), i32::from(u8::from(d.month())), i32::from(d.day()))
}

fn mismatch(i: usize, what: &str) -> String {
    format!("column {} of the result cannot be read as {what}", i + 1)
}

fn pg_row(row: &PgRow, reads: &[Read]) -> Result<Vec<Value>, String> {
    reads
        .iter()
        .enumerate()
        .map(|(i, read)| {
            let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
            if raw.is_null() {
                return Ok(Value::null());
            }
            let ty = raw.type_info().name().to_owned();
            let get_err = |_| mismatch(i, &ty);
            Ok(match (read, ty.as_str()) {
                (Read::Field(FieldType::String), _)
                | (Read::Any, "TEXT" | "VARCHAR" | "BPCHAR" | "NAME") => {
                    Value::string(row.try_get::<String, _>(i).map_err(get_err)?)
                }
                (Read::Field(FieldType::Int), _) | (Read::Any, "INT8") => {
                    Value::int(row.try_get::<i64, _>(i).map_err(get_err)?)
                }
                (Read::Any, "INT4") => {
                    Value::int(row.try_get::<i32, _>(i).map_err(get_err)?.into())
                }
                (Read::Any, "INT2") => {
                    Value::int(row.try_get::<i16, _>(i).map_err(get_err)?.into())
                }
                (Read::Field(FieldType::Double), _) | (Read::Any, "FLOAT8") => {
                    Value::double(row.try_get::<f64, _>(i).map_err(get_err)?)
                }
                (Read::Field(FieldType::Bool), _) => {
                    Value::bool(row.try_get::<bool, _>(i).map_err(get_err)?)
                }
                (Read::Field(FieldType::Bytes), _) => Value {
                    kind: Some(Kind::BytesValue(
                        row.try_get::<Vec<u8>, _>(i).map_err(get_err)?,
                    )),
                },
                (Read::Field(FieldType::Date), _) | (Read::Any, "DATE") => {
                    date(row.try_get::<Date, _>(i).map_err(get_err)?)
                }
                (Read::Field(FieldType::Timestamp), _) | (Read::Any, "TIMESTAMPTZ") => {
                    timestamp(row.try_get::<OffsetDateTime, _>(i).map_err(get_err)?)
                }
                (Read::Any, "TIMESTAMP") => timestamp(
                    row.try_get::<PrimitiveDateTime, _>(i)
                        .map_err(get_err)?
                        .assume_utc(),
                ),
                (Read::Any, other) => return Err(any_type(other)),
            })
        })
        .collect()
}

fn any_type(ty: &str) -> String {
    format!("the change column is of type {ty}; use an integer, a date, a timestamp or text column")
}

fn mysql_row(row: &MySqlRow, reads: &[Read]) -> Result<Vec<Value>, String> {
    reads
        .iter()
        .enumerate()
        .map(|(i, read)| {
            let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
            if raw.is_null() {
                return Ok(Value::null());
            }
            let ty = raw.type_info().name().to_owned();
            let get_err = |_| mismatch(i, &ty);
            let any_int = ty.contains("INT");
            Ok(match read {
                Read::Field(FieldType::String) => {
                    Value::string(row.try_get::<String, _>(i).map_err(get_err)?)
                }
                Read::Field(FieldType::Int) => {
                    Value::int(row.try_get::<i64, _>(i).map_err(get_err)?)
                }
                Read::Field(FieldType::Bool) => {
                    Value::bool(row.try_get::<i64, _>(i).map_err(get_err)? != 0)
                }
                Read::Field(FieldType::Double) => {
                    Value::double(row.try_get::<f64, _>(i).map_err(get_err)?)
                }
                Read::Field(FieldType::Bytes) => Value {
                    kind: Some(Kind::BytesValue(
                        row.try_get::<Vec<u8>, _>(i).map_err(get_err)?,
                    )),
                },
                Read::Field(FieldType::Date) => date(row.try_get::<Date, _>(i).map_err(get_err)?),
                Read::Field(FieldType::Timestamp) => {
                    timestamp(row.try_get::<OffsetDateTime, _>(i).map_err(get_err)?)
                }
                Read::Any if any_int && ty.contains("UNSIGNED") => Value::int(
                    i64::try_from(row.try_get::<u64, _>(i).map_err(get_err)?)
                        .map_err(|_| mismatch(i, "a 64-bit integer"))?,
                ),
                Read::Any if any_int => Value::int(row.try_get::<i64, _>(i).map_err(get_err)?),
                Read::Any if ty == "DATETIME" || ty == "TIMESTAMP" => {
                    timestamp(row.try_get::<OffsetDateTime, _>(i).map_err(get_err)?)
                }
                Read::Any if ty == "DATE" => date(row.try_get::<Date, _>(i).map_err(get_err)?),
                Read::Any if ty.contains("CHAR") || ty.contains("TEXT") => {
                    Value::string(row.try_get::<String, _>(i).map_err(get_err)?)
                }
                Read::Any => return Err(any_type(&ty)),
            })
        })
        .collect()
}

fn sqlite_row(row: &SqliteRow, reads: &[Read]) -> Result<Vec<Value>, String> {
    reads
        .iter()
        .enumerate()
        .map(|(i, read)| {
            let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
            if raw.is_null() {
                return Ok(Value::null());
            }
            // The storage class of this value, whatever the column was declared as.
            let class = raw.type_info().name().to_owned();
            let text = || {
                row.try_get_unchecked::<String, _>(i)
                    .map_err(|_| mismatch(i, "text"))
            };
            let int = || {
                row.try_get_unchecked::<i64, _>(i)
                    .map_err(|_| mismatch(i, "an integer"))
            };
            let real = || {
                row.try_get_unchecked::<f64, _>(i)
                    .map_err(|_| mismatch(i, "a number"))
            };
            let from_text = |ty: FieldType| -> Result<Value, String> {
                Value::parse_text(&text()?, ty).map_err(|e| format!("column {}: {e}", i + 1))
            };
            Ok(match (read, class.as_str()) {
                (Read::Field(FieldType::String) | Read::Any, "TEXT") => Value::string(text()?),
                (Read::Field(FieldType::String), "INTEGER") => Value::string(int()?.to_string()),
                (Read::Field(FieldType::String), "REAL") => Value::string(real()?.to_string()),
                (Read::Field(FieldType::Int) | Read::Any, "INTEGER") => Value::int(int()?),
                (Read::Field(FieldType::Double), "INTEGER") => Value::double(int()? as f64),
                (Read::Field(FieldType::Double) | Read::Any, "REAL") => Value::double(real()?),
                (Read::Field(FieldType::Bool), "INTEGER") => Value::bool(int()? != 0),
                (Read::Field(FieldType::Bytes) | Read::Any, "BLOB") => Value {
                    kind: Some(Kind::BytesValue(
                        row.try_get_unchecked::<Vec<u8>, _>(i)
                            .map_err(|_| mismatch(i, "bytes"))?,
                    )),
                },
                (Read::Field(FieldType::Bytes), "TEXT") => Value {
                    kind: Some(Kind::BytesValue(text()?.into_bytes())),
                },
                (Read::Field(FieldType::Date), "TEXT") => {
                    // "2024-01-02" or the date part of "2024-01-02 03:04:05".
                    let t = text()?;
                    Value::parse_text(t.get(..10).unwrap_or(&t), FieldType::Date)
                        .map_err(|e| format!("column {}: {e}", i + 1))?
                }
                (Read::Field(FieldType::Timestamp), "INTEGER") => Value {
                    kind: Some(Kind::TimestampValue(prost_types::Timestamp {
                        seconds: int()?,
                        nanos: 0,
                    })),
                },
                (Read::Field(ty), "TEXT") => from_text(*ty)?,
                (Read::Field(ty), class) => {
                    return Err(mismatch(i, &format!("{ty} (it holds {class})")));
                }
                (Read::Any, other) => return Err(any_type(other)),
            })
        })
        .collect()
}
