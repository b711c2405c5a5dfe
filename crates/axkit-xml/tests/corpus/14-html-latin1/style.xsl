<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="html" encoding="ISO-8859-1" indent="yes"/>
  <xsl:template match="/"><html><head><title>Bücher</title></head><body><p><xsl:value-of select="//book[4]/title"/> ☃ &#160;</p></body></html></xsl:template>
</xsl:stylesheet>
