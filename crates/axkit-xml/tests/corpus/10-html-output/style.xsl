<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="html" doctype-public="-//W3C//DTD HTML 4.01//EN" doctype-system="http://www.w3.org/TR/html4/strict.dtd"/>
  <xsl:template match="/">
    <html><head><title>Books</title></head>
    <body><h1>Books</h1><br/><input type="checkbox" checked="checked"/>
      <ul><xsl:for-each select="//book"><li><a href="/b?id={@id}&amp;x=1"><xsl:value-of select="title"/></a></li></xsl:for-each></ul>
      <script>if (a &lt; b) { x = "&amp;"; }</script>
    </body></html>
  </xsl:template>
</xsl:stylesheet>
