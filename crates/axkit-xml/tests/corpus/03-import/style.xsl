<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:import href="base.xsl"/>
  <xsl:output method="xml" indent="no"/>
  <xsl:template match="book[@lang='fr']"><fr><xsl:apply-imports/></fr></xsl:template>
</xsl:stylesheet>
