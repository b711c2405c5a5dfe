<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="text" encoding="UTF-8"/>
  <xsl:template match="book"><xsl:value-of select="concat(@id, '&#9;', title, '&#9;', price, '&#10;')"/></xsl:template>
  <xsl:template match="text()"/>
</xsl:stylesheet>
