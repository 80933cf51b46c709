"""Server-rendered HTML pages: render helpers, form logic, one module per page group."""
