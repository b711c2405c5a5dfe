//! `postgres.get(NAME)`: `db:query(sql, ...)` (rows as tables keyed by
//! column name), `db:query_one`, `db:exec` (rows changed), `db:batch`
//! (statements without parameters) and `db:begin()` (a transaction with
//! the same calls, `commit` and `rollback`). Parameters are bound to `$1`,
//! `$2`…, converted from Lua values to the placeholder's type
//! (`axkit_db::pg::Param`); columns to Lua values by type
//! (`axkit_db::pg::cell`): NULL is a missing key.

use axkit_db::pg::{cell, Cell, Param};
use axkit_db::tokio_postgres::Row;
use axkit_db::{Databases, PgTransaction, Postgres};
use mlua::{
    BorrowedBytes, Lua, LuaString, MetaMethod, MultiValue, Table, UserData, UserDataMethods,
    UserDataRef, Value,
};

use super::{close, finish, put, raise, shared, take, Lazy, Shared};

pub(super) fn global(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set(
        "get",
        lua.create_function(|lua, name: String| {
            Ok(Handle(Lazy::new(lua, name, Databases::postgres)?))
        })?,
    )?;
    Ok(t)
}

struct Handle(Lazy<Postgres>);

impl Handle {
    fn db(&self, lua: &Lua) -> mlua::Result<Postgres> {
        self.0.get(lua, Databases::postgres)
    }

    /// What `query` and `query_one` run: the rows of `sql` with `args`
    /// bound.
    async fn rows(&self, lua: &Lua, sql: &LuaString, args: &MultiValue) -> mlua::Result<Vec<Row>> {
        let strings = borrow(args);
        let params = params(args, &strings)?;
        let db = self.db(lua)?;
        db.query_raw(&sql.to_str()?, params).await.map_err(raise)
    }
}

/// The strings among `values`, borrowed for the parameters made of them.
fn borrow(values: &MultiValue) -> Vec<Option<BorrowedBytes>> {
    values
        .iter()
        .map(|v| match v {
            Value::String(s) => Some(s.as_bytes()),
            _ => None,
        })
        .collect()
}

/// The parameters `values` stand for (strings from `strings`).
fn params<'a>(
    values: &MultiValue,
    strings: &'a [Option<BorrowedBytes>],
) -> mlua::Result<Vec<Param<'a>>> {
    values
        .iter()
        .zip(strings)
        .enumerate()
        .map(|(i, (v, s))| {
            Ok(match (v, s) {
                (_, Some(bytes)) => Param::Text(bytes),
                (Value::Nil, _) => Param::Null,
                (Value::Boolean(b), _) => Param::Bool(*b),
                (Value::Integer(n), _) => Param::Int(*n),
                (Value::Number(n), _) => Param::Float(*n),
                (other, _) => {
                    return Err(mlua::Error::runtime(format!(
                        "parameter ${}: cannot bind a {} (strings, numbers, booleans and nil can be bound)",
                        i + 1,
                        other.type_name()
                    )))
                }
            })
        })
        .collect()
}

/// One row as a table keyed by column name; NULL columns are left out.
fn row_table(lua: &Lua, row: &Row) -> mlua::Result<Table> {
    let columns = row.columns();
    let t = lua.create_table_with_capacity(0, columns.len())?;
    for (i, column) in columns.iter().enumerate() {
        let value = match cell(row, i).map_err(mlua::Error::runtime)? {
            Cell::Null => continue,
            Cell::Bool(b) => Value::Boolean(b),
            Cell::Int(n) => Value::Integer(n),
            Cell::Float(f) => Value::Number(f),
            Cell::Bytes(bytes) => Value::String(lua.create_string(bytes)?),
            Cell::Text(text) => Value::String(lua.create_string(text)?),
        };
        t.raw_set(column.name(), value)?;
    }
    Ok(t)
}

fn rows_table(lua: &Lua, rows: &[Row]) -> mlua::Result<Table> {
    let list = lua.create_table_with_capacity(rows.len(), 0)?;
    for (i, row) in rows.iter().enumerate() {
        list.raw_set(i + 1, row_table(lua, row)?)?;
    }
    Ok(list)
}

/// `query_one`: the row, nil for none, an error for several.
fn one_row(lua: &Lua, rows: &[Row]) -> mlua::Result<Option<Table>> {
    match rows {
        [] => Ok(None),
        [row] => row_table(lua, row).map(Some),
        _ => Err(mlua::Error::runtime(format!(
            "query_one: the query returned {} rows",
            rows.len()
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
                let strings = borrow(&args);
                let params = params(&args, &strings)?;
                db.execute_raw(&sql.to_str()?, params).await.map_err(raise)
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
struct Transaction(Shared<PgTransaction>);

const TX: &str = "transaction";

impl Transaction {
    /// What `query` and `query_one` run, in the transaction (given back
    /// whatever the query's outcome).
    async fn rows(&self, sql: &LuaString, args: &MultiValue) -> mlua::Result<Vec<Row>> {
        // Arguments first: a bad one is an error that leaves the
        // transaction where it was.
        let strings = borrow(args);
        let params = params(args, &strings)?;
        let sql = sql.to_str()?;
        let mut tx = take(&self.0, TX)?;
        let rows = tx.query_raw(&sql, params).await;
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
                let strings = borrow(&args);
                let params = params(&args, &strings)?;
                let sql = sql.to_str()?;
                let mut tx = take(&this.0, TX)?;
                let changed = tx.execute_raw(&sql, params).await;
                put(&this.0, tx);
                changed.map_err(raise)
            },
        );
        methods.add_async_method("commit", |_, this: UserDataRef<Self>, ()| async move {
            finish(&this.0, TX)?.commit().await.map_err(raise)
        });
        methods.add_async_method("rollback", |_, this: UserDataRef<Self>, ()| async move {
            finish(&this.0, TX)?.rollback().await.map_err(raise)
        });
        // `local tx <close> = db:begin()`: leaving the block without a
        // commit rolls back.
        methods.add_meta_method(MetaMethod::Close, |_, this, _: MultiValue| {
            close(&this.0);
            Ok(())
        });
    }
}
