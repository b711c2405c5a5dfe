<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" xmlns:set="http://exslt.org/sets" exclude-result-prefixes="set">
  <xsl:template match="/">
    <sets>
      <distinct><xsl:for-each select="set:distinct(//author)"><a><xsl:value-of select="."/></a></xsl:for-each></distinct>
      <inter n="{count(set:intersection(//book[@year='1999'], //book[@lang='en']))}"/>
      <diff n="{count(set:difference(//book, //book[@lang='en']))}"/>
      <same><xsl:value-of select="set:has-same-node(//book[1], //book[@id='b1'])"/></same>
      <lead n="{count(set:leading(//book, //book[@id='b3']))}"/>
    </sets>
  </xsl:template>
</xsl:stylesheet>
