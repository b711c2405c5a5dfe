//! `sqlite.get(NAME)`: the same calls as `postgres.get`, on SQLite's
//! blocking pool: `db:query(sql, ...)`, `db:query_one`, `db:exec` (rows
//! changed, and the rowid of the last `INSERT`), `db:batch` and
//! `db:begin()`. Parameters are bound to `?1`, `?2`… (or `?`): nil is
//! NULL, a boolean 1 or 0, a string TEXT when it is UTF-8 and a BLOB
//! otherwise; columns come back as integers, numbers and strings, NULL as
//! a missing key.

use axkit_db::{Databases, Rows, SqlValue, Sqlite, SqliteTransaction};
use mlua::{
    Lua, LuaString, MetaMethod, MultiValue, Table, UserData, UserDataMethods, UserDataRef, Value,
};

use super::{close, finish, put, raise, shared, take, Lazy, Shared};

pub(super) fn global(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set(
        "get",
        lua.create_function(|lua, name: String| {
            Ok(Handle(Lazy::new(lua, name, Databases::sqlite)?))
        })?,
    )?;
    Ok(t)
}

struct Handle(Lazy<Sqlite>);

impl Handle {
    fn db(&self, lua: &Lua) -> mlua::Result<Sqlite> {
        self.0.get(lua, Databases::sqlite)
    }

    /// What `query` and `query_one` run: the rows of `sql` with `args`
    /// bound.
    async fn rows(&self, lua: &Lua, sql: &LuaString, args: &MultiValue) -> mlua::Result<Rows> {
        let db = self.db(lua)?;
        db.query(&sql.to_str()?, params(args)?).await.map_err(raise)
    }
}

/// The parameters `values` stand for, owned: they go to a blocking thread.
fn params(values: &MultiValue) -> mlua::Result<Vec<SqlValue>> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Ok(match v {
                Value::Nil => SqlValue::Null,
                Value::Boolean(b) => SqlValue::Integer(i64::from(*b)),
                Value::Integer(n) => SqlValue::Integer(*n),
                Value::Number(n) => SqlValue::Real(*n),
                Value::String(s) => match s.to_str() {
                    Ok(text) => SqlValue::Text(text.to_string()),
                    Err(_) => SqlValue::Blob(s.as_bytes().to_vec()),
                },
                other => {
                    return Err(mlua::Error::runtime(format!(
                        "parameter {}: cannot bind a {} (strings, numbers, booleans and nil can be bound)",
                        i + 1,
                        other.type_name()
                    )))
                }
            })
        })
        .collect()
}

fn row_table(lua: &Lua, columns: &[String], values: &[SqlValue]) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, columns.len())?;
    for (name, value) in columns.iter().zip(values) {
        let value = match value {
            SqlValue::Null => continue,
            SqlValue::Integer(n) => Value::Integer(*n),
            SqlValue::Real(f) => Value::Number(*f),
            SqlValue::Text(text) => Value::String(lua.create_string(text)?),
            SqlValue::Blob(bytes) => Value::String(lua.create_string(bytes)?),
        };
        t.raw_set(name.as_str(), value)?;
    }
    Ok(t)
}

fn rows_table(lua: &Lua, rows: &Rows) -> mlua::Result<Table> {
    let list = lua.create_table_with_capacity(rows.len(), 0)?;
    for (i, row) in rows.iter().enumerate() {
        list.raw_set(i + 1, row_table(lua, rows.columns(), row)?)?;
    }
    Ok(list)
}

fn one_row(lua: &Lua, rows: &Rows) -> mlua::Result<Option<Table>> {
    match rows.len() {
        0 => Ok(None),
        1 => rows
            .row(0)
            .map(|row| row_table(lua, rows.columns(), row))
            .transpose(),
        n => Err(mlua::Error::runtime(format!(
            "query_one: the query returned {n} rows"
        ))),
    }
}

impl UserData for Handle {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_async_method(
            "query",
            |lua, this: UserDataRef<Self>, (sql, args): (LuaString, MultiValue)| async move {
                rows_table(&lua, &this.rows(&lua, &sql, &args).await?)
            },
        );
        methods.add_async_method(
            "query_one",
            |lua, this: UserDataRef<Self>, (sql, args): (LuaString, MultiValue)| async move {
                one_row(&lua, &this.rows(&lua, &sql, &args).await?)
            },
        );
        methods.add_async_method(
            "exec",
            |lua, this: UserDataRef<Self>, (sql, args): (LuaString, MultiValue)| async move {
                let db = this.db(&lua)?;
                let done = db
                    .execute(&sql.to_str()?, params(&args)?)
                    .await
                    .map_err(raise)?;
                Ok((done.changes, done.last_insert_rowid))
            },
        );
        methods.add_async_method(
            "batch",
            |lua, this: UserDataRef<Self>, sql: LuaString| async move {
                let db = this.db(&lua)?;
                db.batch(&sql.to_str()?).await.map_err(raise)
            },
        );
        methods.add_async_method("begin", |lua, this: UserDataRef<Self>, ()| async move {
            let tx = this.db(&lua)?.begin().await.map_err(raise)?;
            Ok(Transaction(shared(tx)))
        });
    }
}

/// `db:begin()`'s transaction.
struct Transaction(Shared<SqliteTransaction>);

const TX: &str = "transaction";

impl Transaction {
    /// What `query` and `query_one` run, in the transaction (given back
    /// whatever the query's outcome).
    async fn rows(&self, sql: &LuaString, args: &MultiValue) -> mlua::Result<Rows> {
        // Arguments first: a bad one is an error that leaves the
        // transaction where it was.
        let (sql, params) = (sql.to_str()?, params(args)?);
        let mut tx = take(&self.0, TX)?;
        let rows = tx.query(&sql, params).await;
        put(&self.0, tx);
        rows.map_err(raise)
    }
}

impl UserData for Transaction {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_async_method(
            "query",
            |lua, this: UserDataRef<Self>, (sql, args): (LuaString, MultiValue)| async move {
                rows_table(&lua, &this.rows(&sql, &args).await?)
            },
        );
        methods.add_async_method(
            "query_one",
            |lua, this: UserDataRef<Self>, (sql, args): (LuaString, MultiValue)| async move {
                one_row(&lua, &this.rows(&sql, &args).await?)
            },
        );
        methods.add_async_method(
            "exec",
            |_, this: UserDataRef<Self>, (sql, args): (LuaString, MultiValue)| async move {
                let (sql, params) = (sql.to_str()?, params(&args)?);
                let mut tx = take(&this.0, TX)?;
                let done = tx.execute(&sql, params).await;
                put(&this.0, tx);
                let done = done.map_err(raise)?;
                Ok((done.changes, done.last_insert_rowid))
            },
        );
        methods.add_async_method("commit", |_, this: UserDataRef<Self>, ()| async move {
            finish(&this.0, TX)?.commit().await.map_err(raise)
        });
        methods.add_async_method("rollback", |_, this: UserDataRef<Self>, ()| async move {
            finish(&this.0, TX)?.rollback().await.map_err(raise)
        });
        methods.add_meta_method(MetaMethod::Close, |_, this, _: MultiValue| {
            close(&this.0);
            Ok(())
        });
    }
}
