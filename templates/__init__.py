"""Jinja2 templates; shipped inside the package as app.templates (fragments start with "_")."""
