<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="xml" encoding="UTF-8"/>
  <xsl:template match="/"><r><xsl:value-of select="//n"/> / <xsl:value-of select="string-length(//n)"/></r></xsl:template>
</xsl:stylesheet>
