<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:variable name="prices" select="document('data/rates.xml')/rates"/>
  <xsl:template match="/"><r>
    <xsl:for-each select="//book"><b id="{@id}" rate="{$prices/rate[@lang=current()/@lang]}"/></xsl:for-each>
    <self n="{count(document('')/xsl:stylesheet/xsl:template)}"/>
    <missing n="{count(document('data/none.xml'))}"/>
  </r></xsl:template>
</xsl:stylesheet>
