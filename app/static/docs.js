// /docs: Swagger UI (from the installed fastapi-offline package) over /openapi.json. Kept out of the page so the
// Content-Security-Policy can refuse inline scripts everywhere.
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    // A logged-in browser calls the API with its session cookie; writes then need the page's CSRF token.
    requestInterceptor: (request) => {
      request.headers["X-CSRF-Token"] = csrf;
      return request;
    },
  });
});
