<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/"><r><xsl:copy-of select="//item"/><xsl:for-each select="//item"><s><xsl:value-of select="@status"/></s></xsl:for-each></r></xsl:template>
</xsl:stylesheet>
