-- json_api: a small JSON API, to show request parsing, status codes and
-- module-level state (which lives per worker process: run it with
-- `Workers 1`, or keep shared data in files or a backend).
--
--   GET  /api/time          {"time": 1795000000}
--   GET  /api/items         {"items": [...]}
--   POST /api/items         body {"name": "..."} -> 201 {"id": N, "name": "..."}
--   GET  /api/items/N       {"id": N, "name": "..."} or 404
--   POST /api/echo          echoes the decoded JSON body, with the query
--
-- Config (etc/lua.conf):
--   <Location /api>
--       Plugin json_api
--       ApiMaxItems 100
--   </Location>

directive {
  name = "ApiMaxItems",
  type = "integer",
  scopes = { "server", "location" },
  default = "1000",
  doc = "How many items the json_api demo keeps",
}

local items = {}   -- per worker: survives across requests in this process
local next_id = 1

local function reply(r, status, value)
  r:status(status)
  r:set_header("Content-Type", "application/json")
  r:write(json.encode(value), "\n")
  return OK
end

local function decode_body(r)
  local ok, value = pcall(json.decode, r:body())
  if ok and type(value) == "table" then
    return value
  end
  return nil
end

function hook_response(r)
  local rest = r:path():sub(#r:location() + 1)
  local method = r:method()

  if rest == "/time" and method == "GET" then
    return reply(r, 200, { time = os.time() })

  elseif rest == "/items" and method == "GET" then
    -- json.array: with no items yet, `[]` rather than `{}`.
    local list = json.array()
    for _, item in ipairs(items) do list[#list + 1] = item end
    return reply(r, 200, { items = list, count = #list })

  elseif rest == "/items" and method == "POST" then
    local value = decode_body(r)
    if not value or type(value.name) ~= "string" then
      return reply(r, 400, { error = "expected a JSON object with a string `name`" })
    end
    if #items >= r:config("ApiMaxItems") then
      return reply(r, 507, { error = "too many items" })
    end
    local item = { id = next_id, name = value.name }
    next_id = next_id + 1
    items[#items + 1] = item
    r:set_header("Location", r:location() .. "/items/" .. item.id)
    return reply(r, 201, item)

  elseif rest:match("^/items/%d+$") and method == "GET" then
    local id = tonumber(rest:match("%d+$"))
    for _, item in ipairs(items) do
      if item.id == id then return reply(r, 200, item) end
    end
    return reply(r, 404, { error = "no item " .. id })

  elseif rest == "/echo" and method == "POST" then
    local value = decode_body(r)
    if not value then
      return reply(r, 400, { error = "invalid JSON" })
    end
    return reply(r, 200, { body = value, query = r:params() })

  elseif rest == "/time" or rest == "/items" or rest == "/echo" then
    r:set_header("Allow", rest == "/time" and "GET" or "GET, POST")
    return reply(r, 405, { error = "method not allowed" })
  end
  return reply(r, 404, { error = "no such endpoint" })
end
