<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="xml" indent="yes" omit-xml-declaration="no"/>
  <xsl:strip-space elements="*"/>
  <xsl:template match="/"><years><xsl:for-each select="//book"><y v="{@year}"><t><xsl:value-of select="title"/></t><empty/></y></xsl:for-each></years></xsl:template>
</xsl:stylesheet>
