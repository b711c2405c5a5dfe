-- wiki.markup: a page's text as the templates show it. Paragraphs are
-- separated by blank lines; a CamelCase word links to the page of that
-- name. The result is data, not HTML: a list of paragraphs, each a list of
-- pieces `{ text = "…" }` or `{ link = "PageName" }`, which the template
-- escapes as it writes them.
--
--   local markup = require "wiki.markup"
--   markup.paragraphs("Hi FrontPage\n\nbye")
--   --> { { { text = "Hi " }, { link = "FrontPage" } }, { { text = "bye" } } }

local M = {}

-- A CamelCase word: an upper-case letter, lower-case ones, another
-- upper-case letter, then any letters or digits. ASCII only, as page
-- names are.
local CAMEL = "%f[%w](%u%l+%u%w*)"

local function pieces(para)
  local out, at = {}, 1
  while true do
    local from, to, word = para:find(CAMEL, at)
    if not from then
      break
    end
    if from > at then
      out[#out + 1] = { text = para:sub(at, from - 1) }
    end
    out[#out + 1] = { link = word }
    at = to + 1
  end
  if at <= #para then
    out[#out + 1] = { text = para:sub(at) }
  end
  return out
end

function M.paragraphs(text)
  local out = {}
  for para in (text:gsub("\r\n", "\n") .. "\n\n"):gmatch("(.-)\n%s*\n") do
    if para:match("%S") then
      out[#out + 1] = pieces(para)
    end
  end
  return out
end

return M
