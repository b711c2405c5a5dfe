<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:include href="inc/common.xsl"/>
  <xsl:template match="/"><list><xsl:apply-templates select="library/book"/></list></xsl:template>
</xsl:stylesheet>
