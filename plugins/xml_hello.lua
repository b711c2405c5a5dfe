-- xml_hello: a document built in Lua for the XML pipeline (docs/xml.md,
-- "Lua in the chain"), rendered by demo/xml's stylesheets like the
-- articles there:
--   GET /xml/hello?name=Ada  ->  an HTML page titled "Hello, Ada"
-- Config (the built-in one, `cargo run`):
--   <Location /xml/hello>
--       Plugin xml_hello      # first: it makes the document
--       Plugin xslt           # then the site's chain transforms it
--       XSLTStyle xml/style/article.xsl
--       XSLTStyle xml/style/page.xsl
--   </Location>

function hook_xmlresponse(r)
  local doc = xml.new("article")
  local article = doc:root()
  -- Text goes in as text: whatever ?name= holds comes out escaped.
  article:append("title", "Hello, " .. (r:param("name") or "world"))
  article:append("para", "This page was built in Lua with xml.new and handed to "
    .. "the stylesheets of /xml as a tree, never as text.")
  local para = article:append("para", "Asked for: ")
  para:append("code", r:path())
  r:set_document(doc)
  return OK
end
