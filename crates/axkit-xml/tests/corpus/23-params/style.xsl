<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:param name="lang" select="'en'"/>
  <xsl:param name="title">default</xsl:param>
  <xsl:param name="quote"/>
  <xsl:param name="unset" select="'kept'"/>
  <xsl:template match="/"><r title="{$title}" quote="{$quote}" unset="{$unset}"><xsl:for-each select="//book[@lang=$lang]"><b><xsl:value-of select="title"/></b></xsl:for-each></r></xsl:template>
</xsl:stylesheet>
