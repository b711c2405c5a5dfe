<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="text"/>
  <xsl:template name="fib"><xsl:param name="n"/><xsl:param name="a" select="0"/><xsl:param name="b" select="1"/>
    <xsl:choose><xsl:when test="$n = 0"><xsl:value-of select="$a"/></xsl:when>
    <xsl:otherwise><xsl:call-template name="fib"><xsl:with-param name="n" select="$n - 1"/><xsl:with-param name="a" select="$b"/><xsl:with-param name="b" select="$a + $b"/></xsl:call-template></xsl:otherwise></xsl:choose>
  </xsl:template>
  <xsl:template match="/"><xsl:call-template name="fib"><xsl:with-param name="n" select="n"/></xsl:call-template>
    <xsl:text> </xsl:text><xsl:value-of select="format-number(1234.5, '#,##0.00')"/><xsl:text> </xsl:text><xsl:value-of select="1 div 3"/><xsl:text>&#10;</xsl:text></xsl:template>
</xsl:stylesheet>
