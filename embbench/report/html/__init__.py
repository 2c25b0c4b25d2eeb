"""report.html: the report as one page a browser opens offline, built from the same sections.

page.py lays the page out (the answer first, then report.md's sections in their order, then a
provenance footer), blocks.py turns a section's markdown lines into HTML, svg.py draws a chart
figure as inline SVG with hover text, assets.py holds the page's style and its sorting script.
Nothing on the page is fetched: no CDN, no font, no image file (a Content-Security-Policy in the
page forbids it, so a slip shows as a console error instead of a silent request).
"""
