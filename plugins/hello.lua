-- hello: the smallest useful Lua plugin. Greets whoever asks:
--   GET /hello?name=Ada  ->  "Hello, Ada"
-- Config (etc/lua.conf):
--   PluginDir plugins
--   <Location /hello>
--       Plugin hello
--       Greeting "Good morning"
--   </Location>

directive {
  name = "Greeting",
  type = "string",
  scopes = { "server", "location" },
  default = "Hello",
  doc = "What the hello plugin greets with",
}

function hook_response(r)
  r:set_header("Content-Type", "text/plain; charset=utf-8")
  r:write(r:config("Greeting"), ", ", r:param("name") or "world", "\n")
  return OK
end
