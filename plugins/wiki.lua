-- wiki: a small wiki in the spirit of AxKit2's moewiki. Pages are text
-- files in WikiDir; CamelCase words link to pages; everything a visitor
-- wrote is HTML-escaped before it is shown.
--
--   GET  /wiki/               -> redirect to the front page
--   GET  /wiki/PageName       view (or an invitation to create it)
--   GET  /wiki/PageName?edit  an edit form
--   POST /wiki/PageName       save the form's `text`, then redirect to view
--   GET  /wiki/?index         every page
--
-- Page names are letters and digits, at most 100 of them; any other name
-- is 404, so no request can reach a file outside WikiDir.
--
-- Config (etc/lua.conf): WikiDir must lie beneath a LuaFileRoot, the
-- directories scripts may touch.
--   LuaFileRoot demo/wiki
--   <Location /wiki>
--       Plugin wiki
--       WikiDir demo/wiki
--   </Location>

directive {
  name = "WikiDir",
  type = "path",
  scopes = { "server", "location" },
  default = "demo/wiki",
  doc = "Directory holding the wiki's pages, one text file per page",
}

directive {
  name = "WikiFrontPage",
  type = "string",
  scopes = { "server", "location" },
  default = "FrontPage",
  doc = "The page /wiki/ shows",
}

-- The longest page name: its file name (name .. ".txt") must stay well
-- within the 255 bytes a file system allows, or the page could be viewed
-- but never saved.
local MAX_NAME = 100

local function page(r, title, body)
  r:set_header("Content-Type", "text/html; charset=utf-8")
  r:write("<!DOCTYPE html>\n<html><head><title>", html_escape(title),
          "</title></head>\n<body>\n<h1>", html_escape(title), "</h1>\n",
          body, "\n<hr><p><a href=\"", r:location(), "/?index\">All pages</a></p>\n</body></html>\n")
  return OK
end

-- Escape first, then link CamelCase words: links are built only from
-- [A-Za-z] characters, so no markup from the page text gets through.
local function render(r, text)
  local out = {}
  for para in (text .. "\n\n"):gmatch("(.-)\n%s*\n") do
    if para:match("%S") then
      local html = html_escape(para):gsub("%f[%w](%u%l+%u%w*)", function(word)
        return '<a href="' .. r:location() .. "/" .. word .. '">' .. word .. "</a>"
      end)
      out[#out + 1] = "<p>" .. html .. "</p>"
    end
  end
  return table.concat(out, "\n")
end

local function file_of(r, name)
  return r:config("WikiDir") .. "/" .. name .. ".txt"
end

function hook_response(r)
  local rest = r:path():sub(#r:location() + 2)
  local query = r:query() or ""
  if rest == "" then
    if query == "index" then
      local names = {}
      for _, f in ipairs(file.list(r:config("WikiDir")) or {}) do
        local name = f:match("^(%w+)%.txt$")
        if name then
          names[#names + 1] = '<li><a href="' .. r:location() .. "/" .. name .. '">' .. name .. "</a></li>"
        end
      end
      return page(r, "All pages", "<ul>\n" .. table.concat(names, "\n") .. "\n</ul>")
    end
    return r:redirect(r:location() .. "/" .. r:config("WikiFrontPage"))
  end
  local name = rest:match("^(%w+)$")
  if not name or #name > MAX_NAME then
    return 404
  end
  local path = file_of(r, name)

  if r:method() == "POST" then
    local form = r:form()
    if type(form.text) ~= "string" then
      return 400
    end
    local ok, err = file.write(path, (form.text:gsub("\r\n", "\n")))
    if not ok then
      r:log("error", "wiki: cannot save", name, err)
      return 500
    end
    r:log("info", "wiki: saved", name)
    return r:redirect(r:location() .. "/" .. name, 303)
  elseif r:method() ~= "GET" and r:method() ~= "HEAD" then
    r:set_header("Allow", "GET, HEAD, POST")
    return 405
  end

  local text = file.read(path)
  if query == "edit" then
    return page(r, "Editing " .. name,
      '<form method="post" action="' .. r:location() .. "/" .. name .. '">\n' ..
      '<textarea name="text" rows="20" cols="80">' .. html_escape(text or "") .. "</textarea>\n" ..
      '<p><input type="submit" value="Save"></p>\n</form>')
  end
  local edit = '<p><a href="' .. r:location() .. "/" .. name .. '?edit">Edit this page</a></p>'
  if not text then
    r:status(404)
    return page(r, name, "<p>This page does not exist yet.</p>\n" .. edit)
  end
  return page(r, name, render(r, text) .. "\n" .. edit)
end
