<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="xml" doctype-public="-//W3C//DTD XHTML 1.0 Strict//EN" doctype-system="http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd" standalone="yes"/>
  <xsl:template match="/"><html xmlns="http://www.w3.org/1999/xhtml"><body><p><xsl:value-of select="count(//book)"/></p></body></html></xsl:template>
</xsl:stylesheet>
