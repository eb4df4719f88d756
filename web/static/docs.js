// Swagger UI for /openapi.json, served from this app (no CDN, no inline script under the CSP).
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
});
