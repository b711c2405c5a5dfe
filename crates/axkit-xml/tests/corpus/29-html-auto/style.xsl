<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/"><html><head><title>Auto</title></head><body><p>No xsl:output: the html root makes it HTML</p><hr/><img src="a.png" alt=""/></body></html></xsl:template>
</xsl:stylesheet>
