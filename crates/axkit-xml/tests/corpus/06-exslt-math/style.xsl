<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" xmlns:math="http://exslt.org/math" exclude-result-prefixes="math">
  <xsl:template match="/">
    <m max="{math:max(//price)}" min="{math:min(//price)}" abs="{math:abs(-3.5)}"
       sqrt="{math:sqrt(16)}" pow="{math:power(2, 10)}" high="{math:highest(//price)/../@id}"
       low="{math:lowest(//price)/../@id}" const="{math:constant('PI', 4)}"/>
  </xsl:template>
</xsl:stylesheet>
