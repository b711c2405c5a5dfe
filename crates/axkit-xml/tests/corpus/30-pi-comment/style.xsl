<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="xml" encoding="US-ASCII"/>
  <xsl:template match="/"><xsl:processing-instruction name="xml-stylesheet">href="x.css" type="text/css"</xsl:processing-instruction><xsl:comment> made by a stylesheet </xsl:comment><r><xsl:value-of select="//book[2]/title"/></r></xsl:template>
</xsl:stylesheet>
