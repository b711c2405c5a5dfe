//! A worker's databases: the `Database` and `DatabaseFile` lines of its
//! config, each with its pool, made when first asked for. Nothing here
//! opens a connection: a pool connects on its first call, so the master
//! and `axkit --check` (which build plugins but serve nothing) never
//! reach a database.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use axkit::config::{Config, LocationConfig};

use crate::config::{Kind, Spec, DATABASE, DATABASE_FILE};
use crate::error::{Error, ErrorKind};
use crate::{Postgres, Redis, Sqlite};

/// The databases of this worker's config.
pub struct Databases {
    entries: Vec<Entry>,
}

struct Entry {
    spec: Spec,
    handle: RefCell<Option<Handle>>,
}

#[derive(Clone)]
enum Handle {
    Postgres(Postgres),
    Redis(Redis),
    Sqlite(Sqlite),
}

thread_local! {
    /// The registry of the config this thread serves, with that config's
    /// global scope (kept, so that the comparison cannot be fooled by a
    /// new config at a freed address).
    static WORKER: RefCell<Option<(Arc<LocationConfig>, Rc<Databases>)>> =
        const { RefCell::new(None) };
}

impl Databases {
    /// The databases of `config`, the same registry (and pools) for every
    /// caller in this thread: a Rust plugin's constructor and the Lua
    /// host's share the connections. An error names a database declared
    /// twice, with where.
    pub fn of(config: &Config) -> Result<Rc<Databases>, String> {
        let cached = WORKER.with_borrow(|w| {
            w.as_ref()
                .filter(|(global, _)| Arc::ptr_eq(global, &config.global))
                .map(|(_, dbs)| dbs.clone())
        });
        if let Some(dbs) = cached {
            return Ok(dbs);
        }
        let dbs = Rc::new(Databases::new(config)?);
        WORKER.set(Some((config.global.clone(), dbs.clone())));
        Ok(dbs)
    }

    fn new(config: &Config) -> Result<Databases, String> {
        let global = &config.global;
        let written = global
            .settings(DATABASE.name())
            .iter()
            .chain(global.settings(DATABASE_FILE.name()))
            .map(|s| format!("{}:{}", s.file, s.line));
        let specs = global
            .list(&DATABASE)
            .iter()
            .chain(global.list(&DATABASE_FILE));
        let mut entries: Vec<Entry> = Vec::new();
        let mut places: Vec<String> = Vec::new();
        for (spec, place) in specs.zip(written) {
            if let Some(i) = entries.iter().position(|e| e.spec.name == spec.name) {
                return Err(format!(
                    "database {:?} is declared twice: {} and {place}",
                    spec.name, places[i]
                ));
            }
            entries.push(Entry {
                spec: spec.clone(),
                handle: RefCell::new(None),
            });
            places.push(place);
        }
        Ok(Databases { entries })
    }

    fn handle(&self, name: &str, kind: Kind) -> Result<Handle, Error> {
        let usage = |message: String| Error::new(&Arc::from(name), kind, ErrorKind::Usage, message);
        let Some(entry) = self.entries.iter().find(|e| &*e.spec.name == name) else {
            return Err(usage(
                "no such database; declare it with `Database NAME URL`".into(),
            ));
        };
        if entry.spec.kind != kind {
            return Err(usage(format!(
                "it is a {} database (use {}.get)",
                entry.spec.kind.as_str(),
                entry.spec.kind.as_str()
            )));
        }
        let mut handle = entry.handle.borrow_mut();
        let handle = handle.get_or_insert_with(|| match kind {
            Kind::Postgres => Handle::Postgres(Postgres::new(entry.spec.clone())),
            Kind::Redis => Handle::Redis(Redis::new(entry.spec.clone())),
            Kind::Sqlite => Handle::Sqlite(Sqlite::new(entry.spec.clone())),
        });
        Ok(handle.clone())
    }

    /// The PostgreSQL database `name`.
    pub fn postgres(&self, name: &str) -> Result<Postgres, Error> {
        match self.handle(name, Kind::Postgres)? {
            Handle::Postgres(db) => Ok(db),
            _ => unreachable!("handle() checked the kind"),
        }
    }

    /// The Redis database `name`.
    pub fn redis(&self, name: &str) -> Result<Redis, Error> {
        match self.handle(name, Kind::Redis)? {
            Handle::Redis(db) => Ok(db),
            _ => unreachable!("handle() checked the kind"),
        }
    }

    /// The SQLite database `name`.
    pub fn sqlite(&self, name: &str) -> Result<Sqlite, Error> {
        match self.handle(name, Kind::Sqlite)? {
            Handle::Sqlite(db) => Ok(db),
            _ => unreachable!("handle() checked the kind"),
        }
    }
}
