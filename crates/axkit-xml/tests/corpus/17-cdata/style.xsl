<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="xml" cdata-section-elements="code script"/>
  <xsl:template match="/"><page><code>if (a &lt; b &amp;&amp; c) { return "]]&gt;"; }</code><script><xsl:value-of select="//book[1]/title"/></script><plain>&lt;x&gt;</plain></page></xsl:template>
</xsl:stylesheet>
