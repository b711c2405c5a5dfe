<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="xml" indent="yes"/>
  <xsl:template match="/"><sorted>
    <xsl:for-each select="//book"><xsl:sort select="@year" data-type="number" order="descending"/><xsl:sort select="title"/><b y="{@year}"><xsl:value-of select="title"/></b></xsl:for-each>
    <xsl:for-each select="//book"><xsl:sort select="price" data-type="number"/><p><xsl:value-of select="price"/></p></xsl:for-each>
    <xsl:for-each select="//book"><xsl:sort select="author" case-order="upper-first"/><xsl:sort select="@id" order="descending"/><a><xsl:value-of select="@id"/></a></xsl:for-each>
  </sorted></xsl:template>
</xsl:stylesheet>
