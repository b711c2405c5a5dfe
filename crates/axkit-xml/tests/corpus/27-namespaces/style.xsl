<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" xmlns:a="urn:a" xmlns:b="urn:b" xmlns="http://www.w3.org/1999/xhtml" exclude-result-prefixes="a b">
  <xsl:template match="/"><html><body>
    <xsl:for-each select="//a:item"><p class="{local-name()}" ns="{namespace-uri()}"><xsl:value-of select="@b:flag"/></p></xsl:for-each>
    <xsl:element name="q:made" namespace="urn:q"><xsl:attribute name="q:at" namespace="urn:q">v</xsl:attribute></xsl:element>
    <xsl:copy-of select="//b:other"/>
  </body></html></xsl:template>
</xsl:stylesheet>
