<?xml version="1.0" encoding="UTF-8"?>
<!-- First link of the chain: an article (or the front page, a site of
     articles) to a page, the demo's own layout-neutral vocabulary. -->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/article">
    <page>
      <title><xsl:value-of select="title"/></title>
      <xsl:if test="@date"><meta>Written <xsl:value-of select="@date"/></meta></xsl:if>
      <xsl:apply-templates select="para"/>
    </page>
  </xsl:template>
  <xsl:template match="/site">
    <page>
      <title><xsl:value-of select="title"/></title>
      <meta>Also as a feed: <a href="{link}?style=rss">RSS</a></meta>
      <xsl:for-each select="article">
        <xsl:sort select="@date" order="descending"/>
        <section>
          <h2><a href="articles/{@id}.xml"><xsl:value-of select="title"/></a></h2>
          <para><xsl:value-of select="summary"/></para>
        </section>
      </xsl:for-each>
    </page>
  </xsl:template>
  <xsl:template match="para">
    <para><xsl:apply-templates/></para>
  </xsl:template>
  <xsl:template match="code">
    <code><xsl:value-of select="."/></code>
  </xsl:template>
</xsl:stylesheet>
