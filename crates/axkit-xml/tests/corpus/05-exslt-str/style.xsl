<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" xmlns:str="http://exslt.org/strings" extension-element-prefixes="str">
  <xsl:template match="/">
    <out>
      <xsl:for-each select="str:tokenize(data/csv, ',')"><t><xsl:value-of select="."/></t></xsl:for-each>
      <xsl:for-each select="str:split(data/s, ' ')"><w><xsl:value-of select="."/></w></xsl:for-each>
      <pad><xsl:value-of select="str:padding(5, '-')"/></pad>
      <align><xsl:value-of select="str:align('ab', '.....', 'right')"/></align>
      <concat><xsl:value-of select="str:concat(//t)"/></concat>
      <enc><xsl:value-of select="str:encode-uri('a b/ü?', true())"/></enc>
      <rep><xsl:value-of select="str:replace('a-b-c', '-', '+')"/></rep>
    </out>
  </xsl:template>
</xsl:stylesheet>
