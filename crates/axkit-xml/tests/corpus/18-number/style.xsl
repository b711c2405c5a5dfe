<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="text"/>
  <xsl:template match="chapter"><xsl:number format="I. "/><xsl:value-of select="title"/><xsl:text>&#10;</xsl:text><xsl:apply-templates select="section"/></xsl:template>
  <xsl:template match="section"><xsl:number level="multiple" count="chapter|section" format="1.a "/><xsl:number level="any" count="title" format="(001) "/><xsl:value-of select="title"/><xsl:text>&#10;</xsl:text></xsl:template>
  <xsl:template match="/"><xsl:apply-templates select="doc/chapter"/><xsl:number value="1234567" grouping-separator="," grouping-size="3"/><xsl:text> </xsl:text><xsl:number value="28" format="A"/><xsl:text> </xsl:text><xsl:number value="4" format="i"/><xsl:text>&#10;</xsl:text></xsl:template>
</xsl:stylesheet>
