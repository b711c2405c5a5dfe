<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="@*|node()"><xsl:copy><xsl:apply-templates select="@*|node()"/></xsl:copy></xsl:template>
  <xsl:template match="price"><cost currency="EUR"><xsl:value-of select=". * 2"/></cost></xsl:template>
  <!-- a comment in the stylesheet -->
</xsl:stylesheet>
