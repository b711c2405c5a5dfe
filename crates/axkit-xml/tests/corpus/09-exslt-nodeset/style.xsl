<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" xmlns:exsl="http://exslt.org/common" exclude-result-prefixes="exsl">
  <xsl:variable name="rtf"><x v="3"/><x v="1"/><x v="2"/></xsl:variable>
  <xsl:template match="/">
    <r type="{exsl:object-type($rtf)}">
      <xsl:for-each select="exsl:node-set($rtf)/x"><xsl:sort select="@v" data-type="number"/><v><xsl:value-of select="@v"/></v></xsl:for-each>
      <n><xsl:value-of select="count(exsl:node-set($rtf)/x)"/></n>
    </r>
  </xsl:template>
</xsl:stylesheet>
