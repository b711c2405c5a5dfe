<?xml version="1.0" encoding="UTF-8"?>
<!-- Last link of the HTML chain: a page to HTML, the site's layout. Its
     xsl:output gives the response its Content-Type. -->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="html" encoding="UTF-8" doctype-system="about:legacy-compat"/>
  <xsl:template match="/page">
    <html>
      <head>
        <title><xsl:value-of select="title"/></title>
        <link rel="stylesheet" href="/style.css"/>
      </head>
      <body>
        <p><a href="/">AxKit</a> / <a href="/xml/index.xml">XML demo</a></p>
        <h1><xsl:value-of select="title"/></h1>
        <xsl:apply-templates select="meta | para | section"/>
      </body>
    </html>
  </xsl:template>
  <xsl:template match="meta"><p><em><xsl:copy-of select="node()"/></em></p></xsl:template>
  <xsl:template match="para"><p><xsl:copy-of select="node()"/></p></xsl:template>
  <xsl:template match="section">
    <xsl:copy-of select="h2"/>
    <xsl:apply-templates select="para"/>
  </xsl:template>
</xsl:stylesheet>
