-- wiki.auth: who is logged in, through the server's sessions (the
-- `session` global: where the session lives is the config's SessionStore),
-- the CSRF token every form carries, and argon2id password hashes (the
-- `crypto` global, which hashes off the event loop).
--
--   local auth = require "wiki.auth"
--   local me = auth.me(r)                  -- { name =, csrf = } or nil
--   if not auth.check_csrf(r) then return 403 end
--   auth.login(r, name); auth.logout(r)

local M = {}

-- The user logged in on this request's session, with the token its forms
-- carry; nil for a visitor.
function M.me(r)
  local s = session.get(r)
  local name = s.user
  if name then
    return { name = name, csrf = s:csrf_token() }
  end
end

-- The CSRF token of the request's session (the log-in form of a visitor
-- needs one too).
function M.csrf_token(r)
  return session.csrf_token(r)
end

-- Whether the request's form field `csrf_token` (or X-CSRF-Token header)
-- is its session's token; a failure is logged by the server.
function M.check_csrf(r)
  return session.check_csrf(r)
end

-- Log `name` in: a new session id (no fixation of one a visitor was given).
function M.login(r, name)
  local s = session.get(r)
  s:regenerate()
  s.user = name
end

function M.logout(r)
  session.get(r):destroy()
end

function M.hash_password(password)
  return crypto.hash_password(password)
end

-- A hash to check against when there is no such user, so that a wrong
-- name takes as long to refuse as a wrong password.
local nobody

-- Whether `password` is the one `hash` was made from (`hash` nil: no).
function M.verify_password(password, hash)
  if not hash then
    nobody = nobody or crypto.hash_password(crypto.hex(crypto.random(16)))
    crypto.verify_password(password, nobody)
    return false
  end
  return crypto.verify_password(password, hash) == true
end

return M
