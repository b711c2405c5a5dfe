<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:key name="by-author" match="book" use="author"/>
  <xsl:key name="by-id" match="book" use="@id"/>
  <xsl:template match="/">
    <authors>
      <xsl:for-each select="//book[generate-id() = generate-id(key('by-author', author)[1])]">
        <xsl:sort select="author"/>
        <author name="{author}" count="{count(key('by-author', author))}"/>
      </xsl:for-each>
      <third><xsl:value-of select="key('by-id', 'b3')/title"/></third>
    </authors>
  </xsl:template>
</xsl:stylesheet>
