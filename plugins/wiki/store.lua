-- wiki.store: the wiki's pages, their history and its users, in the
-- database the plugin's WikiDatabase names: SQLite or PostgreSQL, as the
-- URL of that `Database` line says. The SQL is written once, portable to
-- both, with PostgreSQL's `$1` placeholders; for SQLite they become `?1`.
-- The tables are made on first use (CREATE TABLE IF NOT EXISTS), with a
-- front page to start from.
--
--   local store = require "wiki.store"
--   local db = store.open("wiki")          -- in a hook
--   local page = db:page("FrontPage")      -- { body =, rev =, author =, saved = } or nil
--   local change = db:save("FrontPage", text, "ada")

local M = {}

local SCHEMA = [[
CREATE TABLE IF NOT EXISTS wiki_users (
  name     TEXT PRIMARY KEY,
  password TEXT NOT NULL,
  created  BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS wiki_pages (
  name TEXT PRIMARY KEY,
  rev  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS wiki_changes (
  id     %s,
  page   TEXT NOT NULL,
  rev    INTEGER NOT NULL,
  body   TEXT NOT NULL,
  author TEXT NOT NULL,
  saved  BIGINT NOT NULL,
  UNIQUE (page, rev)
);
]]

-- The one difference between the two: how a column numbers its rows.
local SERIAL = {
  sqlite = "INTEGER PRIMARY KEY",
  postgres = "BIGSERIAL PRIMARY KEY",
}

-- The pages a new wiki starts with.
local SEEDS = {
  { "FrontPage", [[
Welcome to the AxKit wiki, a Lua application served by AxKit.

Pages live in a database (SQLite unless the config names PostgreSQL) and
keep their history. CamelCase words such as WikiSyntax link to other pages.

Sign up, log in, and edit any page with the link at its bottom. Recent
changes follow every save as it happens.]] },
  { "WikiSyntax", [[
Paragraphs are separated by blank lines.

A word in CamelCase, like FrontPage, becomes a link. Anything else is
shown as written: <b>tags</b> and & are escaped.]] },
}

local Db = {}
Db.__index = Db

local opened = {}

-- The handle for database `name`, of whichever kind it is. In a hook: the
-- kind is known once the worker has its config.
function M.open(name)
  local db = opened[name]
  if db then
    return db
  end
  local kind, handle = "sqlite", nil
  local ok, h = pcall(sqlite.get, name)
  if ok then
    handle = h
  else
    kind, handle = "postgres", postgres.get(name)
  end
  db = setmetatable({ kind = kind, handle = handle, sql = {}, ready = false }, Db)
  opened[name] = db
  return db
end

-- `sql` as this database writes it (SQLite numbers its placeholders ?1).
function Db:text(sql)
  local text = self.sql[sql]
  if not text then
    text = self.kind == "sqlite" and sql:gsub("%$(%d+)", "?%1") or sql
    self.sql[sql] = text
  end
  return text
end

-- Make the tables and the first pages, once per worker (every statement
-- tolerates another worker having done it first).
function Db:setup()
  local schema = SCHEMA:format(SERIAL[self.kind])
  -- Two workers creating the tables at once: PostgreSQL may refuse the
  -- second CREATE (a duplicate type); the tables are there then.
  if not pcall(self.handle.batch, self.handle, schema) then
    self.handle:batch(schema)
  end
  local tx <close> = self.handle:begin()
  for _, seed in ipairs(SEEDS) do
    local made = tx:exec(
      self:text("INSERT INTO wiki_pages (name, rev) VALUES ($1, 1) ON CONFLICT (name) DO NOTHING"), seed[1])
    if made == 1 then
      tx:exec(self:text("INSERT INTO wiki_changes (page, rev, body, author, saved) VALUES ($1, 1, $2, $3, $4)"),
        seed[1], seed[2], "AxKit", os.time())
    end
  end
  tx:commit()
  self.ready = true
end

-- Run `sql` with `method` (query, query_one, exec) on the database, the
-- tables made first if this worker has not yet.
function Db:run(method, sql, ...)
  if not self.ready then
    self:setup()
  end
  return self.handle[method](self.handle, self:text(sql), ...)
end

-- The page `name` as it is now, or its revision `rev`; nil if there is none.
function Db:page(name, rev)
  if rev then
    return self:run("query_one",
      "SELECT body, rev, author, saved FROM wiki_changes WHERE page = $1 AND rev = $2", name, rev)
  end
  return self:run("query_one", [[
    SELECT c.body, c.rev, c.author, c.saved FROM wiki_pages p
    JOIN wiki_changes c ON c.page = p.name AND c.rev = p.rev WHERE p.name = $1]], name)
end

function Db:names()
  local names = {}
  for i, row in ipairs(self:run("query", "SELECT name FROM wiki_pages ORDER BY name")) do
    names[i] = row.name
  end
  return names
end

function Db:history(name)
  return self:run("query",
    "SELECT id, page, rev, author, saved FROM wiki_changes WHERE page = $1 ORDER BY rev DESC LIMIT 100",
    name)
end

-- The latest changes, newest first; or, with `after`, those since the
-- change numbered `after`, oldest first.
function Db:changes(after)
  if after then
    return self:run("query",
      "SELECT id, page, rev, author, saved FROM wiki_changes WHERE id > $1 ORDER BY id LIMIT 100", after)
  end
  return self:run("query",
    "SELECT id, page, rev, author, saved FROM wiki_changes ORDER BY id DESC LIMIT 50")
end

-- Save a new revision of page `name`; returns the change
-- `{ id =, page =, rev =, author =, saved = }`. The page's row is taken
-- first (INSERT … ON CONFLICT DO UPDATE locks it), so saves of one page
-- from every worker queue up and number their revisions in turn.
function Db:save(name, body, author)
  if not self.ready then
    self:setup()
  end
  local tx <close> = self.handle:begin()
  local rev = tx:query_one(self:text([[
    INSERT INTO wiki_pages (name, rev) VALUES ($1, 1)
    ON CONFLICT (name) DO UPDATE SET rev = wiki_pages.rev + 1 RETURNING rev]]), name).rev
  local now = os.time()
  local id = tx:query_one(self:text(
    "INSERT INTO wiki_changes (page, rev, body, author, saved) VALUES ($1, $2, $3, $4, $5) RETURNING id"),
    name, rev, body, author, now).id
  tx:commit()
  return { id = id, page = name, rev = rev, author = author, saved = now }
end

-- Add a user; false when the name is taken.
function Db:add_user(name, password_hash)
  return self:run("exec",
    "INSERT INTO wiki_users (name, password, created) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
    name, password_hash, os.time()) == 1
end

-- The user's password hash, or nil.
function Db:password_of(name)
  local row = self:run("query_one", "SELECT password FROM wiki_users WHERE name = $1", name)
  return row and row.password
end

return M
