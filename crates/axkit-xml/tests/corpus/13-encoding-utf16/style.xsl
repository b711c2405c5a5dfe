<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="xml" encoding="UTF-16" indent="yes"/>
  <xsl:template match="/"><authors><xsl:for-each select="//author"><a><xsl:value-of select="."/></a></xsl:for-each></authors></xsl:template>
</xsl:stylesheet>
