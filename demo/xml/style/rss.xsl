<?xml version="1.0" encoding="UTF-8"?>
<!-- The feed chain (<Style rss>): the front page's articles as RSS 2.0. -->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="xml" encoding="UTF-8" media-type="application/rss+xml" indent="yes"/>
  <xsl:template match="/site">
    <rss version="2.0">
      <channel>
        <title><xsl:value-of select="title"/></title>
        <link><xsl:value-of select="link"/></link>
        <description>Articles of the AxKit XML demo</description>
        <xsl:for-each select="article">
          <xsl:sort select="@date" order="descending"/>
          <item>
            <title><xsl:value-of select="title"/></title>
            <link>/xml/articles/<xsl:value-of select="@id"/>.xml</link>
            <guid isPermaLink="false"><xsl:value-of select="@id"/></guid>
            <description><xsl:value-of select="summary"/></description>
          </item>
        </xsl:for-each>
      </channel>
    </rss>
  </xsl:template>
</xsl:stylesheet>
