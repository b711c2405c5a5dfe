<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/"><r><toc><xsl:apply-templates select="//book" mode="toc"/></toc><body><xsl:apply-templates select="//book"/></body></r></xsl:template>
  <xsl:template match="book" mode="toc"><entry ref="{@id}"><xsl:value-of select="title"/></entry></xsl:template>
  <xsl:template match="book"><section id="{@id}"><xsl:apply-templates select="title" mode="heading"/></section></xsl:template>
  <xsl:template match="title" mode="heading"><h><xsl:value-of select="translate(., 'abcdefghijklmnopqrstuvwxyz', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ')"/></h></xsl:template>
</xsl:stylesheet>
