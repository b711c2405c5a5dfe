<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" xmlns:date="http://exslt.org/dates-and-times" exclude-result-prefixes="date">
  <xsl:output method="text"/>
  <xsl:template match="d">
    <xsl:value-of select="concat(date:year(.), ' ', date:month-in-year(.), ' ', date:day-in-month(.), ' ', date:day-name(.), ' ', date:leap-year(.), ' ', date:add(., 'P1M2D'), ' ', date:week-in-year(.))"/>
    <xsl:text>&#10;</xsl:text>
  </xsl:template>
  <xsl:template match="/"><xsl:apply-templates select="//d"/><xsl:value-of select="date:difference('2026-01-01', '2026-12-02')"/><xsl:text>&#10;</xsl:text></xsl:template>
</xsl:stylesheet>
