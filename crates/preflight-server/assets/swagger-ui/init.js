// Initialises Swagger UI for preflight's /docs page. Kept out of index.html so a
// Content-Security-Policy without 'unsafe-inline' scripts (default-src 'self') works.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // Never contact validator.swagger.io (an external badge request).
    validatorUrl: null,
    persistAuthorization: false,
    tryItOutEnabled: false
  });
});
