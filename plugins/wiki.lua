-- wiki: a small wiki application in the spirit of AxKit2's moewiki. Pages
-- and their history live in a database (SQLite unless the config names
-- PostgreSQL), users log in with argon2-hashed passwords and a session,
-- every form carries a CSRF token, the pages come from templates (so
-- everything a visitor wrote is escaped), and the recent changes are a
-- live page fed by server-sent events from every worker.
--
--   GET  /wiki/                 redirect to the front page
--   GET  /wiki/PageName         view (or an invitation to create it)
--   GET  /wiki/PageName?edit    the edit form (logged in)
--   POST /wiki/PageName         save the form's `text` (logged in, CSRF)
--   GET  /wiki/PageName?history its revisions; ?rev=N shows one
--   GET  /wiki/?index           every page
--   GET  /wiki/?changes         recent changes, kept up to date by ...
--   GET  /wiki/?events          ... this stream of server-sent events
--   GET|POST /wiki/?signup, /wiki/?login; POST /wiki/?logout
--
-- Page names are letters and digits, at most 100 of them: any other name
-- is 404. The code is split into modules beside this file (required from
-- the PluginDir): wiki/store.lua (the database), wiki/markup.lua (page
-- text to paragraphs and links), wiki/auth.lua (sessions, CSRF,
-- passwords). The templates are demo/templates/wiki/*.html.
--
-- Config (etc/lua.conf, and the built-in config of `axkit`):
--   PluginDir   plugins
--   TemplateDir demo/templates
--   Database    wiki sqlite:var/wiki.db      # or postgres://…
--   <Location /wiki>
--       Plugin wiki
--   </Location>

directive {
  name = "WikiDatabase",
  type = "string",
  scopes = { "server", "location" },
  default = "wiki",
  doc = "The Database (SQLite or PostgreSQL) holding the wiki's pages, history and users",
}

directive {
  name = "WikiFrontPage",
  type = "string",
  scopes = { "server", "location" },
  default = "FrontPage",
  doc = "The page /wiki/ shows",
}

local store = require "wiki.store"
local markup = require "wiki.markup"
local auth = require "wiki.auth"

-- The longest page name, and the most bytes a page may hold.
local MAX_NAME = 100
local MAX_TEXT = 100000
-- User names: letters, digits and `_`, at most 32; passwords 8 to 1024
-- bytes (argon2 reads all of it).
local MAX_USER = 32
local PASSWORD_MIN, PASSWORD_MAX = 8, 1024
-- The broadcast channel on which every save is announced to every worker.
local CHANNEL = "wiki:changes"

-- `s` as a whole number, if it is one of at most `digits` digits (a
-- revision fits PostgreSQL's `integer` with 9, a change number its
-- `bigint` with 18).
local function whole(s, digits)
  if type(s) == "string" and #s <= digits and s:match("^%d+$") then
    return math.tointeger(tonumber(s))
  end
end

local function when(t)
  return os.date("!%Y-%m-%d %H:%M UTC", t)
end

-- A change or revision as the templates and the event stream show it.
local function shown(c)
  return { id = c.id, page = c.page, rev = c.rev, author = c.author, saved = when(c.saved) }
end

local function render(r, template, data)
  data.base = r:location()
  data.me = data.me or auth.me(r)
  r:render("wiki/" .. template .. ".html", data)
  return OK
end

local function page_view(r, db, name)
  local rev = r:param("rev")
  local page
  if rev then
    rev = whole(rev, 9)
    page = rev and db:page(name, rev)
    if not page then
      return 404
    end
  else
    page = db:page(name)
  end
  if not page then
    r:status(404)
    return render(r, "page", { title = name, name = name, paragraphs = {} })
  end
  page.saved = when(page.saved)
  return render(r, "page", {
    title = name, name = name, page = page, old = rev ~= nil,
    paragraphs = markup.paragraphs(page.body),
  })
end

local function edit_form(r, db, name)
  local me = auth.me(r)
  if not me then
    return r:redirect(r:location() .. "/?login&next=" .. url_encode(name), 303)
  end
  local page = db:page(name)
  return render(r, "edit", { title = "Editing " .. name, name = name, me = me, text = page and page.body or "" })
end

local function save(r, db, name)
  if not auth.check_csrf(r) then
    return 403
  end
  local me = auth.me(r)
  if not me then
    return 403
  end
  local text = r:form().text
  if type(text) ~= "string" then
    return 400
  end
  text = text:gsub("\r\n", "\n")
  if #text > MAX_TEXT then
    r:status(413)
    return render(r, "edit", {
      title = "Editing " .. name, name = name, me = me, text = text,
      error = "A page holds at most " .. MAX_TEXT .. " bytes.",
    })
  end
  local change = db:save(name, text, me.name)
  r:log("info", "wiki: " .. me.name .. " saved " .. name .. " revision " .. change.rev)
  -- Every worker's live streams hear of it (see `events`).
  shared.broadcast(CHANNEL, json.encode(shown(change)))
  return r:redirect(r:location() .. "/" .. name, 303)
end

-- The log-in and sign-up forms and their posts.
local function account(r, db, signup)
  local base = r:location()
  local form = r:method() == "POST" and r:form() or {}
  -- The fields read here are text: a file sent as one (a multipart form's
  -- upload is a table) is a bad request.
  for _, field in ipairs({ "next", "name", "password" }) do
    if form[field] ~= nil and type(form[field]) ~= "string" then
      return 400
    end
  end
  -- Where to go afterwards: a page of the wiki, nothing else (no open
  -- redirect through `next`).
  local next = form.next or r:param("next") or ""
  if not next:match("^%w*$") or #next > MAX_NAME then
    next = ""
  end
  local data = { title = signup and "Sign up" or "Log in", signup = signup, next = next, name = form.name }
  if r:method() == "POST" then
    if not auth.check_csrf(r) then
      return 403
    end
    local name, password = form.name, form.password
    if type(name) ~= "string" or type(password) ~= "string" then
      return 400
    end
    if signup then
      if not name:match("^[%w_]+$") or #name > MAX_USER then
        data.error = "A name is letters, digits and _, at most " .. MAX_USER .. " of them."
        r:status(400)
      elseif #password < PASSWORD_MIN or #password > PASSWORD_MAX then
        data.error = "A password is " .. PASSWORD_MIN .. " to " .. PASSWORD_MAX .. " bytes long."
        r:status(400)
      elseif not db:add_user(name, auth.hash_password(password)) then
        data.error = "That name is taken."
        r:status(409)
      end
    elseif not auth.verify_password(password, #name <= MAX_USER and db:password_of(name)) then
      data.error = "Wrong name or password."
      r:status(403)
    end
    if not data.error then
      auth.login(r, name)
      r:log("info", "wiki: " .. name .. (signup and " signed up" or " logged in"))
      return r:redirect(base .. "/" .. next, 303)
    end
  end
  data.csrf = auth.csrf_token(r)
  return render(r, "login", data)
end

local function logout(r)
  if r:method() ~= "POST" then
    r:set_header("Allow", "POST")
    return 405
  end
  if not auth.check_csrf(r) then
    return 403
  end
  auth.logout(r)
  return r:redirect(r:location() .. "/", 303)
end

-- Recent changes as server-sent events, from the change numbered `after`
-- (the page's newest, or the browser's Last-Event-ID when it reconnects).
-- The subscription comes first, so no save is missed between reading the
-- database and waiting; a save's broadcast carries the change, and a gap
-- in the numbers (messages the subscription's queue dropped) is filled
-- from the database. The stream ends when the client leaves or the worker
-- drains (the browser then reconnects, to a worker that stays).
local function events(r, db)
  local sub <close> = shared.subscribe(CHANNEL)
  local s = r:sse{ retry = 3 }
  local after = whole(s:last_event_id() or r:param("after"), 18)
  if not after then
    local newest = db:changes()[1]
    after = newest and newest.id or 0
  end
  local function send(c)
    after = c.id
    return s:send{ event = "change", id = tostring(c.id), data = json.encode(c) }
  end
  local function catch_up()
    for _, c in ipairs(db:changes(after)) do
      if not send(shown(c)) then
        return false
      end
    end
    return true
  end
  if not catch_up() then
    return OK
  end
  for message in sub do
    local change = json.decode(message)
    local sent = true
    if change.id == after + 1 then
      sent = send(change)
    elseif change.id > after then
      sent = catch_up()
    end
    if not sent then
      break
    end
  end
  return OK
end

function hook_response(r)
  local base = r:location()
  local rest = r:path():sub(#base + 2)
  local query = r:query() or ""
  local action = query:match("^(%a+)")
  local db = store.open(r:config("WikiDatabase"))
  local method = r:method()
  if rest == "" then
    if action == "index" then
      return render(r, "index", { title = "All pages", names = db:names() })
    elseif action == "changes" then
      local changes = db:changes()
      local list = {}
      for i, c in ipairs(changes) do
        list[i] = shown(c)
      end
      return render(r, "changes", { title = "Recent changes", changes = list, last = changes[1] and changes[1].id or 0 })
    elseif action == "events" then
      return events(r, db)
    elseif action == "login" or action == "signup" then
      return account(r, db, action == "signup")
    elseif action == "logout" then
      return logout(r)
    end
    return r:redirect(base .. "/" .. r:config("WikiFrontPage"))
  end
  local name = rest:match("^(%w+)$")
  if not name or #name > MAX_NAME then
    return 404
  end
  if method == "POST" then
    return save(r, db, name)
  elseif method ~= "GET" and method ~= "HEAD" then
    r:set_header("Allow", "GET, HEAD, POST")
    return 405
  end
  if action == "edit" then
    return edit_form(r, db, name)
  elseif action == "history" then
    local list = {}
    for i, c in ipairs(db:history(name)) do
      list[i] = shown(c)
    end
    return render(r, "history", { title = "History of " .. name, changes = list })
  end
  return page_view(r, db, name)
end
