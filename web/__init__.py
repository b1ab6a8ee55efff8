"""The annotator's page: static files (index.html, css/, js/) served by `masklog serve`. This
file makes the folder the package `masklog.web`, so an installed masklog carries the page."""
