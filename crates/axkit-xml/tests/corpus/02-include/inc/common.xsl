<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:include href="deeper.xsl"/>
  <xsl:template match="book"><item n="{position()}"><xsl:call-template name="label"/></item></xsl:template>
</xsl:stylesheet>
