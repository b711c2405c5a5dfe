<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="xml" encoding="UTF-8" indent="yes"/>
  <xsl:template match="/"><books><xsl:apply-templates select="//book"/></books></xsl:template>
  <xsl:template match="book"><b id="{@id}"><xsl:value-of select="title"/></b></xsl:template>
</xsl:stylesheet>
