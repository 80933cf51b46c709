"""Jinja2 templates; shipped inside the package as fitboard.templates (fragments start with "_")."""
