"""The web console: the city's dashboard, the operators' page, each dossier's whole story.

Served by the API's app under /console (`console.web.install`): server-side Jinja2 pages,
plotly charts whose JS comes from the plotly package (no CDN), forms without scripts.
"""
