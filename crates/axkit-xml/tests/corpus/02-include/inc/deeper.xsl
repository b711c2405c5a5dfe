<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template name="label"><xsl:value-of select="concat(title, ' by ', author)"/></xsl:template>
</xsl:stylesheet>
