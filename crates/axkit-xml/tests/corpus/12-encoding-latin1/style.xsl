<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="xml" encoding="ISO-8859-1"/>
  <xsl:template match="/"><titres><xsl:for-each select="//title"><t><xsl:value-of select="."/></t></xsl:for-each><euro>€ ☃</euro></titres></xsl:template>
</xsl:stylesheet>
